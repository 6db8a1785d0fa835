//! The JSON answers of the gateway, written straight into a reused buffer: one answer per
//! request, so no intermediate document is built.

use std::fmt::Write as _;

use crate::pipeline::{Receipt, Stored};

/// Writes a settled request's answer into `out` and returns its status: `failed` over
/// `rejected` over `ok` (some record stored) over `dropped`.
pub fn render(receipt: &Receipt, duplicate: bool, out: &mut String) -> &'static str {
    let status = if receipt.failed.is_some() {
        "failed"
    } else if receipt.rejected.is_some() {
        "rejected"
    } else if !receipt.records.is_empty() {
        "ok"
    } else {
        "dropped"
    };
    out.push_str(r#"{"status":""#);
    out.push_str(status);
    out.push('"');
    match status {
        "failed" => {
            if let Some((kind, message)) = &receipt.failed {
                out.push_str(r#","error":{"kind":"#);
                string(out, kind);
                out.push_str(r#","message":"#);
                string(out, message);
                out.push('}');
            }
        }
        "rejected" => {
            if let Some((plugin, reason)) = &receipt.rejected {
                out.push_str(r#","plugin":"#);
                string(out, plugin);
                out.push_str(r#","reason":"#);
                string(out, reason);
            }
        }
        "dropped" => {
            out.push_str(if receipt.dropped {
                r#","reason":"a plugin dropped it""#
            } else {
                r#","reason":"no route took it""#
            });
        }
        _ => {}
    }
    if status == "rejected" || !receipt.dead_letters.is_empty() {
        out.push_str(r#","dead_letter":"#);
        match receipt.dead_letters.first() {
            Some(stored) => record(out, stored),
            None => out.push_str("null"),
        }
    }
    if status != "dropped" {
        out.push_str(r#","records":["#);
        for (i, stored) in receipt.records.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            record(out, stored);
        }
        out.push(']');
    }
    if duplicate {
        out.push_str(r#","duplicate":true"#);
    }
    out.push('}');
    status
}

/// `{"output": ..., "topic": ..., "partition": ..., "offset": ...}` (a ZeroMQ output has
/// its name only).
fn record(out: &mut String, stored: &Stored) {
    out.push_str(r#"{"output":"#);
    string(out, &stored.output);
    if let Some((topic, partition, offset)) = &stored.kafka {
        out.push_str(r#","topic":"#);
        string(out, topic);
        let mut number = itoa::Buffer::new();
        out.push_str(r#","partition":"#);
        out.push_str(number.format(*partition));
        out.push_str(r#","offset":"#);
        out.push_str(number.format(*offset));
    }
    out.push('}');
}

/// `text` as a JSON string.
fn string(out: &mut String, text: &str) {
    out.push('"');
    if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(text);
        out.push('"');
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
