//! Nothing a Kafka record carries is lost, including its absence: tombstones (records with
//! a null value, which a compacted topic reads as "delete this key") and null header values
//! go through a plugin that passes them, a plugin that emits a copy of the message, and a
//! plugin that rejects them to the dead-letter topic, and arrive as tombstones and null
//! headers, not as empty values. The output the passthrough writes to is a compacted topic.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use switchyard_tests::broker::{Broker, BrokerKind};
use switchyard_tests::kafka::{Record, by_header_n, committed, read_all, send};
use switchyard_tests::procs::{Scratch, router};
use switchyard_tests::{on_both_brokers, plugins, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);
/// Records in all; every third is a tombstone, every other one has a null header.
const N: usize = 600;

fn is_tombstone(i: usize) -> bool {
    i.is_multiple_of(3)
}

fn has_null_header(i: usize) -> bool {
    i.is_multiple_of(2)
}

fn produce(bootstrap: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for i in 0..N {
        let n = i.to_string();
        let key = format!("user-{}", i % 50);
        let payload = format!(r#"{{"amount": {i}}}"#);
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(n.as_bytes()),
        });
        if has_null_header(i) {
            headers = headers.insert(Header::<&[u8]> {
                key: "trace",
                value: None,
            });
        }
        let mut record = BaseRecord::<str, str>::to("in")
            .key(key.as_str())
            .headers(headers);
        if !is_tombstone(i) {
            record = record.payload(payload.as_str());
        }
        send(&producer, record);
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("the records are delivered");
}

/// Checks that record `i` of `topic` arrived once, as it was sent.
fn check(topic: &str, records: &BTreeMap<usize, Vec<&Record>>, i: usize) {
    let copies = records.get(&i).map_or(0, Vec::len);
    assert_eq!(copies, 1, "{topic}: record {i} arrived {copies} times");
    let r = records[&i][0];
    assert_eq!(r.key.as_deref(), Some(format!("user-{}", i % 50).as_str()));
    assert_eq!(
        r.tombstone,
        is_tombstone(i),
        "{topic}: record {i} (payload {:?})",
        r.payload
    );
    if !is_tombstone(i) {
        assert_eq!(
            r.payload,
            format!(r#"{{"amount": {i}}}"#),
            "{topic}: record {i}"
        );
    }
    let nulls: Vec<&str> = r.null_headers.iter().map(String::as_str).collect();
    let expected: &[&str] = if has_null_header(i) { &["trace"] } else { &[] };
    assert_eq!(nulls, expected, "{topic}: record {i}: its null headers");
}

fn tombstones_and_null_headers_survive_every_path(kind: BrokerKind) {
    let mut broker = match kind {
        // The embedded cluster has no compaction: the topic is a plain one there.
        BrokerKind::Embedded => Broker::start(
            kind,
            &["in:2", "compacted:2", "tagged:2", "kept:2", "dlq:2"],
        ),
        BrokerKind::Apache => Broker::start(kind, &["in:2", "tagged:2", "kept:2", "dlq:2"]),
    };
    if kind == BrokerKind::Apache {
        broker
            .apache()
            .create_topic_with("compacted", 2, &[("cleanup.policy", "compact")])
            .expect("a compacted topic");
    }
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("tombstones");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[kafka.main]
bootstrap = "{bootstrap}"
options = {{ "auto.commit.interval.ms" = "200" }}
[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "tombstones" }}
[outputs.compacted]
kafka = {{ cluster = "main", topic = "compacted" }}
[outputs.tagged]
kafka = {{ cluster = "main", topic = "tagged" }}
[outputs.kept]
kafka = {{ cluster = "main", topic = "kept" }}
[outputs.dead]
kafka = {{ cluster = "main", topic = "dlq" }}
[[routes]]
name = "pass"
from = ["in"]
plugins = [{{ path = "{pass}" }}]
to = ["compacted"]
[[routes]]
name = "copy"
from = ["in"]
plugins = [{{ path = "{tag}" }}]
to = ["tagged"]
[[routes]]
name = "filter"
from = ["in"]
plugins = [{{ path = "{filter}", config = {{ field = "amount", op = "exists" }} }}]
to = ["kept"]
dead_letter = "dead"
"#,
            pass = plugins::PASSTHROUGH,
            tag = plugins::VERSION_TAG,
            filter = plugins::JSON_FILTER,
        ),
    );
    let log = scratch.path("router.log");
    let mut proc = router(&cfg, &log);
    produce(&bootstrap);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(DEADLINE, || committed(&bootstrap, "tombstones", "in")
            == N as i64),
        "the input did not commit every record; committed {}:\n{}",
        committed(&bootstrap, "tombstones", "in"),
        log_text()
    );
    assert!(proc.is_running(), "the router died:\n{}", log_text());
    let idle = Duration::from_secs(3);
    let compacted = read_all(&bootstrap, "compacted", idle);
    let tagged = read_all(&bootstrap, "tagged", idle);
    let kept = read_all(&bootstrap, "kept", idle);
    let dead = read_all(&bootstrap, "dlq", idle);
    let (compacted, tagged, kept, dead) = (
        by_header_n(&compacted),
        by_header_n(&tagged),
        by_header_n(&kept),
        by_header_n(&dead),
    );
    let tombstones = (0..N).filter(|i| is_tombstone(*i)).count();
    eprintln!(
        "{N} records, {tombstones} tombstones ({kind:?}): passed {}, copied {}, kept {}, \
         dead-lettered {}; tombstones out: passed {}, copied {}, dead-lettered {}",
        compacted.len(),
        tagged.len(),
        kept.len(),
        dead.len(),
        compacted.values().filter(|r| r[0].tombstone).count(),
        tagged.values().filter(|r| r[0].tombstone).count(),
        dead.values().filter(|r| r[0].tombstone).count(),
    );
    for i in 0..N {
        check("compacted (passthrough)", &compacted, i);
        check("tagged (an emitted copy)", &tagged, i);
        if is_tombstone(i) {
            // A tombstone is not JSON: rejected, and dead-lettered as it came.
            check("dlq", &dead, i);
            assert!(!kept.contains_key(&i), "tombstone {i} passed the filter");
            assert_eq!(dead[&i][0].header("switchyard-error-kind"), Some("reject"));
        } else {
            check("kept", &kept, i);
            assert!(!dead.contains_key(&i), "record {i} dead-lettered");
        }
        assert_eq!(
            tagged[&i][0].header("switchyard-version"),
            Some("v00000001"),
            "record {i}: the copy carries the plugin's header"
        );
    }
    proc.signal("TERM");
    assert!(proc.wait_for_exit(Duration::from_secs(30)).is_some());
}

on_both_brokers!(tombstones_and_null_headers_survive_every_path);
