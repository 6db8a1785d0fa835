//! Masks fields of a JSON payload and says which ones in a header.
//!
//! Settings:
//!
//! | key      | meaning                                                          | default                |
//! |----------|------------------------------------------------------------------|------------------------|
//! | `fields` | comma-separated dotted paths, e.g. `card.number,customer.email` | required               |
//! | `mask`   | the string that replaces each field's value                      | `"***"`                |
//! | `header` | name of the header that lists the masked paths                   | `switchyard-redacted`  |
//!
//! A message in which no configured field occurs passes unchanged (nothing is copied). A
//! message with at least one is re-emitted with the values masked and the header set to the
//! comma-separated paths that were masked; key, other headers and timestamp are kept. A
//! payload that is not JSON is rejected, since its secrets could not be checked.

use switchyard_plugin_sdk::json::{self, Value};
use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, counter, export};

/// The configured redaction.
pub struct Redact {
    fields: Vec<(String, Vec<String>)>,
    mask: String,
    header: String,
}

impl Plugin for Redact {
    fn init(config: &Config) -> Result<Self, String> {
        config.allow_only(&["fields", "mask", "header"])?;
        let fields = config
            .require("fields")?
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| Ok((f.to_owned(), json::path(f)?)))
            .collect::<Result<Vec<_>, String>>()?;
        if fields.is_empty() {
            return Err("setting `fields` lists no field".to_owned());
        }
        Ok(Redact {
            fields,
            mask: config.get("mask").unwrap_or("***").to_owned(),
            header: config
                .get("header")
                .unwrap_or("switchyard-redacted")
                .to_owned(),
        })
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        let mut doc = match json::parse(message.payload()) {
            Ok(doc) => doc,
            Err(reason) => return Outcome::Reject(reason),
        };
        let mut masked = Vec::new();
        for (name, path) in &self.fields {
            if let Some(value) = json::lookup_mut(&mut doc, path) {
                *value = Value::String(self.mask.clone());
                masked.push(name.as_str());
            }
        }
        if masked.is_empty() {
            return Outcome::Pass;
        }
        counter("fields_masked", masked.len() as u64);
        let payload = json::serde_json::to_vec(&doc).unwrap_or_default();
        let out = message
            .to_output()
            .with_payload(payload)
            .without_header(&self.header)
            .with_header(self.header.clone(), masked.join(","));
        Outcome::Emit(vec![out])
    }
}

export!(Redact);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::testing::{TestMessage, run};

    #[test]
    fn masks_present_fields_and_names_them() {
        let msg = TestMessage::new(r#"{"card":{"number":"4111"},"email":"a@b.c","amount":5}"#)
            .key("k1")
            .header("region", "eu");
        let out = run::<Redact>(&[("fields", "card.number, email, ssn")], &[msg]).expect("init");
        let [Outcome::Emit(outputs)] = out.as_slice() else {
            panic!("expected one emit, got {out:?}");
        };
        let o = &outputs[0];
        let doc: Value = json::serde_json::from_slice(o.payload_bytes()).expect("json");
        assert_eq!(doc["card"]["number"], "***");
        assert_eq!(doc["email"], "***");
        assert_eq!(doc["amount"], 5);
        assert_eq!(o.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(
            o.headers,
            vec![
                ("region".to_owned(), Some(b"eu".to_vec())),
                (
                    "switchyard-redacted".to_owned(),
                    Some(b"card.number,email".to_vec())
                )
            ]
        );
        assert_eq!(o.destination, None);
    }

    #[test]
    fn clean_messages_pass_and_junk_is_rejected() {
        let out = run::<Redact>(
            &[("fields", "ssn"), ("mask", "X")],
            &[TestMessage::new(r#"{"a":1}"#), TestMessage::new("{")],
        )
        .expect("init");
        assert_eq!(out[0], Outcome::Pass);
        assert!(matches!(&out[1], Outcome::Reject(r) if r.starts_with("payload is not JSON")));
    }

    #[test]
    fn fields_are_required() {
        assert!(
            run::<Redact>(&[], &[])
                .expect_err("no fields")
                .contains("`fields`")
        );
        assert!(run::<Redact>(&[("fields", " , ")], &[]).is_err());
    }
}
