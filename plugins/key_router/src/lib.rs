//! Routes each message to named destinations, chosen by its key prefix, a header value or
//! a JSON field, with fan-out to several destinations.
//!
//! Settings:
//!
//! | key          | meaning                                                                  |
//! |--------------|--------------------------------------------------------------------------|
//! | `by`         | `key-prefix`, `header:NAME` or `field:DOTTED.PATH`                        |
//! | `to.MATCH`   | comma-separated destinations for messages that match `MATCH`             |
//! | `default`    | destinations for messages that match nothing; unset means `pass`          |
//!
//! With `by = "key-prefix"`, `MATCH` is a key prefix and the longest matching prefix wins.
//! With `header:NAME` or `field:PATH`, `MATCH` is the exact header value or the field's
//! scalar value. Every destination must be declared in the route's `destinations`; the
//! router dead-letters a message sent anywhere else. A message routed to several
//! destinations is emitted once to each, unchanged. With `field:`, a payload that is not
//! JSON is rejected.
//!
//! Example route configuration (TOML):
//!
//! ```toml
//! plugins = [{ path = "key_router.wasm", config = { by = "key-prefix", "to.eu-" = "europe", "to.us-" = "americas,audit" } }]
//! destinations = { europe = "orders-eu", americas = "orders-us", audit = "audit" }
//! ```

use switchyard_plugin_sdk::json;
use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, export};

enum Selector {
    KeyPrefix,
    Header(String),
    Field(Vec<String>),
}

/// The configured routing table.
pub struct KeyRouter {
    by: Selector,
    /// (match, destinations); for key prefixes, sorted longest first.
    table: Vec<(String, Vec<String>)>,
    default: Option<Vec<String>>,
}

fn destinations(setting: &str, list: &str) -> Result<Vec<String>, String> {
    let dests: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect();
    if dests.is_empty() {
        return Err(format!("setting `{setting}` names no destination"));
    }
    Ok(dests)
}

impl Plugin for KeyRouter {
    fn init(config: &Config) -> Result<Self, String> {
        if let Some((key, _)) = config
            .iter()
            .find(|(k, _)| !matches!(*k, "by" | "default") && !k.starts_with("to."))
        {
            return Err(format!(
                "unknown setting `{key}` (expected `by`, `default` or `to.MATCH`)"
            ));
        }
        let by = match config.require("by")? {
            "key-prefix" => Selector::KeyPrefix,
            s => match (s.strip_prefix("header:"), s.strip_prefix("field:")) {
                (Some(name), _) if !name.is_empty() => Selector::Header(name.to_owned()),
                (_, Some(path)) => Selector::Field(json::path(path)?),
                _ => {
                    return Err(format!(
                        "setting `by` = {s:?} is invalid: expected `key-prefix`, `header:NAME` \
                         or `field:PATH`"
                    ));
                }
            },
        };
        let mut table = config
            .with_prefix("to.")
            .map(|(m, list)| Ok((m.to_owned(), destinations(&format!("to.{m}"), list)?)))
            .collect::<Result<Vec<_>, String>>()?;
        if table.is_empty() {
            return Err("no `to.MATCH` setting: nothing to route".to_owned());
        }
        table.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        let default = config
            .get("default")
            .map(|d| destinations("default", d))
            .transpose()?;
        Ok(KeyRouter { by, table, default })
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        let found = match &self.by {
            Selector::KeyPrefix => {
                let key = message.key().unwrap_or_default();
                self.table
                    .iter()
                    .find(|(p, _)| key.starts_with(p.as_bytes()))
            }
            Selector::Header(name) => message
                .header(name)
                .and_then(|v| self.table.iter().find(|(m, _)| m.as_bytes() == v)),
            Selector::Field(path) => {
                let doc = match json::parse(message.payload()) {
                    Ok(doc) => doc,
                    Err(reason) => return Outcome::Reject(reason),
                };
                json::lookup(&doc, path)
                    .and_then(json::scalar_text)
                    .and_then(|v| self.table.iter().find(|(m, _)| *m == v))
            }
        };
        let dests = match (found, &self.default) {
            (Some((_, dests)), _) | (None, Some(dests)) => dests,
            (None, None) => return Outcome::Pass,
        };
        let out = message.to_output();
        Outcome::Emit(dests.iter().map(|d| out.clone().to(d.as_str())).collect())
    }
}

export!(KeyRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::testing::{TestMessage, run};

    fn dests(outcome: &Outcome) -> Vec<&str> {
        match outcome {
            Outcome::Emit(outs) => outs
                .iter()
                .filter_map(|o| o.destination.as_deref())
                .collect(),
            other => panic!("expected emit, got {other:?}"),
        }
    }

    #[test]
    fn longest_key_prefix_wins_and_fans_out() {
        let cfg = [
            ("by", "key-prefix"),
            ("to.eu-", "europe"),
            ("to.eu-de-", "germany, audit"),
        ];
        let msgs = [
            TestMessage::new("1").key("eu-fr-1"),
            TestMessage::new("2").key("eu-de-9").header("h", "v"),
            TestMessage::new("3").key("us-1"),
        ];
        let out = run::<KeyRouter>(&cfg, &msgs).expect("init");
        assert_eq!(dests(&out[0]), ["europe"]);
        assert_eq!(dests(&out[1]), ["germany", "audit"]);
        let Outcome::Emit(outs) = &out[1] else {
            unreachable!()
        };
        assert!(
            outs.iter()
                .all(|o| o.payload_bytes() == b"2" && o.key.as_deref() == Some(&b"eu-de-9"[..]))
        );
        assert_eq!(out[2], Outcome::Pass);
    }

    #[test]
    fn header_and_field_selectors() {
        let out = run::<KeyRouter>(
            &[
                ("by", "header:region"),
                ("to.eu", "europe"),
                ("default", "rest"),
            ],
            &[
                TestMessage::new("x").header("region", "eu"),
                TestMessage::new("y"),
            ],
        )
        .expect("init");
        assert_eq!(dests(&out[0]), ["europe"]);
        assert_eq!(dests(&out[1]), ["rest"]);

        let out = run::<KeyRouter>(
            &[
                ("by", "field:customer.tier"),
                ("to.gold", "vip"),
                ("to.7", "seven"),
            ],
            &[
                TestMessage::new(r#"{"customer":{"tier":"gold"}}"#),
                TestMessage::new(r#"{"customer":{"tier":7}}"#),
                TestMessage::new("nope"),
            ],
        )
        .expect("init");
        assert_eq!(dests(&out[0]), ["vip"]);
        assert_eq!(dests(&out[1]), ["seven"]);
        assert!(matches!(out[2], Outcome::Reject(_)));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = run::<KeyRouter>(&[("by", "colour")], &[]).expect_err("bad by");
        assert!(err.contains("`by`"), "{err}");
        let err = run::<KeyRouter>(&[("by", "key-prefix")], &[]).expect_err("empty table");
        assert!(err.contains("to.MATCH"), "{err}");
        let err = run::<KeyRouter>(&[("by", "key-prefix"), ("tx.a", "b")], &[]).expect_err("typo");
        assert!(err.contains("`tx.a`"), "{err}");
    }
}
