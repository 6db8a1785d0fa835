//! The embedded Kafka cluster: librdkafka's mock cluster, which speaks the real Kafka
//! protocol on localhost (consumer groups, idempotent producers, error injection). For
//! development, demos and tests only: it keeps a bounded log per partition and nothing on
//! disk.

use anyhow::Context;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// An in-process Kafka-protocol cluster. Lives as long as this value; not `Send`, so it
/// stays on the thread that started it.
pub struct EmbeddedCluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedCluster {
    /// Starts a cluster of `brokers` brokers on ephemeral localhost ports.
    pub fn start(brokers: i32) -> anyhow::Result<Self> {
        let cluster =
            MockCluster::new(brokers).context("cannot start the embedded Kafka cluster")?;
        Ok(EmbeddedCluster { cluster })
    }

    /// The bootstrap list clients connect to.
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates a topic (idempotent for an existing topic with the same partition count).
    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        let partitions = i32::try_from(partitions.max(1)).unwrap_or(i32::MAX);
        self.cluster
            .create_topic(name, partitions, 1)
            .with_context(|| format!("cannot create topic `{name}` in the embedded cluster"))
    }

    /// Takes a broker down (fault injection for tests).
    pub fn broker_down(&self, broker: i32) -> anyhow::Result<()> {
        Ok(self.cluster.broker_down(broker)?)
    }

    /// Brings a broker back up.
    pub fn broker_up(&self, broker: i32) -> anyhow::Result<()> {
        Ok(self.cluster.broker_up(broker)?)
    }
}
