//! Kafka sources and sinks, the embedded development cluster and the Apache Kafka launcher.
//! They never see wasmtime types.
//!
//! Guarantee: **at-least-once** from a Kafka input. An input offset is stored for commit
//! only after every record it produced, and its dead-letter record, is acknowledged by the
//! broker, contiguously per partition; librdkafka commits stored offsets every second, on
//! partition revoke and at shutdown. Order is kept per input partition. Records whose
//! delivery fails hold their partition's commits back, so they are read again after a
//! restart.

mod apache;
mod embedded;
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
    let transactions = match exactly_once {
        Some(tx) => Some(Arc::new(Mutex::new(Transactions::start(
            name,
            client,
            tx,
            Arc::clone(&stats),
        )?))),
        None => None,
    };
    let source = KafkaSource::new(
        name,
        (&client.bootstrap, &options),
        topics,
        group,
        stats,
        transactions,
    )?;
    if source.transactions().is_some() {
        return run_exactly_once(name, &source, control, runners);
    }
    while control.between_batches(&mut runners) {
        let batch = source.poll_batch(MAX_BATCH, IDLE_WAIT);
        if !batch.is_empty() {
            crate::pipeline::run_batch(name, &mut runners, &batch);
        }
        drop(batch);
        source.store_progress();
    }
    // Records refused while draining are dead-lettered too, so their runs can complete.
    source.close(DRAIN_TIMEOUT, || {
        crate::pipeline::input::settle_returns(&mut runners);
    })
}

/// The loop of an exactly-once input: batches go into the open transaction, which commits
/// every `transaction_ms`, before new runners take over, on revoke and at the end.
fn run_exactly_once(
    name: &str,
    source: &KafkaSource,
    control: &InputControl,
    mut runners: Vec<RouteRunner>,
) -> anyhow::Result<()> {
    let Some(tx) = source.transactions() else {
        return Ok(());
    };
    transaction::lock(tx).adopt(&mut runners);
    let switch = |new: &mut Vec<RouteRunner>| {
        source.finish_transaction()?;
        transaction::lock(tx).adopt(new);
        Ok(())
    };
    let mut run = || -> anyhow::Result<()> {
        while control.between_batches_with(&mut runners, switch)? {
            let wait = transaction::lock(tx).wait(IDLE_WAIT);
            let batch = source.poll_batch(MAX_BATCH, wait);
            if let Some(e) = transaction::lock(tx).take_fatal() {
                return Err(e);
            }
            if !batch.is_empty() {
                transaction::lock(tx).begin(&batch)?;
                crate::pipeline::run_batch(name, &mut runners, &batch);
            }
            drop(batch);
            if transaction::lock(tx).due() {
                source.finish_transaction()?;
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => source.close(DRAIN_TIMEOUT, || {}),
        Err(e) => Err(e),
    }
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
    with_options(config, options)
}

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
