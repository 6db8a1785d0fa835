//! Filters JSON messages by comparing one field with a value.
//!
//! Settings:
//!
//! | key     | meaning                                                                  |
//! |---------|--------------------------------------------------------------------------|
//! | `field` | dotted path into the payload, e.g. `order.amount` or `items.0.sku`       |
//! | `op`    | `eq`, `ne`, `lt`, `lte`, `gt`, `gte`, `contains` or `exists`             |
//! | `value` | what to compare with (not used by `exists`)                              |
//!
//! The message passes when the comparison holds and is dropped when it does not (a missing
//! field never satisfies a comparison, `ne` included). A payload that is not JSON is
//! rejected to the dead-letter output with the parse error as its reason.
//!
//! Numbers compare as numbers (`"100"` equals `100.0`), strings as text, booleans and
//! `null` by their JSON spelling. `contains` holds for a string containing `value` or an
//! array holding an element equal to it.

use std::cmp::Ordering;

use switchyard_plugin_sdk::json::{self, Value};
use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, counter, export};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    Contains,
    Exists,
}

impl Op {
    fn parse(s: &str) -> Result<Op, String> {
        Ok(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "contains" => Op::Contains,
            "exists" => Op::Exists,
            other => {
                return Err(format!(
                    "setting `op` = {other:?} is invalid: expected one of eq, ne, lt, lte, gt, \
                     gte, contains, exists"
                ));
            }
        })
    }
}

/// The configured comparison.
pub struct JsonFilter {
    field: Vec<String>,
    op: Op,
    value: String,
    /// `value` as a number, when it is one: parsed once, compared per message.
    number: Option<f64>,
}

impl Plugin for JsonFilter {
    fn init(config: &Config) -> Result<Self, String> {
        config.allow_only(&["field", "op", "value"])?;
        let field = json::path(config.require("field")?)?;
        let op = Op::parse(config.require("op")?)?;
        let value = match op {
            Op::Exists => config.get("value").unwrap_or_default().to_owned(),
            _ => config.require("value")?.to_owned(),
        };
        let number = value.trim().parse::<f64>().ok();
        Ok(JsonFilter {
            field,
            op,
            value,
            number,
        })
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        let doc = match json::parse(message.payload()) {
            Ok(doc) => doc,
            Err(reason) => return Outcome::Reject(reason),
        };
        if self.holds(json::lookup(&doc, &self.field)) {
            Outcome::Pass
        } else {
            counter("filtered_out", 1);
            Outcome::Drop
        }
    }
}

impl JsonFilter {
    fn holds(&self, found: Option<&Value>) -> bool {
        let Some(found) = found else {
            return false;
        };
        match self.op {
            Op::Exists => true,
            Op::Contains => match found {
                Value::String(s) => s.contains(&self.value),
                Value::Array(items) => items
                    .iter()
                    .any(|item| self.compare(item) == Some(Ordering::Equal)),
                _ => false,
            },
            Op::Ne => self.compare(found) != Some(Ordering::Equal),
            op => match self.compare(found) {
                Some(ord) => match op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Lt => ord == Ordering::Less,
                    Op::Lte => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Gte => ord != Ordering::Less,
                    Op::Ne | Op::Contains | Op::Exists => unreachable!("handled above"),
                },
                None => false,
            },
        }
    }

    /// How `found` orders against the configured value; `None` when they do not compare
    /// (a number against a non-numeric value, an object, ...).
    fn compare(&self, found: &Value) -> Option<Ordering> {
        match found {
            Value::Number(n) => n.as_f64()?.partial_cmp(&self.number?),
            Value::String(s) => Some(s.as_str().cmp(self.value.as_str())),
            Value::Bool(_) | Value::Null => json::scalar_text(found).map(|t| t.cmp(&self.value)),
            Value::Array(_) | Value::Object(_) => None,
        }
    }
}

export!(JsonFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::testing::{TestMessage, run};

    fn check(op: &str, value: &str, payloads: &[&str]) -> Vec<Outcome> {
        let msgs: Vec<_> = payloads.iter().map(|p| TestMessage::new(*p)).collect();
        run::<JsonFilter>(
            &[("field", "order.amount"), ("op", op), ("value", value)],
            &msgs,
        )
        .expect("init")
    }

    #[test]
    fn numbers_compare_as_numbers() {
        let payloads = [
            r#"{"order": {"amount": 99}}"#,
            r#"{"order": {"amount": 100.0}}"#,
            r#"{"order": {"amount": 1000}}"#,
        ];
        use Outcome::{Drop, Pass};
        assert_eq!(check("gte", "100", &payloads), vec![Drop, Pass, Pass]);
        assert_eq!(check("gt", "100", &payloads), vec![Drop, Drop, Pass]);
        assert_eq!(check("lt", "100", &payloads), vec![Pass, Drop, Drop]);
        assert_eq!(check("lte", "100", &payloads), vec![Pass, Pass, Drop]);
        assert_eq!(check("eq", "100", &payloads), vec![Drop, Pass, Drop]);
        assert_eq!(check("ne", "100", &payloads), vec![Pass, Drop, Pass]);
    }

    #[test]
    fn strings_contains_and_exists() {
        use Outcome::{Drop, Pass};
        let payloads = [
            r#"{"order": {"amount": "large"}}"#,
            r#"{"order": {"amount": ["small", "large"]}}"#,
            r#"{"order": {}}"#,
        ];
        assert_eq!(check("eq", "large", &payloads), vec![Pass, Drop, Drop]);
        assert_eq!(check("contains", "arg", &payloads), vec![Pass, Drop, Drop]);
        assert_eq!(
            check("contains", "small", &payloads),
            vec![Drop, Pass, Drop]
        );
        assert_eq!(check("exists", "", &payloads), vec![Pass, Pass, Drop]);
        assert_eq!(check("ne", "large", &payloads), vec![Drop, Pass, Drop]);
    }

    #[test]
    fn non_json_is_rejected_with_a_reason() {
        let out = check("eq", "1", &["not json"]);
        let [Outcome::Reject(reason)] = out.as_slice() else {
            panic!("expected a reject, got {out:?}");
        };
        assert!(reason.starts_with("payload is not JSON"), "{reason}");
    }

    #[test]
    fn bad_settings_are_named() {
        let err = run::<JsonFilter>(&[("field", "a"), ("op", "like"), ("value", "x")], &[])
            .expect_err("bad op");
        assert!(err.contains("`op`"), "{err}");
        let err = run::<JsonFilter>(&[("field", "a"), ("op", "eq")], &[]).expect_err("no value");
        assert!(err.contains("`value`"), "{err}");
    }
}
