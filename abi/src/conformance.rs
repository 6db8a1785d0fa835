//! `wit/conformance.json`: batches and results as bytes, with what they decode to, for any
//! language's SDK to check itself against. This test checks this crate against it both
//! ways: each case's bytes decode to its values, and its values encode to its bytes.
//!
//! The cases are defined here; `SWITCHYARD_BLESS=1 cargo test -p switchyard-abi` writes
//! the file from them. Without it, the file is read and must agree: a change to the wire
//! format shows as a change to the file.

use serde_json::{Value, json};

use crate::tests::{encode, every_outcome, sample_reply};
use crate::{
    BatchReader, BatchWriter, DecodeError, Header, MessageView, Origin, Outcome, Output, Reply,
    decode_result,
};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/conformance.json");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn opt_hex(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| Value::from(hex(b)))
}

fn opt_unhex(v: &Value) -> Option<Vec<u8>> {
    v.as_str().map(unhex)
}

fn headers_json<'a>(headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Value {
    headers
        .into_iter()
        .map(|(n, v)| json!([n, opt_hex(v)]))
        .collect()
}

fn headers_of(v: &Value) -> Vec<Header> {
    v.as_array()
        .expect("headers")
        .iter()
        .map(|pair| {
            let name = pair[0].as_str().expect("header name").to_owned();
            (name, opt_unhex(&pair[1]))
        })
        .collect()
}

fn origin_json(origin: Origin<'_>) -> Value {
    match origin {
        Origin::None => json!({"kind": "none"}),
        Origin::Kafka {
            topic,
            partition,
            offset,
        } => json!({"kind": "kafka", "topic": topic, "partition": partition, "offset": offset}),
        Origin::Zmq {
            endpoint,
            socket_type,
            topic,
            peer,
        } => json!({
            "kind": "zmq", "endpoint": endpoint, "socket_type": socket_type,
            "topic": opt_hex(topic), "peer": opt_hex(peer)
        }),
    }
}

fn message_json(m: &MessageView<'_>) -> Value {
    json!({
        "origin": origin_json(m.origin()),
        "key": opt_hex(m.key),
        "timestamp": m.timestamp,
        "headers": headers_json(m.headers.iter()),
        "payload": opt_hex(m.payload),
    })
}

/// Pushes message `m` (as JSON) onto `w`.
fn push_json(w: &mut BatchWriter, m: &Value) {
    let o = &m["origin"];
    let zmq = o["kind"] == "zmq";
    let (topic, peer) = if zmq {
        (opt_unhex(&o["topic"]), opt_unhex(&o["peer"]))
    } else {
        (None, None)
    };
    let origin = match o["kind"].as_str() {
        Some("kafka") => Origin::Kafka {
            topic: o["topic"].as_str().expect("topic"),
            partition: i32::try_from(o["partition"].as_i64().expect("partition"))
                .expect("partition"),
            offset: o["offset"].as_i64().expect("offset"),
        },
        Some("zmq") => Origin::Zmq {
            endpoint: o["endpoint"].as_str().expect("endpoint"),
            socket_type: o["socket_type"].as_str().expect("socket type"),
            topic: topic.as_deref(),
            peer: peer.as_deref(),
        },
        _ => Origin::None,
    };
    let headers = headers_of(&m["headers"]);
    let key = opt_unhex(&m["key"]);
    let payload = opt_unhex(&m["payload"]);
    w.push(
        &origin,
        key.as_deref(),
        m["timestamp"].as_i64(),
        headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())),
        payload.as_deref(),
    );
}

fn output_json(o: &Output) -> Value {
    json!({
        "destination": o.destination,
        "key": opt_hex(o.key.as_deref()),
        "payload": opt_hex(o.payload.as_deref()),
        "headers": headers_json(o.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref()))),
        "partition": o.partition,
        "timestamp": o.timestamp,
    })
}

fn output_of(v: &Value) -> Output {
    Output {
        destination: v["destination"].as_str().map(str::to_owned),
        key: opt_unhex(&v["key"]),
        payload: opt_unhex(&v["payload"]),
        headers: headers_of(&v["headers"]),
        partition: v["partition"]
            .as_i64()
            .map(|p| i32::try_from(p).expect("partition")),
        timestamp: v["timestamp"].as_i64(),
    }
}

fn outcome_json(o: &Outcome) -> Value {
    match o {
        Outcome::Pass => json!({"outcome": "pass"}),
        Outcome::Drop => json!({"outcome": "drop"}),
        Outcome::Reject(reason) => json!({"outcome": "reject", "reason": reason}),
        Outcome::Emit(outputs) => json!({
            "outcome": "emit",
            "outputs": outputs.iter().map(output_json).collect::<Vec<_>>(),
        }),
        Outcome::Reply(r) => json!({
            "outcome": "reply",
            "payload": hex(&r.payload),
            "headers": headers_json(r.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref()))),
            "outputs": r.emit.iter().map(output_json).collect::<Vec<_>>(),
        }),
    }
}

fn outcome_of(v: &Value) -> Outcome {
    let outputs = || {
        v["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(output_of)
            .collect()
    };
    match v["outcome"].as_str().expect("outcome") {
        "pass" => Outcome::Pass,
        "drop" => Outcome::Drop,
        "reject" => Outcome::Reject(v["reason"].as_str().expect("reason").to_owned()),
        "emit" => Outcome::Emit(outputs()),
        "reply" => Outcome::Reply(Reply {
            payload: unhex(v["payload"].as_str().expect("payload")),
            headers: headers_of(&v["headers"]),
            emit: outputs(),
        }),
        other => panic!("unknown outcome {other}"),
    }
}

/// Decodes a whole batch to JSON, or names why it is malformed.
fn decode_batch(bytes: &[u8]) -> Result<(String, Vec<Value>), DecodeError> {
    let reader = BatchReader::new(bytes)?;
    let input = reader.input().to_owned();
    let mut messages = Vec::new();
    for m in reader {
        messages.push(message_json(&m?));
    }
    Ok((input, messages))
}

fn batch_bytes(version: u32, input: &str, messages: &[Value]) -> Vec<u8> {
    let mut w = BatchWriter::of_version(version);
    w.start(input);
    for m in messages {
        push_json(&mut w, m);
    }
    w.as_bytes().to_vec()
}

fn kafka_message() -> Value {
    json!({
        "origin": {"kind": "kafka", "topic": "orders", "partition": 3, "offset": 42},
        "key": hex(b"order-1"),
        "timestamp": 1_700_000_000_000_i64,
        "headers": [["region", hex(b"eu")], ["trace", hex(&[0, 0xff])], ["region", hex(b"us")]],
        "payload": hex(br#"{"amount": 5}"#),
    })
}

fn zmq_message() -> Value {
    json!({
        "origin": {
            "kind": "zmq", "endpoint": "tcp://127.0.0.1:5556", "socket_type": "sub",
            "topic": hex(b"EURUSD"), "peer": null
        },
        "key": null,
        "timestamp": null,
        "headers": [],
        "payload": "",
    })
}

fn tombstone_message() -> Value {
    json!({
        "origin": {"kind": "kafka", "topic": "users", "partition": 0, "offset": 7},
        "key": hex(b"user-7"),
        "timestamp": null,
        "headers": [["trace", null], ["empty", ""]],
        "payload": null,
    })
}

/// Every case, as the file holds it.
fn cases() -> Value {
    let mut batches = Vec::new();
    let mut batch = |name: &str, version: u32, about: &str, messages: Vec<Value>| {
        let bytes = batch_bytes(version, "orders", &messages);
        batches.push(json!({
            "name": name, "about": about, "bytes": hex(&bytes),
            "input": "orders", "messages": messages,
        }));
    };
    batch("empty", 1, "a batch of no messages", vec![]);
    batch(
        "kafka-and-zmq",
        1,
        "a Kafka record with repeated and binary headers, and a SUB message with no key",
        vec![kafka_message(), zmq_message()],
    );
    batch(
        "nulls",
        2,
        "version 2: a tombstone (null payload) with a null and an empty header value",
        vec![tombstone_message(), kafka_message()],
    );

    // Decoded only: bytes a later writer may send.
    let mut later = Vec::new();
    let mut unknown_origin = batch_bytes(1, "orders", &[kafka_message()]);
    unknown_origin[4 + 4 + 4 + "orders".len() + 4] = 9;
    let mut as_none = kafka_message();
    as_none["origin"] = json!({"kind": "none"});
    later.push(json!({
        "name": "unknown-origin-kind", "about": "origin kind 9 is read as none; the rest as usual",
        "bytes": hex(&unknown_origin), "input": "orders", "messages": [as_none],
    }));
    let mut appended = batch_bytes(1, "orders", &[zmq_message()]);
    let size_at = 4 + 4 + 4 + "orders".len();
    let size = u32::from_le_bytes(appended[size_at..size_at + 4].try_into().expect("size"));
    appended[size_at..size_at + 4].copy_from_slice(&(size + 3).to_le_bytes());
    appended.extend_from_slice(&[1, 2, 3]);
    later.push(json!({
        "name": "appended-fields", "about": "bytes after the payload, inside the message's size, are ignored",
        "bytes": hex(&appended), "input": "orders", "messages": [zmq_message()],
    }));

    let mut invalid = Vec::new();
    let good = batch_bytes(1, "orders", &[kafka_message()]);
    let mut bad = |name: &str, bytes: Vec<u8>| {
        let error = decode_batch(&bytes).expect_err(name).to_string();
        invalid.push(json!({"name": name, "bytes": hex(&bytes), "error": error}));
    };
    let mut version = good.clone();
    version[0] = 9;
    bad("unknown-version", version);
    bad("truncated", good[..good.len() - 1].to_vec());
    let mut key_size = good.clone();
    key_size[4 + 4 + 4 + "orders".len() + 4 + 8] = 0xff;
    bad("key-past-the-message", key_size);

    let outcome_cases: Vec<(&str, &str, Vec<Outcome>)> = vec![
        (
            "every-outcome",
            "version 1: pass, drop, reject, an empty emit, and an emit of two outputs",
            every_outcome(),
        ),
        (
            "reply",
            "version 2: a reply with a header that also writes a record",
            vec![Outcome::Pass, sample_reply()],
        ),
        (
            "nulls",
            "version 3: a tombstone with a null header value",
            vec![Outcome::Emit(vec![
                Output::tombstone("user-7").with_null_header("trace"),
            ])],
        ),
    ];
    let results: Vec<Value> = outcome_cases
        .iter()
        .map(|(name, about, outcomes)| {
            json!({
                "name": name, "about": about, "bytes": hex(&encode(outcomes)),
                "count": outcomes.len(),
                "outcomes": outcomes.iter().map(outcome_json).collect::<Vec<_>>(),
            })
        })
        .collect();

    let mut invalid_results = Vec::new();
    let one = encode(&[Outcome::Drop]);
    let mut bad_result = |name: &str, bytes: Vec<u8>, count: usize| {
        let error = decode_result(&bytes, count).expect_err(name).to_string();
        invalid_results.push(json!({
            "name": name, "bytes": hex(&bytes), "count": count, "error": error,
        }));
    };
    bad_result("wrong-count", one.clone(), 2);
    let mut trailing = one.clone();
    trailing.push(0);
    bad_result("trailing-bytes", trailing, 1);
    let mut tag = one.clone();
    tag[8] = 9;
    bad_result("unknown-tag", tag, 1);
    let mut reply_in_1 = encode(&[Outcome::reply("x")]);
    reply_in_1[0] = 1;
    bad_result("reply-in-version-1", reply_in_1, 1);
    let mut null_header_in_2 =
        encode(&[Outcome::Emit(vec![Output::new("p").with_null_header("h")])]);
    null_header_in_2[0] = 2;
    bad_result("null-header-before-version-3", null_header_in_2, 1);

    json!({
        "about": "Batches and results of the Switchyard plugin wire format (wit/plugin.wit), \
                  as hex bytes with what they decode to. Bytes are hex strings; null is \
                  absent (a key, a timestamp) or null (a payload, a header value). An SDK \
                  should decode every `bytes` to its values, encode `batches` and \
                  `results` values to exactly their `bytes`, read `decoded_only` batches \
                  as shown, and refuse every `invalid_*` case (`error` is this \
                  implementation's message, for information).",
        "batches": batches,
        "decoded_only": later,
        "invalid_batches": invalid,
        "results": results,
        "invalid_results": invalid_results,
    })
}

#[test]
fn the_conformance_file_agrees_with_this_implementation() {
    let expected = cases();
    if std::env::var_os("SWITCHYARD_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&expected).expect("JSON") + "\n";
        std::fs::write(FILE, text).expect("write the conformance file");
    }
    let text = std::fs::read_to_string(FILE).expect("wit/conformance.json");
    let file: Value = serde_json::from_str(&text).expect("the conformance file is JSON");
    assert_eq!(
        file, expected,
        "wit/conformance.json is out of date (SWITCHYARD_BLESS=1 rewrites it)"
    );

    for case in file["batches"].as_array().expect("batches") {
        let bytes = unhex(case["bytes"].as_str().expect("bytes"));
        let messages = case["messages"].as_array().expect("messages");
        let (input, decoded) = decode_batch(&bytes).expect("a valid batch");
        assert_eq!(input, case["input"].as_str().expect("input"));
        assert_eq!(&decoded, messages, "{}", case["name"]);
        let version = u32::from_le_bytes(bytes[0..4].try_into().expect("version"));
        assert_eq!(
            batch_bytes(version, &input, messages),
            bytes,
            "{}",
            case["name"]
        );
    }
    for case in file["decoded_only"].as_array().expect("decoded_only") {
        let bytes = unhex(case["bytes"].as_str().expect("bytes"));
        let (_, decoded) = decode_batch(&bytes).expect("a readable batch");
        assert_eq!(&decoded, case["messages"].as_array().expect("messages"));
    }
    for case in file["invalid_batches"].as_array().expect("invalid_batches") {
        let bytes = unhex(case["bytes"].as_str().expect("bytes"));
        assert!(decode_batch(&bytes).is_err(), "{}", case["name"]);
    }
    for case in file["results"].as_array().expect("results") {
        let bytes = unhex(case["bytes"].as_str().expect("bytes"));
        let count = usize::try_from(case["count"].as_u64().expect("count")).expect("count");
        let outcomes: Vec<Outcome> = case["outcomes"]
            .as_array()
            .expect("outcomes")
            .iter()
            .map(outcome_of)
            .collect();
        assert_eq!(decode_result(&bytes, count).as_ref(), Ok(&outcomes));
        assert_eq!(encode(&outcomes), bytes, "{}", case["name"]);
    }
    for case in file["invalid_results"].as_array().expect("invalid_results") {
        let bytes = unhex(case["bytes"].as_str().expect("bytes"));
        let count = usize::try_from(case["count"].as_u64().expect("count")).expect("count");
        assert!(decode_result(&bytes, count).is_err(), "{}", case["name"]);
    }
}
