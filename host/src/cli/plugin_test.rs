//! `switchyard plugin test`: runs a plugin over JSONL messages and prints each outcome as a
//! JSON line, so a plugin author can check a plugin with no broker at all.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use switchyard_abi::{BatchWriter, MessageBuf, Outcome, Output};

use super::PluginTestArgs;
use crate::plugin::{PluginError, PluginInstance, PluginLimits, PluginRuntime, RuntimeOptions};

/// One input message and the line it came from.
#[derive(Debug, Default)]
pub(crate) struct TestInput {
    line: usize,
    message: MessageBuf,
}

/// Outcome tallies for the summary line.
#[derive(Debug, Default)]
struct Tally {
    messages: u64,
    pass: u64,
    drop: u64,
    emit: u64,
    reply: u64,
    reject: u64,
    error: u64,
    invalid_lines: u64,
}

pub(super) fn run(args: PluginTestArgs) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn BufRead> = match &args.input {
        Some(path) => Box::new(BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };

    let runtime = PluginRuntime::new(RuntimeOptions::default())?;
    let limits = PluginLimits {
        timeout: Duration::from_millis(args.timeout_ms),
        memory_bytes: args.memory_mb.saturating_mul(1 << 20),
    };
    let plugin = runtime.load(&args.plugin, limits)?;
    let mut instance = PluginInstance::new(plugin, args.config.clone()).map_err(|e| {
        anyhow::anyhow!(
            "plugin {} refused ({}): {e}",
            args.plugin.display(),
            e.kind()
        )
    })?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut tally = Tally::default();
    let mut batch = BatchWriter::new();
    let mut pending: Vec<TestInput> = Vec::new();

    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("cannot read input line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(number, &line) {
            Ok(input) => pending.push(input),
            Err(problem) => {
                tally.invalid_lines += 1;
                eprintln!("switchyard: input line {number} skipped: {problem}");
            }
        }
        if pending.len() >= args.batch as usize {
            run_batch(
                &mut instance,
                &args,
                &mut batch,
                &mut pending,
                &mut tally,
                &mut out,
            )?;
        }
    }
    run_batch(
        &mut instance,
        &args,
        &mut batch,
        &mut pending,
        &mut tally,
        &mut out,
    )?;

    let counters: BTreeMap<String, u64> = instance.counters();
    let summary = json!({
        "summary": {
            "messages": tally.messages,
            "pass": tally.pass,
            "drop": tally.drop,
            "emit": tally.emit,
            "reply": tally.reply,
            "reject": tally.reject,
            "error": tally.error,
            "invalid_lines": tally.invalid_lines,
            "counters": counters,
        }
    });
    writeln!(out, "{summary}")?;
    out.flush()?;
    Ok(if tally.error == 0 && tally.invalid_lines == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Sends the pending messages as one batch and prints their outcomes.
fn run_batch(
    instance: &mut PluginInstance,
    args: &PluginTestArgs,
    batch: &mut BatchWriter,
    pending: &mut Vec<TestInput>,
    tally: &mut Tally,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    batch.start(&args.input_name);
    for m in pending.iter() {
        batch.push_buf(&m.message);
    }
    let result = instance.process(batch);
    for (i, m) in pending.drain(..).enumerate() {
        tally.messages += 1;
        let outcome = match &result {
            Ok(outcomes) => check_destinations(&outcomes[i], &args.destinations),
            Err(e) => Err(e.to_string_with_kind()),
        };
        let record = match outcome {
            Ok(Outcome::Pass) => {
                tally.pass += 1;
                json!({"line": m.line, "outcome": "pass"})
            }
            Ok(Outcome::Drop) => {
                tally.drop += 1;
                json!({"line": m.line, "outcome": "drop"})
            }
            Ok(Outcome::Reject(reason)) => {
                tally.reject += 1;
                json!({"line": m.line, "outcome": "reject", "reason": reason})
            }
            Ok(Outcome::Emit(outputs)) => {
                tally.emit += 1;
                let messages: Vec<Value> = outputs.iter().map(output_json).collect();
                json!({"line": m.line, "outcome": "emit", "messages": messages})
            }
            Ok(Outcome::Reply(reply)) => {
                tally.reply += 1;
                let messages: Vec<Value> = reply.emit.iter().map(output_json).collect();
                let mut answer = json!({"payload": bytes_json(&reply.payload)});
                if !reply.headers.is_empty() {
                    answer["headers"] = reply
                        .headers
                        .iter()
                        .map(|(n, v)| json!([n, nullable_json(v.as_deref())]))
                        .collect();
                }
                json!({"line": m.line, "outcome": "reply", "reply": answer, "messages": messages})
            }
            Err((kind, message)) => {
                tally.error += 1;
                json!({"line": m.line, "outcome": "error", "kind": kind, "message": message})
            }
        };
        writeln!(out, "{record}")?;
    }
    Ok(())
}

impl PluginError {
    fn to_string_with_kind(&self) -> (&'static str, String) {
        (self.kind().as_str(), self.to_string())
    }
}

/// Fails an emit to a destination that was not declared with `--destination`.
fn check_destinations(
    outcome: &Outcome,
    declared: &[String],
) -> Result<Outcome, (&'static str, String)> {
    let outputs = match outcome {
        Outcome::Emit(outputs) => Some(outputs),
        Outcome::Reply(reply) => Some(&reply.emit),
        _ => None,
    };
    if let Some(outputs) = outputs
        && let Some(bad) = outputs
            .iter()
            .filter_map(|o| o.destination.as_deref())
            .find(|d| !declared.iter().any(|x| x == d))
    {
        return Err(PluginError::Destination(bad.to_owned()).to_string_with_kind());
    }
    Ok(outcome.clone())
}

/// [`bytes_json`], or `null` for a null value.
fn nullable_json(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, bytes_json)
}

/// Text when the bytes are UTF-8, otherwise `{"base64": "..."}`.
fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(_) => json!({ "base64": BASE64.encode(bytes) }),
    }
}

fn output_json(o: &Output) -> Value {
    let mut m = Map::new();
    if let Some(d) = &o.destination {
        m.insert("destination".into(), Value::from(d.as_str()));
    }
    if let Some(k) = &o.key {
        m.insert("key".into(), bytes_json(k));
    }
    m.insert("payload".into(), nullable_json(o.payload.as_deref()));
    if !o.headers.is_empty() {
        let headers: Vec<Value> = o
            .headers
            .iter()
            .map(|(n, v)| json!([n, nullable_json(v.as_deref())]))
            .collect();
        m.insert("headers".into(), Value::from(headers));
    }
    if let Some(p) = o.partition {
        m.insert("partition".into(), Value::from(p));
    }
    if let Some(t) = o.timestamp {
        m.insert("timestamp".into(), Value::from(t));
    }
    Value::Object(m)
}

/// The `payload` field: text, its `_base64` twin, or `null` for a record with no value (a
/// tombstone).
fn payload_field(obj: &Map<String, Value>) -> Result<Option<Vec<u8>>, String> {
    if obj.get("payload") == Some(&Value::Null) {
        if obj.contains_key("payload_base64") {
            return Err("both `payload` and `payload_base64` are set".to_owned());
        }
        return Ok(None);
    }
    text_or_base64(obj, "payload")?
        .map(Some)
        .ok_or_else(|| "missing `payload` (or `payload_base64`; `null` for a tombstone)".to_owned())
}

/// A text field, or its `_base64` twin decoded.
fn text_or_base64(obj: &Map<String, Value>, field: &str) -> Result<Option<Vec<u8>>, String> {
    let b64 = format!("{field}_base64");
    match (obj.get(field), obj.get(&b64)) {
        (Some(_), Some(_)) => Err(format!("both `{field}` and `{b64}` are set")),
        (Some(Value::String(s)), None) => Ok(Some(s.clone().into_bytes())),
        (Some(other), None) => Err(format!("`{field}` must be a string, not {other}")),
        (None, Some(Value::String(s))) => BASE64
            .decode(s)
            .map(Some)
            .map_err(|e| format!("`{b64}` is not valid base64: {e}")),
        (None, Some(other)) => Err(format!("`{b64}` must be a string, not {other}")),
        (None, None) => Ok(None),
    }
}

/// A header's value: text, `{"base64": "..."}`, or `null` for a null value.
fn header_value(name: &str, v: &Value) -> Result<Option<Vec<u8>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone().into_bytes())),
        Value::Object(o) => match o.get("base64") {
            Some(Value::String(s)) if o.len() == 1 => BASE64
                .decode(s)
                .map(Some)
                .map_err(|e| format!("header `{name}`: invalid base64: {e}")),
            _ => Err(format!(
                "header `{name}`: expected a string, {{\"base64\": \"...\"}} or null"
            )),
        },
        other => Err(format!(
            "header `{name}`: expected a string or null, not {other}"
        )),
    }
}

fn parse_headers(v: &Value) -> Result<Vec<switchyard_abi::Header>, String> {
    match v {
        Value::Object(map) => map
            .iter()
            .map(|(n, v)| Ok((n.clone(), header_value(n, v)?)))
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([Value::String(n), v]) => Ok((n.clone(), header_value(n, v)?)),
                _ => Err(format!(
                    "`headers` items must be [name, value] pairs, not {item}"
                )),
            })
            .collect(),
        other => Err(format!(
            "`headers` must be an object or a list of pairs, not {other}"
        )),
    }
}

fn int_field<T: TryFrom<i64>>(obj: &Map<String, Value>, field: &str) -> Result<Option<T>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("`{field}` must be an integer in range, not {v}")),
    }
}

const FIELDS: &[&str] = &[
    "key",
    "key_base64",
    "payload",
    "payload_base64",
    "headers",
    "topic",
    "partition",
    "offset",
    "timestamp",
];

pub(crate) fn parse_line(line: usize, text: &str) -> Result<TestInput, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("expected a JSON object".to_owned());
    };
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{unknown}` (expected one of: {})",
            FIELDS.join(", ")
        ));
    }
    let payload = payload_field(&obj)?;
    let kafka = match obj.get("topic") {
        None | Some(Value::Null) => None,
        Some(Value::String(topic)) => Some((
            topic.clone(),
            int_field(&obj, "partition")?.unwrap_or(0),
            int_field(&obj, "offset")?.unwrap_or(line as i64 - 1),
        )),
        Some(other) => return Err(format!("`topic` must be a string, not {other}")),
    };
    Ok(TestInput {
        line,
        message: MessageBuf {
            kafka,
            key: text_or_base64(&obj, "key")?,
            payload,
            headers: obj
                .get("headers")
                .map(parse_headers)
                .transpose()?
                .unwrap_or_default(),
            timestamp: int_field(&obj, "timestamp")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field_form() {
        let m = parse_line(
            3,
            r#"{"key_base64": "AP8=", "payload": "p", "headers": [["a", "1"], ["a", {"base64": "Ag=="}]], "topic": "t", "partition": 2, "timestamp": 5}"#,
        )
        .expect("valid")
        .message;
        assert_eq!(m.key, Some(vec![0, 255]));
        assert_eq!(m.payload.as_deref(), Some(&b"p"[..]));
        assert_eq!(
            m.headers,
            vec![
                ("a".into(), Some(b"1".to_vec())),
                ("a".into(), Some(vec![2]))
            ]
        );
        assert_eq!(m.kafka, Some(("t".into(), 2, 2)));
        assert_eq!(m.timestamp, Some(5));
        let m = parse_line(1, r#"{"payload": "", "headers": {"z": "1", "b": "2"}}"#)
            .expect("valid")
            .message;
        assert_eq!(
            m.headers,
            vec![
                ("z".into(), Some(b"1".to_vec())),
                ("b".into(), Some(b"2".to_vec()))
            ]
        );
        let m = parse_line(
            1,
            r#"{"key": "k", "payload": null, "headers": [["n", null]]}"#,
        )
        .expect("a tombstone with a null header")
        .message;
        assert_eq!(m.payload, None);
        assert_eq!(m.headers, vec![("n".into(), None)]);
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let cases = [
            ("{", "not JSON"),
            ("[1]", "expected a JSON object"),
            (r#"{"key": "k"}"#, "missing `payload`"),
            (r#"{"payload": 1}"#, "`payload` must be a string"),
            (r#"{"payload": "a", "payload_base64": "YQ=="}"#, "both"),
            (r#"{"payload_base64": "!!"}"#, "not valid base64"),
            (
                r#"{"payload": "a", "hedears": {}}"#,
                "unknown field `hedears`",
            ),
            (r#"{"payload": "a", "headers": [["a"]]}"#, "pairs"),
            (
                r#"{"payload": "a", "topic": "t", "partition": 1e40}"#,
                "`partition`",
            ),
        ];
        for (line, expected) in cases {
            let err = parse_line(1, line).expect_err(line);
            assert!(err.contains(expected), "{line}: {err}");
        }
    }
}
