//! Kafka sources and sinks, the embedded development cluster and the Apache Kafka launcher.
//! They never see wasmtime types.
//!
//! Guarantee: **at-least-once** from a Kafka input. An input offset is stored for commit
//! only after every record it produced, and its dead-letter record, is acknowledged by the
//! broker, contiguously per partition; librdkafka commits stored offsets every second, on
//! partition revoke and at shutdown. Order is kept per input partition. A record that
//! could not be written stops its partition there: it is read again from that record
//! after a growing pause (see `rewind`).

mod apache;
mod embedded;
mod fence;
mod logs;
mod outage;
mod rewind;
mod sink;
mod source;
mod transaction;

pub use apache::{APACHE_KAFKA_VERSION, ApacheKafka, ApacheKafkaOptions, fetch_jars};
pub use embedded::EmbeddedCluster;
pub use sink::KafkaSink;
pub use source::KafkaSource;
pub use transaction::Transactions;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use crate::config::resolved::{KafkaClient, Transactional};
use crate::config::{ConfigFile, Located};
use crate::metrics::{InputStats, OutputStats};
use crate::pipeline::{DRAIN_TIMEOUT, IDLE_WAIT, InputControl, MAX_BATCH, RouteRunner, Sink};

/// The body of a Kafka input's thread: joins `group` (as static member `member`, if
/// given), then takes batches through `runners` until `control` says stop; then waits for
/// in-flight records, commits and leaves the group. With `exactly_once`, its routes'
/// records and its offsets are written in transactions ([`Transactions`]).
pub fn run_input(
    name: &str,
    client: &KafkaClient,
    (group, member, exactly_once): (&str, Option<&str>, Option<&Transactional>),
    topics: &[String],
    stats: Arc<InputStats>,
    control: &InputControl,
    mut runners: Vec<RouteRunner>,
) -> anyhow::Result<()> {
    let mut options = client.options.clone();
    if let Some(member) = member {
        // A `group.instance.id` in the cluster's options wins.
        options
            .entry("group.instance.id".to_owned())
            .or_insert_with(|| member.to_owned());
    }
    let mut transactions = None;
    let outage = Arc::default();
    let mut failures = 0u32;
    loop {
        if let Some(tx) = exactly_once
            && transactions.is_none()
        {
            match Transactions::start(name, client, tx, Arc::clone(&stats)) {
                Ok(started) => transactions = Some(Arc::new(Mutex::new(started))),
                Err(e) if failures == 0 => return Err(e),
                Err(e) => {
                    tracing::warn!("{e:#}; trying again");
                    failures += 1;
                    if !pause(control, &mut runners, failures) {
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        let source = KafkaSource::new(
            name,
            (&client.bootstrap, &options),
            topics,
            group,
            Arc::clone(&stats),
            (transactions.clone(), Arc::clone(&outage)),
        )?;
        let began = Instant::now();
        let ended = if source.transactions().is_some() {
            run_exactly_once(name, &source, control, &mut runners)?
        } else {
            run_at_least_once(name, &source, control, &mut runners)?
        };
        let (why, producer_too) = match ended {
            Ended::Stopped => return Ok(()),
            Ended::ConsumerFailed(why) => (why, false),
            Ended::ProducerStuck(why) => (why, true),
        };
        // librdkafka cannot revive a consumer after a fatal error (a static member whose
        // session expired during an outage is fenced by its own rejoin), nor a
        // transactional producer stuck in a call. Starting over with new ones resumes from
        // the group's committed offsets; a new transactional producer with the same id
        // fences the old one and aborts what it left open.
        let problem = format!("{why}; the input starts over with a new consumer");
        tracing::warn!("{problem}");
        stats.set_problem("consumer", Some(problem));
        source.retire();
        if producer_too {
            transactions = None;
        }
        if began.elapsed() >= STEADY {
            failures = 0;
        }
        failures += 1;
        if !pause(control, &mut runners, failures) {
            return Ok(());
        }
    }
}

/// How long an input must have run before a failure no longer counts as a repeat of the
/// one before it.
const STEADY: Duration = Duration::from_secs(60);

/// The pause before an input starts over a second time; it grows with each further
/// failure in a row, up to ten times this.
const REJOIN_PAUSE: Duration = Duration::from_secs(1);

/// Waits before an input starts over for the `failures`-th time in a row (at once the
/// first time), taking new runners meanwhile; false once the input is told to stop.
fn pause(control: &InputControl, runners: &mut Vec<RouteRunner>, failures: u32) -> bool {
    if failures <= 1 {
        return control.between_batches(runners);
    }
    let until = Instant::now() + REJOIN_PAUSE * failures.min(10);
    while Instant::now() < until {
        if !control.between_batches(runners) {
            return false;
        }
        std::thread::sleep(IDLE_WAIT);
    }
    true
}

/// How an input's loop ended.
enum Ended {
    /// The input was told to stop, and closed.
    Stopped,
    /// The consumer failed for good and must be replaced.
    ConsumerFailed(String),
    /// An exactly-once input's transactional producer is stuck: it and the consumer must
    /// be replaced.
    ProducerStuck(String),
}

/// The loop of an at-least-once input: offsets are stored as their messages are
/// acknowledged, and committed by librdkafka.
fn run_at_least_once(
    name: &str,
    source: &KafkaSource,
    control: &InputControl,
    runners: &mut Vec<RouteRunner>,
) -> anyhow::Result<Ended> {
    while control.between_batches(runners) {
        let mut batch = source.poll_batch(MAX_BATCH, IDLE_WAIT);
        if !batch.is_empty() {
            crate::pipeline::run_batch(name, runners, &mut batch);
        }
        drop(batch);
        source.store_progress();
        if let Some(failure) = source.failed() {
            let why = failure?;
            // Nothing more can be committed through this consumer: what is in flight is
            // read again by the next one.
            return Ok(Ended::ConsumerFailed(why));
        }
    }
    // Records refused while draining are dead-lettered too, so their runs can complete.
    source.close(DRAIN_TIMEOUT, || {
        crate::pipeline::input::settle_returns(runners);
    })?;
    Ok(Ended::Stopped)
}

/// The loop of an exactly-once input: batches go into the open transaction, which commits
/// every `transaction_ms`, before new runners take over, on revoke and at the end.
fn run_exactly_once(
    name: &str,
    source: &KafkaSource,
    control: &InputControl,
    runners: &mut Vec<RouteRunner>,
) -> anyhow::Result<Ended> {
    let Some(tx) = source.transactions() else {
        return Ok(Ended::Stopped);
    };
    transaction::lock(tx).adopt(runners);
    // A producer found stuck while new runners take over: they are adopted still (the
    // next producer adopts them again), and the input starts over after the switch.
    let stuck = std::cell::Cell::new(None);
    let switch = |new: &mut Vec<RouteRunner>| {
        if let Err(e) = source.finish_transaction() {
            stuck.set(Some(transaction::stuck(e)?));
        }
        transaction::lock(tx).adopt(new);
        Ok(())
    };
    let mut run = || -> anyhow::Result<Ended> {
        while control.between_batches_with(runners, switch)? {
            if let Some(why) = stuck.take() {
                return Ok(Ended::ProducerStuck(why));
            }
            let wait = transaction::lock(tx).wait(IDLE_WAIT);
            let mut batch = source.poll_batch(MAX_BATCH, wait);
            if let Some(e) = transaction::lock(tx).take_fatal() {
                return Err(e);
            }
            if let Some(failure) = source.failed() {
                drop(batch);
                // The group no longer counts this consumer as a member: its offsets
                // cannot commit, so the open transaction is aborted, and the next consumer
                // reads from the offsets the last committed one wrote.
                transaction::lock(tx).abandon()?;
                let why = failure?;
                return Ok(Ended::ConsumerFailed(format!(
                    "the Kafka consumer failed for good ({why})"
                )));
            }
            if !batch.is_empty() {
                transaction::lock(tx).begin(&batch)?;
                crate::pipeline::run_batch(name, runners, &mut batch);
            }
            drop(batch);
            if transaction::lock(tx).due() {
                source.finish_transaction()?;
            }
        }
        source.close(DRAIN_TIMEOUT, || {})?;
        Ok(Ended::Stopped)
    };
    run().or_else(|e| transaction::stuck(e).map(Ended::ProducerStuck))
}

/// Opens Kafka output `name`: a producer writing to `topic`.
pub fn open_sink(
    name: &str,
    client: &KafkaClient,
    topic: &str,
    stats: Arc<OutputStats>,
) -> anyhow::Result<Arc<dyn Sink>> {
    Ok(Arc::new(KafkaSink::new(
        name,
        &client.bootstrap,
        &client.options,
        topic,
        stats,
    )?))
}

/// The settings of a Kafka input's consumer in `group`; the cluster's pass-through
/// `options` come last and win.
pub fn consumer_config(
    bootstrap: &str,
    group: &str,
    options: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // Offsets are stored only once their messages are acknowledged.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Consumer lag for `/metrics` comes from librdkafka's statistics.
        .set("statistics.interval.ms", "1000");
    if options.get("group.protocol").map(String::as_str) != Some("consumer") {
        // Kafka's 45 s default keeps a killed router's partitions unread for 45 s before
        // its successor gets them; a router has no garbage-collection pauses to ride out.
        // (With `group.protocol = "consumer"` the broker sets the session.)
        config.set("session.timeout.ms", SESSION_TIMEOUT_MS);
    }
    with_options(config, options)
}

/// The consumer's default `session.timeout.ms` (classic protocol): how long a group waits
/// for a member that stopped answering before its partitions go to the others.
const SESSION_TIMEOUT_MS: &str = "10000";

/// The settings of a Kafka output's producer; the cluster's pass-through `options` come
/// last and win.
pub fn producer_config(bootstrap: &str, options: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        // Kafka's Java clients hash keys with murmur2: the same key, the same partition.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5");
    with_options(config, options)
}

/// What librdkafka itself refuses in each `[kafka.NAME]`'s `options`, with the place of the
/// offending key: the settings of a consumer and of a producer are built as `run` builds
/// them, and a client of each is created (and dropped at once, never connected), so an
/// unknown key, a bad value and a refused combination are all found before a run.
pub fn check_clusters(config: &ConfigFile) -> Vec<Located> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::error::KafkaError;
    use rdkafka::producer::BaseProducer;

    let mut problems = Vec::new();
    for (name, cluster) in &config.kafka {
        let spanned = &cluster.get_ref().options;
        let options: BTreeMap<String, String> = spanned
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect();
        // Never contacted: the client is dropped as soon as it exists.
        let bootstrap = "127.0.0.1:9";
        let consumer = consumer_config(bootstrap, "switchyard-validate", &options);
        let producer = producer_config(bootstrap, &options);
        let refused = |role: &str, e: KafkaError| match &e {
            KafkaError::ClientConfig(_, description, key, _) => match spanned.get(key) {
                Some(value) => Located::on(
                    value,
                    format!("kafka cluster `{name}`: option `{key}`: {description}"),
                ),
                None => Located::on(
                    cluster,
                    format!("kafka cluster `{name}`: the {role}'s `{key}`: {description}"),
                ),
            },
            other => Located::on(
                cluster,
                format!(
                    "kafka cluster `{name}`: librdkafka refuses these options for a {role}: {other}"
                ),
            ),
        };
        if let Err(e) = consumer.create::<BaseConsumer>() {
            problems.push(refused("consumer", e));
        }
        if let Err(e) = producer.create::<BaseProducer>() {
            problems.push(refused("producer", e));
        }
    }
    problems
}

fn with_options(mut config: ClientConfig, options: &BTreeMap<String, String>) -> ClientConfig {
    for (key, value) in options {
        config.set(key, value);
    }
    config
}
