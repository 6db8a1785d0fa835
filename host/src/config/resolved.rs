//! Inputs and outputs as the transports run them: one `enum` variant per kind, with the
//! cluster each Kafka client talks to looked up and its bootstrap address known (an
//! embedded cluster's included). Produced from a validated file, where every input and
//! output has exactly one kind and names a cluster that exists.

use std::collections::BTreeMap;

use super::{InputConfig, KafkaInput, OutputConfig, ZmqEndpoint};

/// The cluster a Kafka client talks to.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaClient {
    /// The `[kafka.NAME]` it comes from.
    pub cluster: String,
    /// Where to connect: the file's `bootstrap`, or an embedded cluster's address.
    pub bootstrap: String,
    /// The cluster's pass-through librdkafka settings.
    pub options: BTreeMap<String, String>,
}

/// An input, ready for its transport. Two inputs that compare equal behave the same, so a
/// reload keeps an input running when its resolved kind did not change.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// A consumer-group member reading `topics`.
    Kafka {
        /// Its cluster.
        client: KafkaClient,
        /// The topics it subscribes to.
        topics: Vec<String>,
        /// Its consumer group.
        group: String,
        /// Its static membership id (`group.instance.id`), when the router has an
        /// `instance_id`.
        member: Option<String>,
        /// Its transactions, when it is exactly-once.
        exactly_once: Option<Transactional>,
    },
    /// A ZeroMQ socket that receives.
    Zmq(ZmqEndpoint),
}

/// How an exactly-once input's transactions are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transactional {
    /// The producer's `transactional.id`: the same for the same group, input and instance,
    /// so a restarted instance fences its predecessor's producer and aborts its open
    /// transaction.
    pub id: String,
    /// How long a transaction stays open.
    pub interval: std::time::Duration,
}

impl Transactional {
    /// The transactions of input `input` in `group`, run by router instance `instance`.
    pub fn new(group: &str, input: &str, instance: &str, interval_ms: u64) -> Self {
        Transactional {
            id: format!("switchyard.{group}.{input}.{instance}"),
            interval: std::time::Duration::from_millis(interval_ms),
        }
    }
}

/// The name that tells this router instance from the others of its group when the file
/// sets no `instance_id`: the host's name, stable across restarts on the same host.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the name is NUL-terminated within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "switchyard".to_owned(),
    }
}

/// An output, ready for its transport.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputKind {
    /// A producer writing to `topic`.
    Kafka {
        /// Its cluster.
        client: KafkaClient,
        /// The topic it writes to.
        topic: String,
    },
    /// A ZeroMQ socket that sends.
    Zmq(ZmqEndpoint),
}

/// Why an input or output cannot be resolved; validation refuses these first, so meeting
/// one means validation and resolution disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Neither or both of `kafka` and `zmq` are given.
    #[error("`{0}` needs exactly one of `kafka` or `zmq`")]
    Kind(String),
    /// The cluster named is not declared.
    #[error("`{name}` names cluster `{cluster}`, which is not declared")]
    Cluster {
        /// The input or output.
        name: String,
        /// The cluster it names.
        cluster: String,
    },
}

fn client(
    name: &str,
    cluster: &str,
    clusters: &BTreeMap<String, KafkaClient>,
) -> Result<KafkaClient, ResolveError> {
    clusters
        .get(cluster)
        .cloned()
        .ok_or_else(|| ResolveError::Cluster {
            name: name.to_owned(),
            cluster: cluster.to_owned(),
        })
}

impl InputKind {
    /// Input `name` of the file, with its cluster looked up in `clusters`; `instance` is
    /// the router's `instance_id`.
    pub fn resolve(
        name: &str,
        input: &InputConfig,
        clusters: &BTreeMap<String, KafkaClient>,
        instance: Option<&str>,
    ) -> Result<Self, ResolveError> {
        match (&input.kafka, &input.zmq) {
            (Some(k), None) => {
                let k = k.get_ref();
                let group = k.group.get_ref();
                let exactly_once = k.exactly_once().then(|| {
                    let interval = k
                        .transaction_ms
                        .as_ref()
                        .map_or(KafkaInput::TRANSACTION_MS, |t| *t.get_ref());
                    let instance = instance.map_or_else(host_name, str::to_owned);
                    Transactional::new(group, name, &instance, interval)
                });
                Ok(InputKind::Kafka {
                    client: client(name, k.cluster.get_ref(), clusters)?,
                    topics: k.topics.get_ref().clone(),
                    group: group.clone(),
                    member: instance.map(|i| format!("{i}.{name}")),
                    exactly_once,
                })
            }
            (None, Some(z)) => Ok(InputKind::Zmq(z.get_ref().clone())),
            _ => Err(ResolveError::Kind(format!("input {name}"))),
        }
    }
}

impl OutputKind {
    /// Output `name` of the file, with its cluster looked up in `clusters`.
    pub fn resolve(
        name: &str,
        output: &OutputConfig,
        clusters: &BTreeMap<String, KafkaClient>,
    ) -> Result<Self, ResolveError> {
        match (&output.kafka, &output.zmq) {
            (Some(k), None) => {
                let k = k.get_ref();
                Ok(OutputKind::Kafka {
                    client: client(name, k.cluster.get_ref(), clusters)?,
                    topic: k.topic.get_ref().clone(),
                })
            }
            (None, Some(z)) => Ok(OutputKind::Zmq(z.get_ref().clone())),
            _ => Err(ResolveError::Kind(format!("output {name}"))),
        }
    }
}
