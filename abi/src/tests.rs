use super::*;

fn sample_batch() -> Vec<u8> {
    let mut w = BatchWriter::new();
    w.start("orders");
    w.push(
        &Origin::Kafka {
            topic: "orders",
            partition: 3,
            offset: 42,
        },
        Some(b"k1"),
        Some(1_700_000_000_000),
        [
            ("region", Some(&b"eu"[..])),
            ("trace", Some(&b"\x00\xff"[..])),
            ("region", Some(&b"us"[..])),
        ],
        Some(b"{\"amount\": 5}"),
    );
    w.push(
        &Origin::Zmq {
            endpoint: "tcp://127.0.0.1:5556",
            socket_type: "sub",
            topic: Some(b"EURUSD"),
            peer: None,
        },
        None,
        None,
        [],
        Some(b""),
    );
    w.as_bytes().to_vec()
}

#[test]
fn batch_round_trips() {
    let bytes = sample_batch();
    let reader = BatchReader::new(&bytes).expect("header");
    assert_eq!(reader.input(), "orders");
    assert_eq!(reader.len(), 2);
    let msgs: Vec<_> = reader.collect::<Result<_, _>>().expect("messages");
    let m = &msgs[0];
    assert_eq!(
        m.origin(),
        Origin::Kafka {
            topic: "orders",
            partition: 3,
            offset: 42
        }
    );
    assert_eq!(m.key, Some(&b"k1"[..]));
    assert_eq!(m.timestamp, Some(1_700_000_000_000));
    assert_eq!(m.payload, Some(&b"{\"amount\": 5}"[..]));
    let headers: Vec<_> = m.headers.iter().collect();
    assert_eq!(
        headers,
        vec![
            ("region", Some(&b"eu"[..])),
            ("trace", Some(&b"\x00\xff"[..])),
            ("region", Some(&b"us"[..]))
        ]
    );
    assert_eq!(m.headers.get("region"), Some(&b"eu"[..]));
    assert_eq!(m.headers.get_all("region").count(), 2);
    let z = &msgs[1];
    assert_eq!(
        z.origin(),
        Origin::Zmq {
            endpoint: "tcp://127.0.0.1:5556",
            socket_type: "sub",
            topic: Some(b"EURUSD"),
            peer: None,
        }
    );
    assert_eq!(z.key, None);
    assert_eq!(z.timestamp, None);
    assert!(z.headers.is_empty());
    assert_eq!(z.payload, Some(&b""[..]));
}

/// A result of every outcome but `reply`: pass, drop, reject, an empty emit, and an emit of
/// two outputs with every field used between them.
pub(super) fn every_outcome() -> Vec<Outcome> {
    vec![
        Outcome::Pass,
        Outcome::Drop,
        Outcome::Reject("not JSON".into()),
        Outcome::Emit(vec![]),
        Outcome::Emit(vec![
            Output::new("a")
                .to("alerts")
                .with_key("k")
                .with_header("h", "v"),
            Output::new(vec![0u8, 1])
                .with_partition(2)
                .with_timestamp(7),
        ]),
    ]
}

/// A reply with a header that also writes a record.
pub(super) fn sample_reply() -> Outcome {
    Outcome::Reply(
        Reply::new("{\"total\": 3}")
            .with_header("content-type", "application/json")
            .and_emit(Output::new("order").to("audit")),
    )
}

/// `outcomes` written as a result.
pub(super) fn encode(outcomes: &[Outcome]) -> Vec<u8> {
    let mut w = ResultWriter::with_capacity(outcomes.len());
    for o in outcomes {
        w.outcome(o);
    }
    w.finish()
}

#[test]
fn result_round_trips() {
    let outcomes = every_outcome();
    let bytes = encode(&outcomes);
    assert_eq!(decode_result(&bytes, outcomes.len()), Ok(outcomes));
}

#[test]
fn a_reply_round_trips_in_a_version_2_result_and_only_there() {
    let outcomes = vec![Outcome::Pass, sample_reply(), Outcome::reply("")];
    let bytes = encode(&outcomes);
    assert_eq!(bytes[0..4], VERSION_REPLY.to_le_bytes());
    assert_eq!(decode_result(&bytes, outcomes.len()), Ok(outcomes));

    // Without a reply, a result stays version 1, which contract 0.1.0 hosts read.
    let mut w = ResultWriter::with_capacity(1);
    w.outcome(&Outcome::Drop);
    assert_eq!(w.finish()[0..4], VERSION.to_le_bytes());

    // A reply tag in a version 1 result is refused.
    let mut w = ResultWriter::with_capacity(1);
    w.outcome(&Outcome::reply("x"));
    let mut bytes = w.finish();
    bytes[0..4].copy_from_slice(&VERSION.to_le_bytes());
    let err = decode_result(&bytes, 1).expect_err("tag 4 in version 1");
    assert!(err.to_string().contains("unknown outcome tag 4"), "{err}");
}

#[test]
fn wrong_outcome_count_is_reported() {
    let mut w = ResultWriter::with_capacity(1);
    w.pass();
    let err = decode_result(&w.finish(), 2).expect_err("count mismatch");
    assert_eq!(err.to_string(), "1 outcomes for a batch of 2 at byte 4");
}

#[test]
fn truncation_and_corruption_never_panic() {
    let batch = sample_batch();
    let mut w = ResultWriter::with_capacity(2);
    w.reject("why");
    w.emit(&[Output::new("x").to("d").with_header("a", "b")]);
    let result = w.finish();
    for data in [&batch, &result] {
        for cut in 0..data.len() {
            let part = &data[..cut];
            if let Ok(r) = BatchReader::new(part) {
                r.for_each(|m| {
                    if let Ok(m) = m {
                        let _ = m.origin();
                        m.headers.iter().for_each(drop);
                    }
                });
            }
            let _ = decode_result(part, 2);
        }
        for i in 0..data.len() {
            for v in [0x00, 0xff, 0x7f, 0x03] {
                let mut bad = data.clone();
                bad[i] = v;
                if let Ok(r) = BatchReader::new(&bad) {
                    r.for_each(|m| {
                        if let Ok(m) = m {
                            let _ = m.origin();
                            m.headers.iter().for_each(drop);
                        }
                    });
                }
                let _ = decode_result(&bad, 2);
            }
        }
    }
}

#[test]
fn wrong_version_is_named() {
    let mut bytes = sample_batch();
    bytes[0] = 9;
    let err = BatchReader::new(&bytes).err().expect("version error");
    assert!(err.to_string().contains("version 9"), "{err}");
}

#[test]
fn all_pass_is_recognised_only_when_every_outcome_is_pass() {
    let result = |outcomes: &[Outcome]| {
        let mut w = ResultWriter::with_capacity(outcomes.len());
        for o in outcomes {
            w.outcome(o);
        }
        w.finish()
    };
    let passes = result(&[Outcome::Pass, Outcome::Pass, Outcome::Pass]);
    assert!(is_all_pass(&passes, 3));
    assert!(is_all_pass(&result(&[]), 0));
    assert!(!is_all_pass(&passes, 2), "wrong count");
    assert!(!is_all_pass(&passes, 4), "wrong count");
    assert!(!is_all_pass(&passes[..passes.len() - 1], 3), "truncated");
    assert!(!is_all_pass(&result(&[Outcome::Pass, Outcome::Drop]), 2));
    assert!(!is_all_pass(&result(&[Outcome::Emit(Vec::new())]), 1));
    let mut other_version = passes.clone();
    other_version[0] = 9;
    assert!(!is_all_pass(&other_version, 3));
    assert!(!is_all_pass(&[], 0));
}

/// A tombstone with a null header, pushed into a writer of `version`.
fn tombstone_batch(version: u32) -> Vec<u8> {
    let mut w = BatchWriter::of_version(version);
    w.start("users");
    w.push(
        &Origin::None,
        Some(b"user-7"),
        None,
        [("trace", None), ("empty", Some(&b""[..]))],
        None,
    );
    w.as_bytes().to_vec()
}

#[test]
fn null_payloads_and_header_values_are_kept_in_a_version_2_batch() {
    let bytes = tombstone_batch(BATCH_VERSION_NULLS);
    assert_eq!(bytes[0..4], BATCH_VERSION_NULLS.to_le_bytes());
    let m = BatchReader::new(&bytes)
        .expect("header")
        .next()
        .expect("one message")
        .expect("message");
    assert_eq!(m.payload, None);
    assert_eq!(m.key, Some(&b"user-7"[..]));
    let headers: Vec<_> = m.headers.iter().collect();
    assert_eq!(headers, vec![("trace", None), ("empty", Some(&b""[..]))]);
    assert_eq!(
        m.headers.get("trace"),
        Some(&b""[..]),
        "null reads as empty"
    );
}

#[test]
fn a_version_1_batch_writes_nulls_as_empty_values() {
    let bytes = tombstone_batch(VERSION);
    assert_eq!(bytes[0..4], VERSION.to_le_bytes());
    let m = BatchReader::new(&bytes)
        .expect("header")
        .next()
        .expect("one message")
        .expect("message");
    assert_eq!(m.payload, Some(&b""[..]));
    let headers: Vec<_> = m.headers.iter().collect();
    assert_eq!(
        headers,
        vec![("trace", Some(&b""[..])), ("empty", Some(&b""[..]))]
    );
}

#[test]
fn a_result_writing_nulls_is_version_3_and_keeps_them() {
    let outcomes = vec![
        Outcome::Emit(vec![
            Output::tombstone("user-7").with_null_header("trace"),
            Output::new("").with_header("empty", ""),
        ]),
        Outcome::Reply(Reply::new("ok").and_emit(Output::tombstone("user-8"))),
    ];
    let mut w = ResultWriter::with_capacity(outcomes.len());
    for o in &outcomes {
        w.outcome(o);
    }
    let bytes = w.finish();
    assert_eq!(bytes[0..4], RESULT_VERSION_NULLS.to_le_bytes());
    assert_eq!(decode_result(&bytes, outcomes.len()), Ok(outcomes));

    // Before version 3, an absent payload is an empty one, and an absent header value is
    // malformed.
    let mut w = ResultWriter::with_capacity(1);
    w.emit(&[Output::tombstone("k")]);
    let mut bytes = w.finish();
    bytes[0..4].copy_from_slice(&VERSION.to_le_bytes());
    let decoded = decode_result(&bytes, 1).expect("version 1");
    assert_eq!(
        decoded,
        vec![Outcome::Emit(vec![Output::new("").with_key("k")])]
    );
    let mut w = ResultWriter::with_capacity(1);
    w.emit(&[Output::new("p").with_null_header("h")]);
    let mut bytes = w.finish();
    bytes[0..4].copy_from_slice(&VERSION_REPLY.to_le_bytes());
    let err = decode_result(&bytes, 1).expect_err("null header before version 3");
    assert!(err.to_string().contains("header value is absent"), "{err}");
}

#[test]
fn an_unknown_origin_kind_reads_as_no_origin() {
    let mut bytes = sample_batch();
    // The first message's origin kind: after version, count, input and size.
    let at = 4 + 4 + 4 + "orders".len() + 4;
    bytes[at] = 9;
    let msgs: Vec<_> = BatchReader::new(&bytes)
        .expect("header")
        .collect::<Result<_, _>>()
        .expect("messages");
    assert_eq!(msgs[0].origin(), Origin::None);
    assert_eq!(msgs[0].key, Some(&b"k1"[..]), "the rest is read as before");
    assert_eq!(msgs.len(), 2);
}

#[test]
fn a_header_block_with_bytes_after_its_entries_is_refused() {
    let mut block = Vec::new();
    encode_headers(&mut block, [("h", Some(&b"v"[..]))]);
    assert_eq!(
        decode_headers(&block),
        Ok(vec![("h".to_owned(), Some(b"v".to_vec()))])
    );
    // One more byte inside the block's declared size.
    let size = u32::from_le_bytes(block[4..8].try_into().expect("size"));
    block[4..8].copy_from_slice(&(size + 1).to_le_bytes());
    block.push(0);
    let err = decode_headers(&block).expect_err("a byte after the entries");
    assert!(err.to_string().contains("trailing"), "{err}");
}
