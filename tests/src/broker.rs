//! The Kafka a test runs against. One test body runs on both brokers: the embedded cluster
//! (`switchyard kafka-dev`, a process of its own, so it outlives a killed router) and a real
//! Apache Kafka (KRaft, one node, started by the same launcher as `kafka-dev --apache`).
//!
//! Every test gets a broker of its own: tests kill routers, stop, restart and pause brokers,
//! and read whole topics back, so sharing a broker would couple them. An Apache Kafka start
//! (format and JVM) takes about 3 s here. A missing Java or Maven, or a broker that does not
//! start, fails the test with the launcher's message; it is never skipped.

use switchyard::kafka::{ApacheKafka, ApacheKafkaOptions};

use crate::procs::{Proc, kafka_dev};

/// Which broker a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// librdkafka's mock cluster, in a `switchyard kafka-dev` process.
    Embedded,
    /// Apache Kafka, the reference.
    Apache,
}

/// A running broker, stopped and removed when dropped.
pub struct Broker {
    bootstrap: String,
    inner: Inner,
}

enum Inner {
    Embedded(Proc),
    Apache(ApacheKafka),
}

impl Broker {
    /// Starts a broker of `kind` with these topics (`NAME:PARTITIONS`).
    pub fn start(kind: BrokerKind, topics: &[&str]) -> Broker {
        Broker::start_with(kind, topics, &ApacheKafkaOptions::default())
    }

    /// As [`Broker::start`], with options for Apache Kafka.
    pub fn start_with(kind: BrokerKind, topics: &[&str], options: &ApacheKafkaOptions) -> Broker {
        match kind {
            BrokerKind::Embedded => {
                let (proc, bootstrap) = kafka_dev(topics);
                Broker {
                    bootstrap,
                    inner: Inner::Embedded(proc),
                }
            }
            BrokerKind::Apache => {
                let kafka = ApacheKafka::start(options)
                    .unwrap_or_else(|e| panic!("Apache Kafka did not start: {e:#}"));
                for spec in topics {
                    let (name, partitions) = spec.split_once(':').unwrap_or((spec, "4"));
                    let partitions = partitions.parse().expect("NAME:PARTITIONS");
                    kafka
                        .create_topic(name, partitions)
                        .unwrap_or_else(|e| panic!("create topic {name}: {e:#}"));
                }
                Broker {
                    bootstrap: kafka.bootstrap().to_owned(),
                    inner: Inner::Apache(kafka),
                }
            }
        }
    }

    /// The bootstrap address.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Which broker this is.
    pub fn kind(&self) -> BrokerKind {
        match self.inner {
            Inner::Embedded(_) => BrokerKind::Embedded,
            Inner::Apache(_) => BrokerKind::Apache,
        }
    }

    /// Freezes the broker (SIGSTOP), as a hung broker or a long pause would: its clients'
    /// requests wait unanswered.
    pub fn pause(&self) {
        match &self.inner {
            Inner::Embedded(proc) => proc.signal("STOP"),
            Inner::Apache(kafka) => kafka.pause().expect("pause the broker"),
        }
    }

    /// Lets a paused broker run again.
    pub fn resume(&self) {
        match &self.inner {
            Inner::Embedded(proc) => proc.signal("CONT"),
            Inner::Apache(kafka) => kafka.resume().expect("resume the broker"),
        }
    }

    /// The Apache Kafka broker, to stop, restart or pause it; panics on the embedded one.
    pub fn apache(&mut self) -> &mut ApacheKafka {
        match &mut self.inner {
            Inner::Apache(kafka) => kafka,
            Inner::Embedded(_) => panic!("this test needs Apache Kafka"),
        }
    }
}

/// Runs a test body `fn NAME(kind: BrokerKind)` once per broker, as the tests
/// `NAME::embedded` and `NAME::apache` (a module and a function may share a name).
#[macro_export]
macro_rules! on_both_brokers {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn embedded() {
                    super::$name($crate::broker::BrokerKind::Embedded);
                }
                #[test]
                fn apache() {
                    super::$name($crate::broker::BrokerKind::Apache);
                }
            }
        )+
    };
}
