//! Kafka sources and sinks, and the embedded development cluster. They never see wasmtime
//! types.
//!
//! Guarantee: **at-least-once** from a Kafka input. An input offset is stored for commit
//! only after every record it produced, and its dead-letter record, is acknowledged by the
//! broker, contiguously per partition; librdkafka commits stored offsets every second, on
//! partition revoke and at shutdown. Order is kept per input partition. Records whose
//! delivery fails hold their partition's commits back, so they are read again after a
//! restart.

mod embedded;
mod sink;
mod source;

pub use embedded::EmbeddedCluster;
pub use sink::KafkaSink;
pub use source::KafkaSource;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

/// A client configuration from a bootstrap list and pass-through librdkafka options.
fn client_config(bootstrap: &str, options: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in options {
        config.set(key, value);
    }
    config
}
