//! A Kafka output: one idempotent producer per output, never awaiting each record. Delivery
//! reports release the input's acknowledgement; a failed delivery marks it failed.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::IntoOpaque;

use crate::metrics::OutputStats;
use crate::pipeline::{Ack, OutRecord, Refused, Returned, Sink};

/// Releases acknowledgements as deliveries are reported.
struct AckContext {
    output: Arc<str>,
    /// The topic, as a replying input's answer names it.
    topic: Arc<str>,
    stats: Arc<OutputStats>,
}

impl ClientContext for AckContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::logs::log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::logs::error(&error, reason);
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Delivery;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Self::DeliveryOpaque) {
        let (e, message) = match result {
            Ok(message) => {
                self.stats
                    .written
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(ack) = &ack.0 {
                    ack.stored(
                        &self.output,
                        Some((&self.topic, message.partition(), message.offset())),
                    );
                }
                return;
            }
            Err((e, message)) => (e, message),
        };
        self.stats.error(&error_name(e));
        let Some(ack) = ack.0 else {
            super::logs::delivery(&self.output, e, false, "delivery failed");
            return;
        };
        if is_permanent(e) {
            super::logs::delivery(
                &self.output,
                e,
                true,
                "the broker refused a record; it goes to its route's dead-letter output",
            );
            ack.refused(|ack| Returned {
                output: self.output.to_string(),
                reason: e.to_string(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
                ack,
            });
        } else {
            super::logs::delivery(
                &self.output,
                e,
                false,
                "delivery failed; the input reads its message again from there",
            );
            ack.fail_with("delivery", || format!("output `{}`: {e}", self.output));
        }
    }
}

/// Whether an error means this record can never be written, however often it is sent.
pub(super) fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::InvalidTimestamp
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::PolicyViolation
                | C::UnsupportedForMessageFormat
                | C::UnknownPartition
                | C::UnknownTopic
        )
    )
}

/// A short name for an error, for the metric's label.
pub(super) fn error_name(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "other".to_owned(),
    }
}

/// The acknowledgement a record carries through librdkafka, as the record's opaque
/// pointer: the `Ack`'s own reference count, with no allocation of its own.
pub struct Delivery(pub(super) Option<Ack>);

impl IntoOpaque for Delivery {
    fn into_ptr(self) -> *mut c_void {
        self.0
            .map_or(std::ptr::null_mut(), |ack| ack.into_raw().cast_mut().cast())
    }

    unsafe fn from_ptr(ptr: *mut c_void) -> Self {
        if ptr.is_null() {
            Delivery(None)
        } else {
            // SAFETY: a non-null pointer comes from `into_ptr`, once per record.
            Delivery(Some(unsafe { Ack::from_raw(ptr.cast_const().cast()) }))
        }
    }
}

/// Produces to one topic.
pub struct KafkaSink {
    name: String,
    topic: String,
    producer: ThreadedProducer<AckContext>,
    stats: Arc<OutputStats>,
}

impl KafkaSink {
    /// Creates the producer for output `name` writing to `topic`.
    pub fn new(
        name: &str,
        bootstrap: &str,
        options: &BTreeMap<String, String>,
        topic: &str,
        stats: Arc<OutputStats>,
    ) -> anyhow::Result<Self> {
        let config = super::producer_config(bootstrap, options);
        let producer = config
            .create_with_context(AckContext {
                output: name.into(),
                topic: topic.into(),
                stats: Arc::clone(&stats),
            })
            .with_context(|| format!("output `{name}`: cannot create a Kafka producer"))?;
        Ok(KafkaSink {
            name: name.to_owned(),
            topic: topic.to_owned(),
            producer,
            stats,
        })
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, rec: &OutRecord<'_>, ack: Option<Ack>) -> anyhow::Result<()> {
        match produce(
            &self.producer,
            (&self.name, &self.topic, &self.stats),
            rec,
            ack,
        ) {
            Ok(()) => Ok(()),
            Err(NotSent::Refused(refused)) => Err(refused),
            Err(NotSent::Failed(e, ack)) => {
                if let Some(ack) = &ack {
                    ack.fail_with("produce", || format!("output `{}`: {e}", self.name));
                }
                Err(anyhow::Error::new(e)
                    .context(format!("output `{}`: cannot produce", self.name)))
            }
        }
    }

    fn kafka(&self) -> Option<(&str, &Arc<OutputStats>)> {
        Some((&self.topic, &self.stats))
    }

    fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        flush_output(&self.producer, &self.name, timeout)
    }
}

/// Why a record was not handed over.
pub(super) enum NotSent {
    /// Refused for good: the route dead-letters the message, and the acknowledgement it
    /// gave is dropped untouched.
    Refused(anyhow::Error),
    /// Any other error, with the record's acknowledgement.
    Failed(KafkaError, Option<Ack>),
}

/// Hands `rec` to `producer` for output `name` writing to `topic`, waiting while the
/// producer's local queue is full: the back-pressure that slows the input instead of
/// buffering without bound. An error is counted in `stats`.
pub(super) fn produce<C: ProducerContext<DeliveryOpaque = Delivery>>(
    producer: &ThreadedProducer<C>,
    (name, topic, stats): (&str, &str, &OutputStats),
    rec: &OutRecord<'_>,
    ack: Option<Ack>,
) -> Result<(), NotSent> {
    let mut record = base_record(topic, rec, Delivery(ack));
    let (e, back) = loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(unsent) => break unsent,
        }
    };
    stats.error(&error_name(&e));
    if is_permanent(&e) {
        return Err(NotSent::Refused(
            Refused {
                output: name.to_owned(),
                reason: e.to_string(),
            }
            .into(),
        ));
    }
    Err(NotSent::Failed(e, back.delivery_opaque.0))
}

/// Waits until everything `producer` was handed for output `name` is delivered.
pub(super) fn flush_output<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    producer
        .flush(timeout)
        .with_context(|| format!("output `{name}`: flush did not finish"))
}

/// The record librdkafka sends for `rec` to `topic`, carrying `delivery`.
fn base_record<'a>(
    topic: &'a str,
    rec: &OutRecord<'a>,
    delivery: Delivery,
) -> BaseRecord<'a, [u8], [u8], Delivery> {
    let mut record = BaseRecord::with_opaque_to(topic, delivery);
    // No payload at all is a record with a null value: a tombstone.
    if let Some(payload) = rec.payload {
        record = record.payload(payload);
    }
    if !rec.headers.is_empty() {
        let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
        for &(key, value) in rec.headers {
            headers = headers.insert(Header { key, value });
        }
        record = record.headers(headers);
    }
    if let Some(key) = rec.key {
        record = record.key(key);
    }
    if let Some(p) = rec.partition {
        record = record.partition(p);
    }
    if let Some(ts) = rec.timestamp {
        record = record.timestamp(ts);
    }
    record
}
