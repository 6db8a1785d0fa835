//! Fault fixture: emits every message to the destination `nowhere`, which no route
//! declares. The host must fail those messages with the error kind `destination`.

use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, export};

pub struct FaultDestination;

impl Plugin for FaultDestination {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(FaultDestination)
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        Outcome::Emit(vec![message.to_output().to("nowhere")])
    }
}

export!(FaultDestination);
