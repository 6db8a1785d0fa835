//! Bad input mixed with good: 10 000 malformed messages (empty, not JSON, invalid UTF-8,
//! cut-off JSON, a few of 900 KB) among 10 000 valid ones (some with binary header values,
//! some without a key) through Kafka → `json_filter` → Kafka. Every bad one reaches the
//! dead-letter topic once, with the parser's reason; every good one is delivered once, its
//! key and headers kept; the stream is committed and the router lives.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use switchyard_tests::broker::{Broker, BrokerKind};
use switchyard_tests::kafka::{by_header_n, committed, read_all, send};
use switchyard_tests::procs::{Scratch, router};
use switchyard_tests::{on_both_brokers, plugins, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);
/// Messages in all; the odd ones are malformed.
const N: usize = 20_000;
/// Every this many malformed messages, one is 900 KB.
const HUGE_EVERY: usize = 2_000;

/// Message `i`: its key (none for every seventh good one), payload and whether it is good.
fn message(i: usize) -> (Option<String>, Vec<u8>, bool) {
    let key = Some(format!("k{}", i % 97));
    if i.is_multiple_of(2) {
        let key = if i.is_multiple_of(7) { None } else { key };
        return (
            key,
            format!(r#"{{"amount": {i}, "n": {i}}}"#).into_bytes(),
            true,
        );
    }
    let bad = i / 2;
    let payload = if bad % HUGE_EVERY == HUGE_EVERY - 1 {
        vec![b'x'; 900 * 1024]
    } else {
        match bad % 4 {
            0 => Vec::new(),
            1 => format!("not json {i}").into_bytes(),
            2 => vec![0xff, 0xfe, b'{', 0xc3, 0x28, b'}'],
            _ => format!(r#"{{"amount": {i}, "n": "#).into_bytes(),
        }
    };
    (key, payload, false)
}

fn produce_mix(bootstrap: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    for i in 0..N {
        let (key, payload, _) = message(i);
        let n = i.to_string();
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(n.as_bytes()),
        });
        if i % 10 == 0 {
            headers = headers.insert(Header {
                key: "bin",
                value: Some(&[0u8, 0xff, 0x80, 0x7f][..]),
            });
        }
        let mut record = BaseRecord::<str, [u8]>::to("in")
            .payload(&payload)
            .headers(headers);
        if let Some(key) = &key {
            record = record.key(key.as_str());
        }
        send(&producer, record);
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("the mix is delivered");
}

fn malformed_and_valid_messages_are_each_accounted_for(kind: BrokerKind) {
    // The embedded cluster keeps at most 5 MB per partition: four dead-letter partitions
    // hold the 900 KB records without trimming any.
    let broker = Broker::start(kind, &["in:4", "out:4", "dlq:4"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("malformed");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[kafka.main]
bootstrap = "{bootstrap}"
options = {{ "auto.commit.interval.ms" = "200", "message.max.bytes" = "2000000" }}
[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "malformed" }}
[outputs.out]
kafka = {{ cluster = "main", topic = "out" }}
[outputs.dead]
kafka = {{ cluster = "main", topic = "dlq" }}
[[routes]]
name = "filter"
from = ["in"]
plugins = [{{ path = "{filter}", config = {{ field = "amount", op = "exists" }} }}]
to = ["out"]
dead_letter = "dead"
"#,
            filter = plugins::JSON_FILTER
        ),
    );
    let log = scratch.path("router.log");
    let mut proc = router(&cfg, &log);
    produce_mix(&bootstrap);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(DEADLINE, || committed(&bootstrap, "malformed", "in")
            == N as i64),
        "the input did not commit the whole mix; committed {}:\n{}",
        committed(&bootstrap, "malformed", "in"),
        log_text()
    );
    assert!(proc.is_running(), "the router died:\n{}", log_text());
    let out = read_all(&bootstrap, "out", Duration::from_secs(3));
    let dead = read_all(&bootstrap, "dlq", Duration::from_secs(3));
    let (out, dead) = (by_header_n(&out), by_header_n(&dead));
    eprintln!(
        "{N} messages, half malformed ({kind:?}): {} delivered, {} dead-lettered",
        out.len(),
        dead.len()
    );
    for i in 0..N {
        let (key, payload, good) = message(i);
        let (here, not_there) = if good { (&out, &dead) } else { (&dead, &out) };
        let copies = here.get(&i).map_or(0, Vec::len);
        assert_eq!(copies, 1, "message {i} (good: {good}): {copies} copies");
        assert!(
            !not_there.contains_key(&i),
            "message {i} (good: {good}) in both"
        );
        let record = here[&i][0];
        assert_eq!(record.key, key, "message {i}: its key");
        assert_eq!(
            record.payload,
            String::from_utf8_lossy(&payload),
            "message {i}: its payload"
        );
        if i % 10 == 0 {
            assert_eq!(
                record.header("bin"),
                Some(String::from_utf8_lossy(&[0u8, 0xff, 0x80, 0x7f]).as_ref()),
                "message {i}: its binary header"
            );
        }
        if !good {
            assert_eq!(record.header("switchyard-error-kind"), Some("reject"));
            let reason = record.header("switchyard-reason").unwrap_or_default();
            assert!(!reason.is_empty(), "message {i}: no reason");
        }
    }
    proc.signal("TERM");
    assert!(proc.wait_for_exit(Duration::from_secs(30)).is_some());
}

on_both_brokers!(malformed_and_valid_messages_are_each_accounted_for);
