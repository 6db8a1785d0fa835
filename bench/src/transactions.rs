//! End-to-end latency on Apache Kafka, at-least-once and exactly-once: records produced
//! at a steady rate, each stamped with the time it was sent, go through the router
//! (`passthrough`) and are read back by a `read_committed` consumer, as a reader of an
//! exactly-once pipeline reads them. Latency is the reading time minus the stamp, in whole
//! milliseconds (Kafka timestamps' resolution).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use switchyard::kafka::{ApacheKafka, producer_config};

use crate::kafka::{PARTITIONS, middle};
use crate::results::{Reply, TRANSACTION_CONFIGS};
use crate::setup::{Proc, Setup};

/// Records per second sent while measuring: well below either mode's throughput, so the
/// figures are the pipeline's latency, not a queue's.
const RATE: u64 = 5_000;
/// Payload size, bytes.
const SIZE: usize = 100;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Every configuration of [`TRANSACTION_CONFIGS`], alternating within each round.
pub fn latency(setup: &Setup, kafka: &ApacheKafka) -> anyhow::Result<Vec<Reply>> {
    let seconds = (8.0 * setup.scale).max(2.0);
    let mut results = Vec::new();
    for round in 0..setup.rounds {
        for config in TRANSACTION_CONFIGS {
            let name = config.replace('@', "-");
            let input = format!("latency-in-{name}-{round}");
            let output = format!("latency-out-{name}-{round}");
            kafka.create_topic(&input, PARTITIONS)?;
            kafka.create_topic(&output, PARTITIONS)?;
            let group = format!("latency-{name}-{round}");
            let router = middle(
                setup,
                kafka.bootstrap(),
                config,
                (&input, &output, &group),
                None,
            )?;
            let _router = Proc::from(router);
            let reply = measure(
                kafka.bootstrap(),
                (&input, &output),
                (config, round),
                Duration::from_secs_f64(seconds),
            )?;
            eprintln!(
                "  {config} end to end at {RATE} msg/s: p50 {:.0} ms, p99 {:.0} ms ({} records)",
                reply.p50_us / 1e3,
                reply.p99_us / 1e3,
                reply.requests
            );
            results.push(reply);
        }
    }
    Ok(results)
}

/// Sends warm-up records until one comes through (the router has joined its group), then
/// `RATE` records per second for `length`, and measures those.
fn measure(
    bootstrap: &str,
    (input, output): (&str, &str),
    (config, round): (&str, usize),
    length: Duration,
) -> anyhow::Result<Reply> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "switchyard-bench-latency")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // As a reader that cares for latency would: the broker answers a fetch with nothing
        // to give after this long, rather than the default 500 ms.
        .set("fetch.wait.max.ms", "50")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition_offset(output, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let total = (RATE as f64 * length.as_secs_f64()) as usize;
    let sender = {
        let producer: BaseProducer = producer_config(bootstrap, &BTreeMap::new()).create()?;
        let (input, measuring, stop) =
            (input.to_owned(), Arc::clone(&measuring), Arc::clone(&stop));
        std::thread::spawn(move || send(&producer, &input, total, (&measuring, &stop)))
    };
    let mut latencies = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(120) + length;
    while latencies.len() < total && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let payload = m.payload().unwrap_or_default();
        if payload.first() == Some(&b'w') {
            measuring.store(true, Ordering::Release);
            continue;
        }
        if let Some(sent) = m.timestamp().to_millis() {
            let ms = (now_ms() - sent).max(0) as u64;
            latencies.push(Duration::from_millis(ms));
        }
    }
    stop.store(true, Ordering::Release);
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the latency sender panicked"))??;
    if latencies.len() < total {
        bail!(
            "{config}: {} of {total} measured records came through",
            latencies.len()
        );
    }
    Ok(Reply::from_latencies(config, round, &mut latencies))
}

/// Sends a warm-up record (payload starting `w`) every 20 ms until `measuring`, then
/// `total` records (starting `m`) at [`RATE`], each stamped with its send time.
fn send(
    producer: &BaseProducer,
    topic: &str,
    total: usize,
    (measuring, stop): (&AtomicBool, &AtomicBool),
) -> anyhow::Result<()> {
    let payload = |first: u8| {
        let mut p = vec![b'x'; SIZE];
        p[0] = first;
        p
    };
    let (warm, measured) = (payload(b'w'), payload(b'm'));
    let mut i = 0_usize;
    let push = |body: &[u8], i: usize| {
        let key = format!("key-{}", i % 1000);
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .key(key.as_bytes())
            .payload(body)
            .timestamp(now_ms());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
    };
    while !measuring.load(Ordering::Acquire) {
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        push(&warm, i);
        i += 1;
        producer.poll(Duration::from_millis(20));
    }
    let start = Instant::now();
    for n in 0..total {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let due = start + Duration::from_secs_f64(n as f64 / RATE as f64);
        while Instant::now() < due {
            producer.poll(Duration::from_micros(200));
        }
        push(&measured, n);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("delivering the latency records")
}
