//! The outputs of an exactly-once input: every record they send joins the input's open
//! transaction, through its one transactional producer ([`TxSink`]); the producer's
//! delivery reports say whether the transaction can commit ([`TxState`]), and which
//! records the broker refused: suspects, sent again alone on the next pass, and records
//! refused alone, which their route dead-letters at once.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message as _;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::CALL_TIMEOUT;
use crate::kafka::sink::{Delivery, NotSent, error_name, flush_output, is_permanent, produce};
use crate::metrics::OutputStats;
use crate::pipeline::{Ack, OutRecord, Refused, Sink};

/// What a broker refusal says about a record.
#[derive(Debug, Clone)]
enum Verdict {
    /// Refused with the batch it travelled in: it or another record of the batch is at
    /// fault. Sent again, it travels alone.
    Suspect,
    /// Refused alone: it can never be written, and is dead-lettered.
    Refused(String),
}

/// What the producer's delivery reports tell the input thread about the open transaction.
#[derive(Debug, Default)]
pub(super) struct TxState {
    /// Why the open transaction cannot commit, once a delivery failed.
    pub(super) doomed: Mutex<Option<String>>,
    /// Whether `doomed` has a reason: the records of a doomed transaction are not sent.
    pub(super) is_doomed: AtomicBool,
    /// Records the broker refused, by [`fingerprint`]; kept until a transaction commits.
    refused: Mutex<HashMap<u64, Verdict>>,
    /// Whether `refused` has anything, so sends skip hashing while it is empty.
    any_refused: AtomicBool,
    /// The fingerprint of the record being sent alone, or 0.
    pub(super) alone: AtomicU64,
    /// Set once the delivery of the record sent alone has been reported.
    pub(super) alone_reported: AtomicBool,
    /// Records sent alone in the open transaction.
    pub(super) sent_alone: AtomicU32,
    /// Each topic's output and its counters, for errors reported by topic.
    pub(super) outputs: Mutex<HashMap<String, Arc<OutputStats>>>,
}

impl TxState {
    pub(super) fn doom(&self, why: String) {
        self.doomed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(why);
        self.is_doomed.store(true, Ordering::Release);
    }

    /// Why the open transaction cannot commit, if it cannot; forgets it.
    pub(super) fn take_doom(&self) -> Option<String> {
        self.is_doomed.store(false, Ordering::Release);
        self.doomed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn verdicts(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Verdict>> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn verdict(&self, fingerprint: u64) -> Option<Verdict> {
        self.verdicts().get(&fingerprint).cloned()
    }

    /// The broker refused the record with this fingerprint for `reason`.
    pub(super) fn refuse(&self, fingerprint: u64, reason: String) {
        let alone = self.alone.load(Ordering::Acquire) == fingerprint;
        let mut verdicts = self.verdicts();
        if alone {
            verdicts.insert(fingerprint, Verdict::Refused(reason));
        } else {
            verdicts.entry(fingerprint).or_insert(Verdict::Suspect);
        }
        self.any_refused.store(true, Ordering::Release);
    }

    /// A transaction committed: what was learnt of refused records is forgotten.
    pub(super) fn forget_refusals(&self) {
        if self.any_refused.swap(false, Ordering::AcqRel) {
            self.verdicts().clear();
        }
    }

    /// The broker took the record with this fingerprint, sent alone: it is no suspect.
    pub(super) fn cleared(&self, fingerprint: u64) {
        self.verdicts().remove(&fingerprint);
    }
}

/// Identifies a record by topic, key and payload: what a broker refusal depends on.
fn fingerprint(topic: &str, key: Option<&[u8]>, payload: Option<&[u8]>) -> u64 {
    let mut h = DefaultHasher::new();
    (topic, key, payload).hash(&mut h);
    h.finish().max(1)
}

/// [`fingerprint`] of a record the producer reports on.
fn fingerprint_of(message: &rdkafka::message::BorrowedMessage<'_>) -> u64 {
    fingerprint(message.topic(), message.key(), message.payload())
}

/// Hears the transactional producer's delivery reports.
pub(super) struct TxContext {
    pub(super) state: Arc<TxState>,
}

impl ClientContext for TxContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::logs::log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::logs::error(&error, reason);
    }
}

impl ProducerContext for TxContext {
    type DeliveryOpaque = Delivery;

    fn delivery(&self, result: &DeliveryResult<'_>, _ack: Delivery) {
        let state = &self.state;
        let (e, message) = match result {
            Ok(message) => {
                if let Some(stats) = state
                    .outputs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(message.topic())
                {
                    stats.written.fetch_add(1, Ordering::Relaxed);
                }
                let alone = state.alone.load(Ordering::Acquire);
                if alone != 0 && fingerprint_of(message) == alone {
                    state.cleared(alone);
                    state.alone_reported.store(true, Ordering::Release);
                }
                return;
            }
            Err((e, message)) => (e, message),
        };
        // Whatever the error, the record sent alone has its answer once this returns.
        let _reported = Reported(state);
        // Records an abort purged: their transaction is being read again already.
        if matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
        ) {
            return;
        }
        let topic = message.topic();
        if let Some(stats) = state
            .outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
        {
            stats.error(&error_name(e));
        }
        if is_permanent(e) {
            state.refuse(fingerprint_of(message), e.to_string());
        }
        state.doom(format!(
            "a record for topic `{topic}` was not delivered: {e}"
        ));
    }
}

/// Says, when dropped, that a delivery report has been handled.
struct Reported<'a>(&'a TxState);

impl Drop for Reported<'_> {
    fn drop(&mut self) {
        if self.0.alone.load(Ordering::Acquire) != 0 {
            self.0.alone_reported.store(true, Ordering::Release);
        }
    }
}

/// A Kafka output of an exactly-once input: its records join the input's transaction.
pub(super) struct TxSink {
    pub(super) name: String,
    pub(super) topic: String,
    pub(super) producer: Arc<ThreadedProducer<TxContext>>,
    pub(super) stats: Arc<OutputStats>,
}

impl Sink for TxSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, rec: &OutRecord<'_>, ack: Option<Ack>) -> anyhow::Result<()> {
        let state = &self.producer.context().state;
        if state.is_doomed.load(Ordering::Acquire) {
            // The transaction will be aborted and this message processed again.
            return Ok(());
        }
        if !state.any_refused.load(Ordering::Acquire) {
            return self.send_now(rec, ack);
        }
        let print = fingerprint(&self.topic, rec.key, rec.payload);
        match state.verdict(print) {
            Some(Verdict::Refused(reason)) => Err(Refused {
                output: self.name.clone(),
                reason,
            }
            .into()),
            Some(Verdict::Suspect) => {
                // In a batch of its own: everything sent before goes first, and its
                // delivery is reported before anything else is sent.
                self.settle(|| self.producer.in_flight_count() == 0);
                state.sent_alone.fetch_add(1, Ordering::Relaxed);
                state.alone_reported.store(false, Ordering::Release);
                state.alone.store(print, Ordering::Release);
                let sent = self.send_now(rec, ack);
                self.settle(|| state.alone_reported.load(Ordering::Acquire));
                state.alone.store(0, Ordering::Release);
                sent
            }
            None => self.send_now(rec, ack),
        }
    }

    fn kafka(&self) -> Option<(&str, &Arc<OutputStats>)> {
        Some((&self.topic, &self.stats))
    }

    fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        flush_output(&self.producer, &self.name, timeout)
    }
}

impl TxSink {
    /// Lets the producer deliver until `done`, the transaction is doomed (then nothing
    /// more is delivered until it is aborted), or [`CALL_TIMEOUT`] passes.
    fn settle(&self, done: impl Fn() -> bool) {
        let state = &self.producer.context().state;
        let deadline = Instant::now() + CALL_TIMEOUT;
        while !done() && !state.is_doomed.load(Ordering::Acquire) && Instant::now() < deadline {
            let _ = self.producer.flush(Duration::from_millis(5));
        }
    }

    fn send_now(&self, rec: &OutRecord<'_>, ack: Option<Ack>) -> anyhow::Result<()> {
        match produce(
            &self.producer,
            (&self.name, &self.topic, &self.stats),
            rec,
            ack,
        ) {
            Ok(()) => Ok(()),
            Err(NotSent::Refused(refused)) => Err(refused),
            Err(NotSent::Failed(e, _)) => {
                // The transaction is aborted and the message processed again: nothing to
                // say to the route, which would fail the message.
                let state = &self.producer.context().state;
                state.doom(format!("output `{}` could not produce: {e}", self.name));
                Ok(())
            }
        }
    }
}
