//! JSON payload helpers (feature `json`): parse a payload and address fields by dotted
//! path, such as `order.customer.id` or `items.0.price` (a number selects an array item).

pub use serde_json::{self, Value};

/// Parses a payload as JSON, with an error fit for a `reject` reason.
pub fn parse(payload: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))
}

/// Splits a dotted path into its segments; an empty path or segment is an error naming it.
pub fn path(dotted: &str) -> Result<Vec<String>, String> {
    let segments: Vec<String> = dotted.split('.').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) {
        return Err(format!("invalid field path {dotted:?}: empty segment"));
    }
    Ok(segments)
}

/// The value at `path` inside `value`.
pub fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// The value at `path` inside `value`, mutably.
pub fn lookup_mut<'v>(value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Object(map) => map.get_mut(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

/// A scalar as text: strings without quotes, numbers and booleans as written, `null` as
/// `null`; `None` for objects and arrays.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".to_owned()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_reach_objects_and_arrays() {
        let v = parse(br#"{"a": {"b": [10, {"c": "x"}]}}"#).expect("json");
        assert_eq!(
            lookup(&v, &path("a.b.0").expect("path")),
            Some(&Value::from(10))
        );
        assert_eq!(
            lookup(&v, &path("a.b.1.c").expect("path")),
            Some(&Value::from("x"))
        );
        assert_eq!(lookup(&v, &path("a.z").expect("path")), None);
        assert!(path("a..b").is_err());
        assert!(
            parse(b"{nope")
                .expect_err("not json")
                .starts_with("payload is not JSON")
        );
    }
}
