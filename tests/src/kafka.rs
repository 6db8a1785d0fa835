//! Plain rdkafka clients for tests: produce keyed records, read a topic back from the
//! beginning.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Key as text.
    pub key: Option<String>,
    /// Payload as text (empty for a tombstone).
    pub payload: String,
    /// Whether it has no payload at all: a tombstone.
    pub tombstone: bool,
    /// Headers as text (a null value as empty).
    pub headers: Vec<(String, String)>,
    /// The names of its headers whose value is null, in order.
    pub null_headers: Vec<String>,
}

impl Record {
    /// The first header of this name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `records` by the number in their header `n` (a test's sequence number); each number's
/// copies in the order read.
pub fn by_header_n(records: &[Record]) -> std::collections::BTreeMap<usize, Vec<&Record>> {
    let mut by = std::collections::BTreeMap::<usize, Vec<&Record>>::new();
    for r in records {
        let n = r
            .header("n")
            .and_then(|n| n.parse().ok())
            .expect("header n");
        by.entry(n).or_default().push(r);
    }
    by
}

/// Counts failed deliveries.
#[derive(Default)]
struct Failures(AtomicUsize);

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A message to produce: key, payload, headers.
pub type Input = (Option<String>, String, Vec<(String, String)>);

/// Produces records to `topic` (partitioned by key as Java clients do) and waits until
/// every one is delivered.
pub fn produce(bootstrap: &str, topic: &str, records: &[Input]) {
    let producer: BaseProducer<Failures> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create_with_context(Failures::default())
        .expect("test producer");
    for (key, payload, headers) in records {
        let mut h = OwnedHeaders::new();
        for (n, v) in headers {
            h = h.insert(Header {
                key: n,
                value: Some(v.as_bytes()),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).payload(payload.as_bytes()).headers(h);
        if let Some(k) = key {
            record = record.key(k.as_bytes());
        }
        send(&producer, record);
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("flush test producer");
    assert_eq!(
        producer.context().0.load(Ordering::Relaxed),
        0,
        "test records not delivered"
    );
}

/// Sends `record`, waiting for room in the producer's queue while it is full.
pub fn send<C, K, P>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) where
    C: ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
        }
    }
}

/// Reads `topic` from the beginning of all its partitions until `expected` records are
/// read or `timeout` passes; returns them grouped by partition, in offset order.
pub fn read_topic(bootstrap: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<Record> {
    read_topic_until(bootstrap, topic, expected, timeout, "read_committed")
}

/// Reads until `expected` records, or until nothing arrives for `idle`... when `expected`
/// is `usize::MAX`; otherwise until `idle` has passed in total.
fn read_topic_until(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    idle: Duration,
    isolation: &str,
) -> Vec<Record> {
    let until_quiet = expected == usize::MAX;
    let timeout = idle;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "switchyard-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("test consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let mut count = 0;
    let mut end = Instant::now() + timeout;
    while count < expected && Instant::now() < end {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if until_quiet {
                end = Instant::now() + idle;
            }
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), text(h.value.unwrap_or_default())))
                        .collect()
                })
                .unwrap_or_default();
            let null_headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .filter(|h| h.value.is_none())
                        .map(|h| h.key.to_owned())
                        .collect()
                })
                .unwrap_or_default();
            by_partition.entry(m.partition()).or_default().push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(text),
                payload: text(m.payload().unwrap_or_default()),
                tombstone: m.payload().is_none(),
                headers,
                null_headers,
            });
            count += 1;
        }
    }
    by_partition.into_values().flatten().collect()
}

/// The number of records in `topic`: the sum of its partitions' high watermarks.
pub fn topic_size(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("watermark client");
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    let mut total = 0;
    for t in metadata.topics() {
        for p in t.partitions() {
            if let Ok((low, high)) =
                consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(5))
            {
                let _ = low;
                total += high;
            }
        }
    }
    total
}

/// The offsets `group` has committed on `topic`, summed over its partitions.
pub fn committed(bootstrap: &str, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("offsets client");
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let Ok(offsets) = consumer.committed_offsets(tpl, Duration::from_secs(5)) else {
        return 0;
    };
    offsets
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        })
        .sum()
}

/// Reads all of `topic` from the beginning, until nothing new arrives for `idle`.
/// Only records of committed transactions are read (`read_committed`, librdkafka's
/// default).
pub fn read_all(bootstrap: &str, topic: &str, idle: Duration) -> Vec<Record> {
    read_topic_until(bootstrap, topic, usize::MAX, idle, "read_committed")
}

/// Reads all of `topic` as [`read_all`] does, records of aborted and open transactions
/// included (`read_uncommitted`).
pub fn read_all_uncommitted(bootstrap: &str, topic: &str, idle: Duration) -> Vec<Record> {
    read_topic_until(bootstrap, topic, usize::MAX, idle, "read_uncommitted")
}
