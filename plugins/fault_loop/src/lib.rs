//! Fault fixture: never returns from a batch holding a message whose payload starts with
//! `loop`; passes everything else. The host must interrupt it at its deadline.

use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, export};

pub struct FaultLoop;

impl Plugin for FaultLoop {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(FaultLoop)
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        if message.payload().starts_with(b"loop") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Outcome::Pass
    }
}

export!(FaultLoop);
