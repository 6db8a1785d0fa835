//! Answers a price request itself and records the order: the reply a client of a ZeroMQ
//! gateway (a ROUTER input with `reply = "ack"`) reads is computed here, not a status.
//!
//! A request is JSON with an `item` and a whole `qty`, such as `{"item": "apple", "qty": 3}`.
//! The plugin replies `{"item": "apple", "qty": 3, "total": 1.5}` and writes the request to
//! the route's outputs with the total in a `quote-total` header. By default the reply is
//! sent once the record is acknowledged (so a client that reads a quote knows its order is
//! recorded); with the route's `reply_when = "immediate"` it goes at once.
//!
//! Settings: `price.ITEM` is the unit price of `ITEM` (at least one). An unknown item, a
//! missing or negative quantity, or a payload that is not JSON is rejected with the reason
//! (the client then reads a `rejected` status naming it).

use std::collections::BTreeMap;

use switchyard_plugin_sdk::json::{self, Value};
use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, Reply, counter, export};

/// Unit prices by item.
pub struct Quote {
    prices: BTreeMap<String, f64>,
}

impl Plugin for Quote {
    fn init(config: &Config) -> Result<Self, String> {
        let mut prices = BTreeMap::new();
        for (key, value) in config.iter() {
            let Some(item) = key.strip_prefix("price.") else {
                return Err(format!(
                    "unknown setting `{key}`: settings are `price.ITEM = \"UNIT PRICE\"`"
                ));
            };
            let price: f64 = value
                .parse()
                .map_err(|_| format!("`{key}`: `{value}` is not a price"))?;
            if !price.is_finite() || price < 0.0 {
                return Err(format!("`{key}`: a price is a number of 0 or more"));
            }
            prices.insert(item.to_owned(), price);
        }
        if prices.is_empty() {
            return Err("set at least one `price.ITEM`".to_owned());
        }
        Ok(Quote { prices })
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        match self.quote(message.payload()) {
            Ok((item, qty, total)) => {
                counter("quoted", 1);
                let answer = serde_json_text(&item, qty, total);
                let order = message
                    .to_output()
                    .with_header("quote-total", total.to_string());
                Outcome::Reply(Reply::new(answer).and_emit(order))
            }
            Err(reason) => Outcome::Reject(reason),
        }
    }
}

impl Quote {
    /// The item, quantity and total of a request.
    fn quote(&self, payload: &[u8]) -> Result<(String, u64, f64), String> {
        let request = json::parse(payload)?;
        let item = request
            .get("item")
            .and_then(Value::as_str)
            .ok_or("`item` is missing or not a string")?;
        let qty = request
            .get("qty")
            .and_then(Value::as_u64)
            .ok_or("`qty` is missing or not a whole number of 0 or more")?;
        let price = self
            .prices
            .get(item)
            .ok_or_else(|| format!("no price for `{item}`"))?;
        Ok((item.to_owned(), qty, price * qty as f64))
    }
}

/// The reply's JSON text.
fn serde_json_text(item: &str, qty: u64, total: f64) -> String {
    json::serde_json::json!({ "item": item, "qty": qty, "total": total }).to_string()
}

export!(Quote);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::testing::{TestMessage, run};

    #[test]
    fn replies_with_the_total_and_records_the_order() {
        let out = run::<Quote>(
            &[("price.apple", "0.5"), ("price.pear", "2")],
            &[
                TestMessage::new(r#"{"item": "apple", "qty": 3}"#),
                TestMessage::new(r#"{"item": "plum", "qty": 1}"#),
                TestMessage::new("three apples"),
            ],
        )
        .expect("runs");
        let Outcome::Reply(reply) = &out[0] else {
            panic!("{:?}", out[0]);
        };
        let answer: Value = json::parse(&reply.payload).expect("JSON");
        assert_eq!(answer["total"], 1.5);
        assert_eq!(reply.emit.len(), 1);
        assert_eq!(
            reply.emit[0].headers,
            vec![("quote-total".to_owned(), Some(b"1.5".to_vec()))]
        );
        assert_eq!(out[1], Outcome::Reject("no price for `plum`".into()));
        assert!(matches!(&out[2], Outcome::Reject(r) if r.starts_with("payload is not JSON")));
    }

    #[test]
    fn settings_are_checked() {
        assert!(run::<Quote>(&[], &[]).is_err());
        assert!(run::<Quote>(&[("apple", "1")], &[]).is_err());
        assert!(run::<Quote>(&[("price.apple", "-1")], &[]).is_err());
    }
}
