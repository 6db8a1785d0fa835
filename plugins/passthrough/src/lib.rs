//! The smallest useful plugin: every message passes on unchanged.
//!
//! `Outcome::Pass` sends the input to the route's `to` outputs without copying it back out
//! of the plugin: one byte crosses the boundary per message. This is also the plugin the
//! benchmarks use to measure what the sandbox costs.

use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, export};

/// Passes everything; takes no settings.
pub struct Passthrough;

impl Plugin for Passthrough {
    fn init(config: &Config) -> Result<Self, String> {
        config.allow_only(&[])?;
        Ok(Passthrough)
    }

    fn process(&mut self, _message: &Message<'_>) -> Outcome {
        Outcome::Pass
    }
}

export!(Passthrough);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::testing::{TestMessage, run};

    #[test]
    fn every_message_passes() {
        let msgs = [
            TestMessage::new("a"),
            TestMessage::new("").key("k").header("h", "v"),
        ];
        assert_eq!(
            run::<Passthrough>(&[], &msgs),
            Ok(vec![Outcome::Pass, Outcome::Pass])
        );
    }

    #[test]
    fn settings_are_refused() {
        let err = run::<Passthrough>(&[("mode", "x")], &[]).expect_err("unknown setting");
        assert!(err.contains("unknown setting `mode`"), "{err}");
    }
}
