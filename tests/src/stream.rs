//! Numbered streams and their audit: every message carries (key, sequence) so what was
//! lost, duplicated and reordered per key can be counted at the other end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use crate::kafka::{Input, Record, send};

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

/// The stream producer's own troubles, told on stderr (librdkafka's warnings and errors,
/// failed deliveries), and the messages sent but not yet delivered: a message the producer
/// never delivered is one the router never saw, so a test must not blame the router for it.
struct Told {
    /// Sequence numbers sent and not yet delivered.
    pending: Arc<std::sync::Mutex<BTreeSet<u64>>>,
    failed: std::sync::atomic::AtomicU64,
}

impl ClientContext for Told {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= RDKafkaLogLevel::Warning as i32 {
            eprintln!("stream producer: {level:?} {fac}: {log_message}");
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        eprintln!("stream producer: error {error}: {reason}");
    }
}

impl ProducerContext for Told {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, i: usize) {
        match result {
            Ok(_) => {
                self.pending.lock().expect("pending").remove(&(i as u64));
            }
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) < 10 {
                    eprintln!("stream producer: the delivery of {i} failed: {e}");
                }
            }
        }
    }
}

/// An idempotent producer of a stream, telling its troubles through `pending`.
fn stream_producer(
    bootstrap: &str,
    pending: &Arc<std::sync::Mutex<BTreeSet<u64>>>,
) -> BaseProducer<Told> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", "600000")
        .set("linger.ms", "5")
        .create_with_context(Told {
            pending: Arc::clone(pending),
            failed: Default::default(),
        })
        .expect("stream producer")
}

/// Sends message `i` of a stream, waiting for room in the producer's queue while it is full.
fn send_seq(producer: &BaseProducer<Told>, topic: &str, i: u64, payload: fn(u64) -> String) {
    let (k, p) = (key(i), payload(i));
    producer
        .context()
        .pending
        .lock()
        .expect("pending")
        .insert(i);
    send(
        producer,
        BaseRecord::with_opaque_to(topic, i as usize)
            .key(&k)
            .payload(&p),
    );
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
        let bootstrap = bootstrap.to_owned();
        let topic = topic.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let pending = Arc::default();
            let producer = stream_producer(&bootstrap, &pending);
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
                send_seq(&producer, &topic, i, payload);
                sent = i + 1;
            }
            deliver_all(producer, (&bootstrap, &topic), payload);
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

/// Waits until everything sent through `producer` is delivered, telling every 30 s how
/// much is left; panics after 10 minutes.
///
/// A librdkafka producer has been seen, once in many runs, to deliver nothing more after a
/// frozen broker came back while other producers to the same broker went on. The stream's
/// source is not what a test examines, so a producer that delivers nothing for two minutes
/// is replaced: a new one sends what is still undelivered, in order. (Both may then write a
/// message: a duplicate in the input, never a loss or a reordering of first copies.)
fn deliver_all(
    producer: BaseProducer<Told>,
    (bootstrap, topic): (&str, &str),
    payload: fn(u64) -> String,
) {
    const LIMIT: Duration = Duration::from_secs(600);
    const STALL: Duration = Duration::from_secs(120);
    let pending = Arc::clone(&producer.context().pending);
    let left = || pending.lock().expect("pending").len();
    let start = Instant::now();
    let mut producers = vec![producer];
    let (mut last_left, mut progress) = (left(), Instant::now());
    while left() > 0 {
        assert!(
            start.elapsed() < LIMIT,
            "the stream producer still holds {} messages after {LIMIT:?}",
            left()
        );
        for p in &producers {
            if let Some(fatal) = p.client().fatal_error() {
                panic!("the stream producer failed: {fatal:?}");
            }
            p.poll(Duration::from_millis(100));
        }
        if left() < last_left {
            (last_left, progress) = (left(), Instant::now());
        } else if progress.elapsed() >= STALL {
            let undelivered: Vec<u64> = pending.lock().expect("pending").iter().copied().collect();
            eprintln!(
                "stream producer: nothing delivered for {STALL:?}; a new producer sends the {} \
                 undelivered messages (from {:?})",
                undelivered.len(),
                undelivered.first()
            );
            let fresh = stream_producer(bootstrap, &pending);
            for i in undelivered {
                send_seq(&fresh, topic, i, payload);
            }
            producers.push(fresh);
            progress = Instant::now();
        }
    }
    let failed: u64 = producers
        .iter()
        .map(|p| p.context().failed.load(Ordering::Relaxed))
        .sum();
    if failed > 0 {
        eprintln!("stream producer: {failed} deliveries failed, each sent again until delivered");
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
