//! Kafka runs: on the embedded cluster (`switchyard kafka-dev`, a process of its own), and
//! on Apache Kafka (the reference broker, started by the same launcher as `kafka-dev
//! --apache`). Each configuration reads the same preloaded topic with a fresh consumer group
//! and writes a topic of its own: a plain rdkafka consume → produce loop, the router with
//! `passthrough` and with `json_filter`, and on Apache Kafka a Python confluent-kafka loop
//! doing the JSON filter, as a user would write it instead of Switchyard.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};

use switchyard::kafka::{ApacheKafka, ApacheKafkaOptions, consumer_config, producer_config};

use crate::results::{APACHE_CONFIGS, KAFKA_CONFIGS, Reply, Throughput};
use crate::setup::{Proc, Setup, cpu_seconds, json_payload, run_router};

/// The sizes measured on Apache Kafka.
const APACHE_SIZES: [usize; 2] = [100, 1024];
/// Partitions of every topic.
pub const PARTITIONS: u32 = 16;
/// Checks that `python-json` can run: `python3` with the confluent-kafka package.
pub fn check_python() -> anyhow::Result<()> {
    let found = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        bail!(
            "the Apache Kafka group's `python-json` baseline needs python3 with confluent-kafka \
             (`pip install confluent-kafka`), or leave the group out (`--only zmq`, ...)"
        );
    }
    Ok(())
}

/// The JSON filter of `router-json` and `python-json`: every payload of the harness passes
/// it (amounts are 100–999), so both parse and test every record and forward all of them.
const FILTER: (&str, &str) = ("amount", "100");

/// Messages per run by size, before scaling.
fn messages(size: usize) -> usize {
    match size {
        0..=128 => 500_000,
        129..=2048 => 120_000,
        _ => 12_000,
    }
}

/// The `kafka-loop` role: consume `from`, produce every record to `to` with its key,
/// headers and timestamp (as the router does), store its offset; runs until killed. The
/// clients are configured exactly as the router's input and output.
pub fn native_loop(bootstrap: &str, from: &str, to: &str, group: &str) -> anyhow::Result<()> {
    let none = BTreeMap::new();
    let consumer: BaseConsumer = consumer_config(bootstrap, group, &none).create()?;
    let producer: ThreadedProducer<DefaultProducerContext> =
        producer_config(bootstrap, &none).create()?;
    consumer.subscribe(&[from])?;
    loop {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = polled?;
        let mut record = BaseRecord::<[u8], [u8]>::to(to);
        if let Some(key) = m.key() {
            record = record.key(key);
        }
        if let Some(payload) = m.payload() {
            record = record.payload(payload);
        }
        if let Some(headers) = m.headers() {
            record = record.headers(headers.detach());
        }
        if let Some(ts) = m.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        consumer.store_offset_from_message(&m)?;
    }
}

/// Starts `switchyard kafka-dev` with `topics`; returns it and its bootstrap address.
fn kafka_dev(setup: &Setup, topics: &[String]) -> anyhow::Result<(Proc, String)> {
    let mut cmd = Command::new(&setup.switchyard);
    cmd.arg("kafka-dev");
    for t in topics {
        cmd.args(["--topic", &format!("{t}:{PARTITIONS}")]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting switchyard kafka-dev")?;
    let stdout = child.stdout.take().context("kafka-dev stdout")?;
    let child = Proc::from(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let bootstrap = line.trim().to_owned();
    if bootstrap.is_empty() {
        bail!("kafka-dev printed no address");
    }
    Ok((child, bootstrap))
}

/// Produces `count` keyed JSON records of `size` bytes to `topic`.
fn preload(bootstrap: &str, topic: &str, size: usize, count: usize) -> anyhow::Result<()> {
    let producer: BaseProducer = producer_config(bootstrap, &BTreeMap::new()).create()?;
    let payloads: Vec<Vec<u8>> = (0..256).map(|seed| json_payload(size, seed)).collect();
    for i in 0..count {
        let key = format!("key-{}", i % 1000);
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .key(key.as_bytes())
            .payload(&payloads[i % payloads.len()]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Watermarks of every partition of `topic`.
fn watermarks(client: &BaseConsumer, topic: &str) -> Vec<(i64, i64)> {
    (0..PARTITIONS as i32)
        .filter_map(|p| {
            client
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .ok()
        })
        .collect()
}

/// Records a reader from the beginning of `topic` finds (the embedded cluster keeps a
/// bounded log).
fn readable(client: &BaseConsumer, topic: &str) -> i64 {
    watermarks(client, topic)
        .iter()
        .map(|(low, high)| high - low)
        .sum()
}

/// The offsets the group of `client` has committed on `topic`, summed.
pub fn committed(client: &BaseConsumer, topic: &str) -> i64 {
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition(topic, p);
    }
    client
        .committed_offsets(tpl, Duration::from_secs(5))
        .map_or(0, |offsets| {
            offsets
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(n) => Some(n),
                    _ => None,
                })
                .sum()
        })
}

/// Records ever written to `topic`.
pub fn written(client: &BaseConsumer, topic: &str) -> i64 {
    watermarks(client, topic).iter().map(|(_, high)| high).sum()
}

/// Every embedded-cluster configuration at every size, alternating within each round.
pub fn throughput(setup: &Setup) -> anyhow::Result<Vec<Throughput>> {
    let topics = topics(&setup.sizes, setup.rounds, &KAFKA_CONFIGS);
    let (_cluster, bootstrap) = kafka_dev(setup, &topics)?;
    runs(setup, &bootstrap, "kafka", &KAFKA_CONFIGS, &setup.sizes)
}

/// Every Apache Kafka configuration at 100 B and 1 KiB (those of the run's sizes),
/// alternating within each round; then `then` on the same broker (the end-to-end latency
/// at-least-once and exactly-once).
pub fn throughput_apache(
    setup: &Setup,
    then: impl FnOnce(&ApacheKafka) -> anyhow::Result<Vec<Reply>>,
) -> anyhow::Result<(Vec<Throughput>, Vec<Reply>)> {
    let sizes: Vec<usize> = setup
        .sizes
        .iter()
        .copied()
        .filter(|s| APACHE_SIZES.contains(s))
        .collect();
    let options = ApacheKafkaOptions {
        heap_mb: 1024,
        ..ApacheKafkaOptions::default()
    };
    let kafka = ApacheKafka::start(&options).context("starting Apache Kafka")?;
    for topic in topics(&sizes, setup.rounds, &APACHE_CONFIGS) {
        kafka.create_topic(&topic, PARTITIONS)?;
    }
    eprintln!("  Apache Kafka at {}", kafka.bootstrap());
    let throughput = runs(setup, kafka.bootstrap(), "apache", &APACHE_CONFIGS, &sizes)?;
    Ok((throughput, then(&kafka)?))
}

/// The input topic of each size and an output topic per configuration, size and round.
fn topics(sizes: &[usize], rounds: usize, configs: &[&str]) -> Vec<String> {
    let mut topics = Vec::new();
    for &size in sizes {
        topics.push(format!("in-{size}"));
        for round in 0..rounds {
            for config in configs {
                topics.push(output_topic(config, size, round));
            }
        }
    }
    topics
}

fn output_topic(config: &str, size: usize, round: usize) -> String {
    format!("out-{}-{size}-{round}", config.replace('@', "-"))
}

fn runs(
    setup: &Setup,
    bootstrap: &str,
    transport: &'static str,
    configs: &[&str],
    sizes: &[usize],
) -> anyhow::Result<Vec<Throughput>> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let mut results = Vec::new();
    for &size in sizes {
        let input = format!("in-{size}");
        preload(bootstrap, &input, size, setup.count(messages(size)))?;
        // What a reader from the beginning finds: the embedded cluster keeps a bounded log.
        let available = readable(&client, &input);
        for round in 0..setup.rounds {
            for config in configs {
                let run = Run {
                    transport,
                    config,
                    size,
                    round,
                };
                let r = run_once(setup, &client, bootstrap, &run, available)?;
                eprintln!("  {}", r.summary());
                results.push(r);
            }
        }
    }
    Ok(results)
}

/// One measurement's coordinates.
struct Run<'a> {
    transport: &'static str,
    config: &'a str,
    size: usize,
    round: usize,
}

/// The process in the middle of `config`: the plain loop, the Python loop or the router.
pub fn middle(
    setup: &Setup,
    bootstrap: &str,
    config: &str,
    (input, output, group): (&str, &str, &str),
    admin: Option<u16>,
) -> anyhow::Result<Child> {
    let kind = config.split('@').next().unwrap_or(config);
    if kind == "kafka-native" {
        return Command::new(&setup.harness)
            .args(["kafka-loop", bootstrap, input, output, group])
            .stdout(Stdio::null())
            .spawn()
            .context("starting the rdkafka loop");
    }
    if kind == "python-json" {
        let script = setup.root.join("bench/python/json_filter_loop.py");
        return Command::new("python3")
            .arg(script)
            .args([bootstrap, input, output, group, FILTER.0, FILTER.1])
            .stdout(Stdio::null())
            .spawn()
            .context("starting the Python loop (python3 with confluent-kafka)");
    }
    let delivery = if kind == "router-eo" {
        r#", delivery = "exactly-once""#
    } else {
        ""
    };
    let plugin = if kind == "router-json" {
        format!(
            r#"{{ path = "{}", config = {{ field = "{}", op = "gte", value = "{}" }} }}"#,
            setup.plugin("json_filter").display(),
            FILTER.0,
            FILTER.1
        )
    } else {
        format!(
            r#"{{ path = "{}" }}"#,
            setup.plugin("passthrough").display()
        )
    };
    let file = setup.scratch.join(format!("{output}.toml"));
    let config = format!(
        r#"[admin]
listen = "127.0.0.1:{}"
[reload]
watch = "off"
[kafka.main]
bootstrap = "{bootstrap}"
[inputs.in]
kafka = {{ cluster = "main", topics = ["{input}"], group = "{group}"{delivery} }}
[outputs.out]
kafka = {{ cluster = "main", topic = "{output}" }}
[[routes]]
name = "bench"
from = ["in"]
plugins = [{plugin}]
to = ["out"]
"#,
        admin.unwrap_or_default(),
    );
    run_router(setup, &file, &config, &[])
}

fn run_once(
    setup: &Setup,
    client: &BaseConsumer,
    bootstrap: &str,
    run: &Run<'_>,
    available: i64,
) -> anyhow::Result<Throughput> {
    let Run {
        transport,
        config,
        size,
        round,
    } = *run;
    let input = format!("in-{size}");
    let output = output_topic(config, size, round);
    let group = format!("bench-{}", output.trim_start_matches("out-"));
    let admin = config.starts_with("router-").then(crate::setup::free_port);
    let child = middle(setup, bootstrap, config, (&input, &output, &group), admin)?;
    let pid = child.id();
    let _child = Proc::from(child);
    // Exactly-once is done when its transactions have committed the input's offsets;
    // watermarks count transaction markers as well as records. The offsets are read
    // `read_uncommitted`: a `read_committed` client asks for stable offsets only, which the
    // broker refuses while a transaction holds offsets of the group, as one nearly always
    // does here (one every 100 ms), so the first offsets would be seen near the end of a
    // run. Offsets of a transaction are not shown before it commits either way.
    let offsets = config
        .starts_with("router-eo")
        .then(|| {
            consumer_config(bootstrap, &group, &BTreeMap::new())
                .set("isolation.level", "read_uncommitted")
                .create::<BaseConsumer>()
        })
        .transpose()?;
    let progress = || match &offsets {
        Some(offsets) => committed(offsets, &input),
        None => written(client, &output),
    };
    let wait = |done: &dyn Fn(i64) -> bool, limit: Duration| -> anyhow::Result<i64> {
        let deadline = Instant::now() + limit;
        loop {
            let n = progress();
            if done(n) {
                return Ok(n);
            }
            if Instant::now() > deadline {
                bail!("{config}: {n} of {available} records after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let first = wait(&|n| n > 0, Duration::from_secs(120))?;
    let started = Instant::now();
    let cpu_before = cpu_seconds(pid);
    wait(&|n| n >= available, Duration::from_secs(600))?;
    let elapsed = started.elapsed();
    let cpu_after = cpu_seconds(pid);
    let counted = (available - first).max(1) as f64;
    Ok(Throughput {
        transport,
        config: config.to_owned(),
        size,
        round,
        messages: available as usize,
        msgs_per_s: counted / elapsed.as_secs_f64(),
        cpu_ns_per_msg: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some((b - a) * 1e9 / counted),
            _ => None,
        },
        mean_batch: admin.and_then(crate::setup::mean_batch),
        client_cpu_ns_per_msg: None,
        broker_cpu_ns_per_msg: None,
    })
}
