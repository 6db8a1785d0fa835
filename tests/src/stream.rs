//! Numbered streams and their audit: every message carries (key, sequence) so what was
//! lost, duplicated and reordered per key can be counted at the other end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::kafka::send;

use crate::kafka::{Input, Record};

/// A `passthrough` route from topic `in` to topic `out` in consumer group `group`, with
/// these librdkafka `options` (TOML inline-table entries).
pub fn copy_config(bootstrap: &str, group: &str, options: &str) -> String {
    format!(
        r#"
[kafka.main]
bootstrap = "{bootstrap}"
options = {{ {options} }}
[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "{group}" }}
[outputs.out]
kafka = {{ cluster = "main", topic = "out" }}
[[routes]]
name = "copy"
from = ["in"]
plugins = [{{ path = "{passthrough}" }}]
to = ["out"]
"#,
        passthrough = crate::plugins::PASSTHROUGH
    )
}

/// Keys a stream spreads over.
const KEYS: u64 = 1000;

/// The key of message `i`.
fn key(i: u64) -> String {
    format!("key-{}", i % KEYS)
}

/// The payload of message `i`: its sequence number, padded to about 100 bytes.
fn payload(i: u64) -> String {
    format!("seq {i:08} padding-to-about-a-hundred-bytes-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
}

/// `n` messages over 1000 keys; the payload carries the sequence number.
pub fn stream(n: u64) -> Vec<Input> {
    (0..n).map(|i| (Some(key(i)), payload(i), vec![])).collect()
}

/// The sequence number of a record written from [`stream`].
pub fn seq(r: &Record) -> u64 {
    r.payload[4..12].parse().expect("sequence number")
}

/// What reached the other end of a stream of `n` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audit {
    /// Sequence numbers never seen.
    pub lost: u64,
    /// Records seen more than once (counting every extra copy).
    pub duplicates: u64,
    /// First occurrences that came after a higher sequence number of the same key.
    pub out_of_order: u64,
}

/// Audits `records` (in partition and offset order) against a stream of `n` messages.
pub fn audit(records: &[Record], n: u64) -> Audit {
    audit_with(records, n, seq)
}

/// [`audit`], with `seq` reading a record's sequence number.
pub fn audit_with(records: &[Record], n: u64, seq: impl Fn(&Record) -> u64) -> Audit {
    let mut seen = BTreeSet::new();
    let mut duplicates = 0;
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut out_of_order = 0;
    for r in records {
        let s = seq(r);
        if !seen.insert(s) {
            duplicates += 1;
            continue;
        }
        let key = r.key.clone().unwrap_or_default();
        if let Some(prev) = last.insert(key, s)
            && prev > s
        {
            out_of_order += 1;
        }
    }
    Audit {
        lost: n.saturating_sub(seen.len() as u64),
        duplicates,
        out_of_order,
    }
}

/// A producer thread writing the stream `0..n` to `topic` at `rate` messages per second,
/// riding out broker outages in librdkafka's queue (its message timeout is 10 minutes).
pub struct PacedProducer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl PacedProducer {
    /// Starts producing.
    pub fn start(bootstrap: &str, topic: &str, n: u64, rate: u64) -> Self {
        PacedProducer::start_with(bootstrap, topic, (n, rate), payload)
    }

    /// Starts producing, message `i` with `payload(i)` (its key as in [`stream`]).
    pub fn start_with(
        bootstrap: &str,
        topic: &str,
        (n, rate): (u64, u64),
        payload: fn(u64) -> String,
    ) -> Self {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "600000")
            .set("linger.ms", "5")
            .create()
            .expect("stream producer");
        let topic = topic.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut sent = 0;
            for i in 0..n {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                while Instant::now() < due {
                    producer.poll(Duration::from_millis(1));
                }
                let (k, p) = (key(i), payload(i));
                send(
                    &producer,
                    BaseRecord::<str, str>::to(&topic).key(&k).payload(&p),
                );
                sent = i + 1;
            }
            producer
                .flush(Duration::from_secs(600))
                .expect("the stream producer delivers everything");
            sent
        });
        PacedProducer {
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until every message is delivered.
    pub fn finish(mut self) {
        if let Some(t) = self.thread.take() {
            t.join().expect("stream producer thread");
        }
    }

    /// Stops sending, waits until what was sent is delivered, and says how many messages
    /// that is: the stream `0..` that many.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("stream producer thread"))
    }
}

impl Drop for PacedProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
