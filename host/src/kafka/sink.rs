//! A Kafka output: one idempotent producer per output, never awaiting each record. Delivery
//! reports release the input's acknowledgement; a failed delivery marks it failed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::pipeline::{Ack, OutRecord, Sink};

/// Releases acknowledgements as deliveries are reported.
struct AckContext {
    output: String,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<Option<Ack>>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            tracing::error!(output = %self.output, error = %e, "delivery failed; the input will not commit past this message");
            if let Some(ack) = ack.as_ref() {
                ack.fail();
            }
        }
    }
}

/// Produces to one topic.
pub struct KafkaSink {
    name: String,
    topic: String,
    producer: ThreadedProducer<AckContext>,
}

impl KafkaSink {
    /// Creates the producer for output `name` writing to `topic`.
    pub fn new(
        name: &str,
        bootstrap: &str,
        options: &BTreeMap<String, String>,
        topic: &str,
    ) -> anyhow::Result<Self> {
        let mut config = super::client_config(bootstrap, &BTreeMap::new());
        config
            .set("enable.idempotence", "true")
            // Kafka's Java clients hash keys with murmur2: the same key, the same partition.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5");
        for (key, value) in options {
            config.set(key, value);
        }
        let producer = config
            .create_with_context(AckContext {
                output: name.to_owned(),
            })
            .with_context(|| format!("output `{name}`: cannot create a Kafka producer"))?;
        Ok(KafkaSink {
            name: name.to_owned(),
            topic: topic.to_owned(),
            producer,
        })
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, rec: &OutRecord<'_>, ack: Option<Ack>) -> anyhow::Result<()> {
        let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
        for (key, value) in rec.headers {
            headers = headers.insert(Header {
                key,
                value: Some(*value),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8], Box<Option<Ack>>> =
            BaseRecord::with_opaque_to(&self.topic, Box::new(ack))
                .payload(rec.payload)
                .headers(headers);
        if let Some(key) = rec.key {
            record = record.key(key);
        }
        if let Some(p) = rec.partition {
            record = record.partition(p);
        }
        if let Some(ts) = rec.timestamp {
            record = record.timestamp(ts);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                // The local queue is full: wait for deliveries. This is the back-pressure
                // that slows the input instead of buffering without bound.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, back)) => {
                    if let Some(ack) = back.delivery_opaque.as_ref() {
                        ack.fail();
                    }
                    return Err(anyhow::Error::new(e)
                        .context(format!("output `{}`: cannot produce", self.name)));
                }
            }
        }
    }

    fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.producer
            .flush(timeout)
            .with_context(|| format!("output `{}`: flush did not finish", self.name))
    }
}
