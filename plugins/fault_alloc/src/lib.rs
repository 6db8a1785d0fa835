//! Fault fixture: allocates without bound on a message whose payload starts with `alloc`;
//! passes everything else. The host must stop it at its memory cap.

use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, export};

pub struct FaultAlloc {
    hoard: Vec<Vec<u8>>,
}

impl Plugin for FaultAlloc {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(FaultAlloc { hoard: Vec::new() })
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        if message.payload().starts_with(b"alloc") {
            loop {
                self.hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        Outcome::Pass
    }
}

export!(FaultAlloc);
