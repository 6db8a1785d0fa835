//! Fault fixture: panics on a message whose payload starts with `panic`; passes everything
//! else. The host must classify the trap and keep the panic message.

use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, export};

pub struct FaultPanic;

impl Plugin for FaultPanic {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(FaultPanic)
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        if message.payload().starts_with(b"panic") {
            panic!("fault_panic was asked to panic");
        }
        Outcome::Pass
    }
}

export!(FaultPanic);
