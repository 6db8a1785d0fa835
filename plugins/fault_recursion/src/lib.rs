//! Fault fixture: recurses without bound on a message whose payload starts with `recurse`;
//! passes everything else. The host must stop it at the stack limit.

use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, export};

pub struct FaultRecursion;

#[inline(never)]
#[expect(
    unconditional_recursion,
    reason = "this fixture exists to overflow the stack"
)]
fn descend(depth: u64) -> u64 {
    // `black_box` keeps the call from being turned into a loop.
    std::hint::black_box(descend(std::hint::black_box(depth + 1))) + 1
}

impl Plugin for FaultRecursion {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(FaultRecursion)
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        if message.payload().starts_with(b"recurse") {
            descend(0);
        }
        Outcome::Pass
    }
}

export!(FaultRecursion);
