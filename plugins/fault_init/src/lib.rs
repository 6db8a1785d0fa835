//! Fault fixture: `init` always fails, as a plugin with a bad setting would.

use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, export};

pub struct FaultInit;

impl Plugin for FaultInit {
    fn init(_: &Config) -> Result<Self, String> {
        Err("fault_init refuses every configuration".to_owned())
    }

    fn process(&mut self, _: &Message<'_>) -> Outcome {
        Outcome::Pass
    }
}

export!(FaultInit);
