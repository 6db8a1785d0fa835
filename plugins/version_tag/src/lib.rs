//! Test fixture for hot reload: re-emits every message with a `switchyard-version` header
//! naming the build it went through.
//!
//! The version lives in the component's data as the bytes `switchyard-version:v00000001`.
//! The reload tests make any number of distinct builds by rewriting those eight digits in
//! the `.wasm` file, so that every message in the output says which plugin version
//! processed it.

use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, export};

/// The marker the tests rewrite; read through a volatile load so it stays in the data.
static VERSION: [u8; 28] = *b"switchyard-version:v00000001";

/// The version digits, with the leading `v`.
fn version() -> String {
    // SAFETY: a volatile read of a static array, which is always valid.
    let bytes = unsafe { std::ptr::read_volatile(&raw const VERSION) };
    String::from_utf8_lossy(&bytes[19..]).into_owned()
}

/// Tags every message; takes no settings.
pub struct VersionTag {
    version: String,
}

impl Plugin for VersionTag {
    fn init(config: &Config) -> Result<Self, String> {
        config.allow_only(&[])?;
        Ok(VersionTag { version: version() })
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        let out = message
            .to_output()
            .with_header("switchyard-version", self.version.as_bytes());
        Outcome::Emit(vec![out])
    }
}

export!(VersionTag);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::testing::{TestMessage, run};

    #[test]
    fn tags_with_the_built_version() {
        let out = run::<VersionTag>(&[], &[TestMessage::new("p").key("k")]).expect("runs");
        let [Outcome::Emit(outputs)] = out.as_slice() else {
            panic!("expected one emit, got {out:?}");
        };
        assert_eq!(outputs[0].payload_bytes(), b"p");
        assert_eq!(
            outputs[0].headers,
            vec![("switchyard-version".to_owned(), Some(b"v00000001".to_vec()))]
        );
    }
}
