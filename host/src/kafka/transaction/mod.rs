//! Exactly-once from a Kafka input (`delivery = "exactly-once"`): Kafka transactions.
//!
//! The input's thread owns one transactional producer, whose `transactional.id` is the
//! same for the same group, input and router instance: a restarted instance's producer
//! fences its predecessor's and aborts the transaction it left open. Every Kafka output of
//! the routes reading the input (dead letters included) writes through that producer
//! ([`TxSink`]), so a transaction holds every record the input's messages produced. It
//! commits with the input's offsets, sent with the consumer's group metadata (KIP-447),
//! every `transaction_ms`, before new route runners take over (a reload), when partitions
//! are revoked, and at shutdown.
//!
//! A transaction that cannot commit (a record the broker refused, a delivery that failed,
//! an abortable error) is aborted: none of its records become visible to `read_committed`
//! consumers, and the input goes back to the first offset the transaction read on each
//! partition and processes those messages again. Records the broker refused for good are
//! remembered: the broker refuses a whole batch for one bad record, so on the next pass
//! each of them is sent in a batch of its own, and one refused alone is refused at once
//! on the pass after, its message dead-lettered inside that transaction. A fenced producer
//! stops the input: another instance has its id. A producer that fails for good otherwise,
//! or is stuck in a call, is replaced, together with the consumer (see `run_input`).

mod output;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use switchyard_abi::Origin;

use crate::config::resolved::{KafkaClient, Transactional};
use crate::metrics::InputStats;
use crate::pipeline::{Incoming, RouteRunner, Sink};
use output::{TxContext, TxSink};

/// How long one call to the transaction coordinator may take before it is tried again.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a commit is retried (the broker unreachable, say) before the transaction is
/// aborted instead: past the producer's `transaction.timeout.ms` (60 s), the broker has
/// aborted it anyway.
const COMMIT_PATIENCE: Duration = Duration::from_secs(90);
/// How long to wait before trying a failed transactional call again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long a transactional call may block before the producer is given up as stuck.
/// librdkafka does not always keep a call's timeout (a request to the group coordinator
/// can wait for ever after a broker outage: librdkafka issue #5456), and a call that never
/// returns would stall the input for good.
const STUCK_AFTER: Duration = Duration::from_secs(30);

/// Why a transaction did not commit.
enum Failed {
    /// It can be aborted, and its messages read again.
    Abort(String),
    /// The input cannot go on: another instance fenced its producer.
    Fatal(anyhow::Error),
    /// The producer is stuck in a call, cannot abort, or failed for good: the input starts
    /// over with a new one, which aborts what this one left open.
    Stuck(String),
}

/// The error that makes an exactly-once input start over with a new producer and
/// consumer (see [`stuck`]).
#[derive(Debug)]
struct Stuck(String);

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stuck {}

/// Why the transactional producer is stuck, if that is what `e` says; `e` itself
/// otherwise.
pub fn stuck(e: anyhow::Error) -> anyhow::Result<String> {
    e.downcast::<Stuck>().map(|Stuck(why)| why)
}

/// A call the transactional producer makes, on a thread of its own (see [`STUCK_AFTER`]).
type Call = dyn Fn(&ThreadedProducer<TxContext>) -> Result<(), KafkaError> + Send + Sync;

/// The most records a transaction sends alone before it commits.
const MAX_ALONE: u32 = 100;

/// An exactly-once input's transactions.
pub struct Transactions {
    input: String,
    id: String,
    interval: Duration,
    producer: Arc<ThreadedProducer<TxContext>>,
    /// This input's transactional outputs, by output name.
    sinks: HashMap<String, Arc<TxSink>>,
    /// When the open transaction began, if one is open.
    open: Option<Instant>,
    /// Per partition read in the open transaction: its first offset, and one past its
    /// last.
    read: HashMap<(String, i32), (i64, i64)>,
    /// Why the input must stop, when that was found where it could not be returned (a
    /// revoke).
    fatal: Option<anyhow::Error>,
    stats: Arc<InputStats>,
}

impl Transactions {
    /// Creates input `input`'s transactional producer and fences any earlier producer
    /// with the same id, aborting what it left open.
    pub fn start(
        input: &str,
        client: &KafkaClient,
        tx: &Transactional,
        stats: Arc<InputStats>,
    ) -> anyhow::Result<Self> {
        let mut config = super::producer_config(&client.bootstrap, &client.options);
        config.set("transactional.id", &tx.id);
        let producer: ThreadedProducer<TxContext> = config
            .create_with_context(TxContext {
                state: Arc::default(),
            })
            .with_context(|| {
                format!("input `{input}`: cannot create its transactional producer")
            })?;
        producer
            .init_transactions(Duration::from_secs(60))
            .with_context(|| {
                format!(
                    "input `{input}`: cannot start transactions with id `{}` on cluster `{}`",
                    tx.id, client.cluster
                )
            })?;
        stats.transactions.enabled.store(true, Ordering::Relaxed);
        tracing::info!(transactional_id = %tx.id, "exactly-once: transactions ready");
        Ok(Transactions {
            input: input.to_owned(),
            id: tx.id.clone(),
            interval: tx.interval,
            producer: Arc::new(producer),
            sinks: HashMap::new(),
            open: None,
            read: HashMap::new(),
            fatal: None,
            stats,
        })
    }

    /// Moves the Kafka outputs of `runners` into this input's transactions.
    pub fn adopt(&mut self, runners: &mut [RouteRunner]) {
        for runner in runners {
            runner.replace_sinks(|sink| {
                let (topic, stats) = sink.kafka()?;
                let name = sink.name();
                if let Some(mine) = self.sinks.get(name)
                    && mine.topic == topic
                {
                    return Some(Arc::clone(mine) as Arc<dyn Sink>);
                }
                let mine = Arc::new(TxSink {
                    name: name.to_owned(),
                    topic: topic.to_owned(),
                    producer: Arc::clone(&self.producer),
                    stats: Arc::clone(stats),
                });
                self.producer
                    .context()
                    .state
                    .outputs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(topic.to_owned(), Arc::clone(stats));
                self.sinks.insert(name.to_owned(), Arc::clone(&mine));
                Some(mine as Arc<dyn Sink>)
            });
        }
    }

    /// Opens a transaction if none is open, for a batch about to be processed, and notes
    /// what the batch reads.
    pub fn begin<M: Incoming>(&mut self, batch: &[M]) -> anyhow::Result<()> {
        if self.open.is_none() {
            self.producer.begin_transaction().map_err(|e| {
                match self.failure(e, "begin a transaction") {
                    Failed::Fatal(e) => e,
                    // A producer that cannot begin a transaction is replaced.
                    Failed::Abort(why) | Failed::Stuck(why) => anyhow::Error::new(Stuck(why)),
                }
            })?;
            self.open = Some(Instant::now());
        }
        // A batch holds runs of one partition's messages, in offset order: one look-up
        // per run.
        let mut run: Option<(&str, i32, i64, i64)> = None;
        for m in batch {
            let Origin::Kafka {
                topic,
                partition,
                offset,
            } = m.origin()
            else {
                continue;
            };
            match &mut run {
                Some((t, p, _, last)) if *t == topic && *p == partition => *last = offset,
                _ => {
                    if let Some(done) = run.replace((topic, partition, offset, offset)) {
                        self.note(done);
                    }
                }
            }
        }
        if let Some(done) = run {
            self.note(done);
        }
        Ok(())
    }

    /// Notes that offsets `first` to `last` of a partition were read in the open
    /// transaction.
    fn note(&mut self, (topic, partition, first, last): (&str, i32, i64, i64)) {
        self.read
            .entry((topic.to_owned(), partition))
            .and_modify(|(_, next)| *next = (*next).max(last + 1))
            .or_insert((first, last + 1));
    }

    /// How long the input may wait for messages before the open transaction is due.
    pub fn wait(&self, idle: Duration) -> Duration {
        self.open.map_or(idle, |opened| {
            idle.min(self.interval.saturating_sub(opened.elapsed()))
        })
    }

    /// Whether the open transaction should end now: it has been open for its interval, or
    /// has sent [`MAX_ALONE`] records alone (each waits for the broker, so a transaction
    /// stays short however many records are suspect).
    pub fn due(&self) -> bool {
        self.open.is_some_and(|opened| {
            opened.elapsed() >= self.interval
                || self
                    .producer
                    .context()
                    .state
                    .sent_alone
                    .load(Ordering::Relaxed)
                    >= MAX_ALONE
        })
    }

    /// An error met where it could not be returned, which stops the input.
    pub fn take_fatal(&mut self) -> Option<anyhow::Error> {
        self.fatal.take()
    }

    /// Ends the open transaction, if any: commits it with the offsets it read, or aborts
    /// it and sends the consumer back to the first offset it read on each partition. An
    /// error means the input cannot go on.
    pub fn finish<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> anyhow::Result<()> {
        if self.open.take().is_none() {
            return Ok(());
        }
        let read = std::mem::take(&mut self.read);
        let started = Instant::now();
        let doomed = self.producer.context().state.take_doom();
        self.producer
            .context()
            .state
            .sent_alone
            .store(0, Ordering::Relaxed);
        let result = match doomed {
            Some(why) => Err(Failed::Abort(why)),
            None => self.commit(consumer, &read),
        };
        let t = &self.stats.transactions;
        match result {
            Ok(()) => {
                t.committed.fetch_add(1, Ordering::Relaxed);
                t.commit_seconds.observe(started.elapsed().as_secs_f64());
                self.producer.context().state.forget_refusals();
                self.stats.set_problem("transactions", None);
                Ok(())
            }
            Err(Failed::Abort(why)) => {
                t.aborted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "transaction aborted ({why}); its messages are processed again from the \
                     offsets it began at"
                );
                self.abort()?;
                rewind(consumer, &read).with_context(|| format!("input `{}`", self.input))
            }
            Err(Failed::Fatal(e)) => Err(e),
            Err(Failed::Stuck(why)) => {
                t.aborted.fetch_add(1, Ordering::Relaxed);
                Err(anyhow::Error::new(Stuck(why)))
            }
        }
    }

    /// Aborts the open transaction, if any, without sending a consumer back: for when the
    /// consumer that read it has failed, and the next one starts from the committed
    /// offsets.
    pub fn abandon(&mut self) -> anyhow::Result<()> {
        if self.open.take().is_none() {
            return Ok(());
        }
        self.read.clear();
        self.producer
            .context()
            .state
            .sent_alone
            .store(0, Ordering::Relaxed);
        self.stats
            .transactions
            .aborted
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "transaction aborted (its consumer failed); its messages are read again by the \
             next consumer"
        );
        self.abort()
    }

    /// [`Transactions::finish`] from a consumer callback (a revoke), where an error
    /// cannot be returned: it is kept for the input's loop.
    pub fn finish_in_callback<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if let Err(e) = self.finish(consumer) {
            self.fatal.get_or_insert(e);
        }
    }

    fn commit<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        read: &HashMap<(String, i32), (i64, i64)>,
    ) -> Result<(), Failed> {
        let mut offsets = TopicPartitionList::with_capacity(read.len());
        for ((topic, partition), (_, next)) in read {
            // Cannot fail for a valid offset.
            let _ = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        let metadata = consumer.group_metadata().ok_or_else(|| {
            Failed::Abort("the consumer has no group metadata to commit offsets with".to_owned())
        })?;
        // Records still lingering go now, while the offsets are sent.
        let _ = self.producer.flush(Duration::ZERO);
        let started = Instant::now();
        let deadline = started + COMMIT_PATIENCE;
        let sent = Arc::new((offsets, metadata));
        self.retrying(
            deadline,
            "send the input's offsets",
            Arc::new(move |producer| {
                producer.send_offsets_to_transaction(&sent.0, &sent.1, CALL_TIMEOUT)
            }),
        )?;
        let offsets_sent = started.elapsed();
        self.deliver_outstanding();
        let delivered = started.elapsed();
        self.retrying(
            deadline,
            "commit",
            Arc::new(|producer| producer.commit_transaction(CALL_TIMEOUT)),
        )?;
        tracing::debug!(
            offsets_ms = offsets_sent.as_secs_f64() * 1e3,
            delivered_ms = (delivered - offsets_sent).as_secs_f64() * 1e3,
            commit_ms = (started.elapsed() - delivered).as_secs_f64() * 1e3,
            "transaction committed"
        );
        Ok(())
    }

    /// Sends what is queued at once (linger ignored) and waits until the broker has
    /// answered for every record, so that the commit that follows has nothing to flush.
    /// (rdkafka's `flush` waits up to 100 ms per look when, as here, another thread serves
    /// the delivery reports: it made every commit take 100 ms.)
    fn deliver_outstanding(&self) {
        let _ = self.producer.flush(Duration::ZERO);
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Calls `call` until it succeeds, fails for good, or `deadline` passes; a failure
    /// that may pass (a timeout) is shown by `/health/ready` meanwhile.
    fn retrying(&self, deadline: Instant, what: &str, call: Arc<Call>) -> Result<(), Failed> {
        loop {
            let began = Instant::now();
            let e = match self.bounded(&call) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => e,
                None => {
                    return Err(Failed::Stuck(format!(
                        "the transactional producer did not {what} within {} s",
                        STUCK_AFTER.as_secs()
                    )));
                }
            };
            // A call that used its whole timeout is not resumed: resuming one after a broker
            // outage can wait for ever (see `STUCK_AFTER`). The transaction is aborted
            // instead, or, if the producer cannot abort it now, a new producer does.
            let timed_out = began.elapsed() >= CALL_TIMEOUT;
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Conflict) {
                // Another call timed out and is still under way: only a new producer
                // can end this transaction now.
                return Err(Failed::Stuck(format!("cannot {what}: {e}")));
            }
            let retriable = matches!(&e, KafkaError::Transaction(rd) if rd.is_retriable());
            if !retriable || timed_out || Instant::now() >= deadline {
                return Err(self.failure(e, what));
            }
            let problem = format!("cannot {what} yet, trying again: {e}");
            tracing::warn!("{problem}");
            self.stats.set_problem("transactions", Some(problem));
            // A call that fails at once (no coordinator yet) is not tried again at once.
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    /// Makes `call` on a thread of its own, and waits for it up to [`STUCK_AFTER`]: `None`
    /// if it has not returned by then. A call left behind keeps its producer alive until it
    /// returns, if it ever does.
    fn bounded(&self, call: &Arc<Call>) -> Option<Result<(), KafkaError>> {
        let (done, result) = std::sync::mpsc::sync_channel(1);
        let producer = Arc::clone(&self.producer);
        let making = Arc::clone(call);
        let spawned = std::thread::Builder::new()
            .name("transaction".to_owned())
            .spawn(move || {
                let _ = done.send(making(&producer));
            });
        if spawned.is_err() {
            // No thread to spare: the call is made here, unguarded.
            return Some(call(&self.producer));
        }
        result.recv_timeout(STUCK_AFTER).ok()
    }

    /// Sorts a failed transactional call. Only fencing stops the input: another instance
    /// has taken over its id. Any other fatal error leaves this producer unable to go on,
    /// but a new one with the same id can (it fences this one and aborts what it left
    /// open); an error that is not fatal aborts the transaction.
    fn failure(&self, e: KafkaError, what: &str) -> Failed {
        let fatal = matches!(&e, KafkaError::Transaction(rd) if rd.is_fatal());
        if !fatal {
            return Failed::Abort(format!("cannot {what}: {e}"));
        }
        let fenced = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced)
        );
        if fenced {
            return Failed::Fatal(anyhow::anyhow!(
                "input `{}`: fenced: another router took over transactional id `{}` (the same \
                 group, input and instance id); this one stops so that the two never write the \
                 same records. Give each router of a group its own `instance_id`",
                self.input,
                self.id
            ));
        }
        Failed::Stuck(format!(
            "the transactional producer failed for good (cannot {what}: {e})"
        ))
    }

    /// Aborts the open transaction, then waits until the producer has reported every
    /// record it purged.
    fn abort(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + COMMIT_PATIENCE;
        if let Err(failed) = self.retrying(
            deadline,
            "abort",
            Arc::new(|producer| producer.abort_transaction(CALL_TIMEOUT)),
        ) {
            return Err(match failed {
                Failed::Fatal(e) => e,
                // A new producer with the same id aborts what this one could not.
                Failed::Abort(why) | Failed::Stuck(why) => anyhow::Error::new(Stuck(why)),
            });
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Reports that came in before the abort belong to the aborted transaction.
        self.producer.context().state.take_doom();
        Ok(())
    }
}

/// Sends `consumer` back to the first offset an aborted transaction read on each
/// partition; a partition no longer assigned is left to its next owner. A partition still
/// assigned that cannot be sent back is an error: reading on would skip what the aborted
/// transaction read.
fn rewind<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    read: &HashMap<(String, i32), (i64, i64)>,
) -> anyhow::Result<()> {
    for ((topic, partition), (first, _)) in read {
        let Err(e) = consumer.seek(topic, *partition, Offset::Offset(*first), CALL_TIMEOUT) else {
            continue;
        };
        let assigned = consumer.assignment().map_or(true, |a| {
            a.elements()
                .iter()
                .any(|p| p.topic() == topic && p.partition() == *partition)
        });
        if assigned {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot go back to offset {first} of {topic}/{partition} after an abort"
            )));
        }
        tracing::debug!(topic, partition, "not rewound: no longer assigned");
    }
    Ok(())
}

/// Shares an input's transactions between its loop and its consumer's callbacks, which run
/// on the same thread, inside the loop's polls.
pub type Shared = Arc<Mutex<Transactions>>;

/// Locks `shared`.
pub fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Transactions> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}
