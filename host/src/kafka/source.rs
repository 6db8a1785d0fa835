//! A Kafka input: a consumer-group member polled from its input's own thread. Offsets are
//! stored only as far as every earlier message of the partition is acknowledged (see
//! [`crate::pipeline::PartitionTracker`]), and committed by librdkafka.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use switchyard_abi::Origin;

use super::fence;
use super::outage::{self, Outage, SILENT};
use super::rewind::Rewinds;
use super::transaction::{self, Shared};
use crate::metrics::InputStats;
use crate::pipeline::{Ack, Incoming, PartitionTracker};

pub(super) type Trackers = Arc<Mutex<HashMap<(String, i32), Arc<PartitionTracker>>>>;

/// How long a revoke waits for in-flight messages before giving their partitions up.
const REVOKE_DRAIN: Duration = Duration::from_secs(30);

/// How long a consumer that replaced a failed one may go without partitions while the
/// cluster answers before it too is replaced. A rejoin that completes takes seconds; the
/// group coordinator can hold a join for its rebalance timeout (`max.poll.interval.ms`,
/// 5 minutes) when it still counts a member that will never rejoin.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// Drains and commits a partition's progress before it is revoked, so the next owner
/// starts exactly where this member's acknowledged work ends.
struct SourceContext {
    input: String,
    trackers: Trackers,
    /// Set when partitions were revoked, so a batch being gathered can drop what it
    /// polled from them.
    revoked: AtomicBool,
    /// Set when partitions were assigned, so a missing topic is looked for again.
    assigned: AtomicBool,
    /// Readiness, assignments and lag, for the admin endpoint.
    stats: Arc<InputStats>,
    /// The cluster's outages, as this input sees them.
    outage: Arc<Mutex<Outage>>,
    /// An exactly-once input's transactions: a revoke ends the open one.
    transactions: Option<Shared>,
    /// Set when the consumer failed and a new one took over: its rebalances end nothing.
    retired: AtomicBool,
    /// The member id the consumer was last given partitions under: a static member fenced
    /// under another one was fenced by its own rejoin (see [`super::fence`]).
    assigned_as: Mutex<Option<String>>,
    /// Set when librdkafka said it gave the consumer's membership up and rejoined (its
    /// session timed out, or it was not polled in time): what tells a fence by its own
    /// rejoin from another instance's for a consumer never given partitions.
    rejoined: AtomicBool,
}

impl ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        if matches!(facility, "SESSTMOUT" | "MAXPOLL") {
            self.rejoined.store(true, Ordering::Release);
        }
        super::logs::log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::logs::error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        let mut lag = BTreeMap::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // Partition -1 is librdkafka's internal "unassigned" entry.
                if *partition < 0 {
                    continue;
                }
                // librdkafka gives no lag (-1) for a partition this member fetches but has
                // not consumed from yet: everything from the log start is then still to be
                // read.
                let behind = if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else if p.fetch_state == "active" && p.hi_offset >= 0 {
                    p.hi_offset - p.lo_offset.max(0)
                } else {
                    continue;
                };
                lag.insert((topic.clone(), *partition), behind);
            }
        }
        self.stats.set_lag(lag);
        outage::watch(&self.outage, &self.stats, &statistics);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        if let Rebalance::Revoke(partitions) = rebalance {
            self.revoked.store(true, Ordering::Release);
            let deadline = Instant::now() + REVOKE_DRAIN;
            let revoked: Vec<(String, i32)> = partitions
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            if let Some(transactions) = &self.transactions {
                // Commits (or aborts) what was read before the partitions go: their next
                // owner starts where this transaction ends.
                transaction::lock(transactions).finish_in_callback(consumer);
                let mut all = self.trackers.lock().unwrap_or_else(PoisonError::into_inner);
                for key in &revoked {
                    all.remove(key);
                }
                tracing::info!(partitions = revoked.len(), "partitions revoked");
                return;
            }
            let trackers: Vec<_> = {
                let all = self.trackers.lock().unwrap_or_else(PoisonError::into_inner);
                revoked.iter().filter_map(|k| all.get(k).cloned()).collect()
            };
            // The cluster's statistics do not come while this callback runs: records that
            // stay unacknowledged here are the outage's only sign (a session that timed out
            // in a broker freeze revokes the partitions).
            let started = Instant::now();
            let mut said = false;
            drain(&trackers, deadline, &mut || {
                if !said && started.elapsed() >= SILENT {
                    said = true;
                    let waiting: usize = trackers.iter().map(|t| t.in_flight()).sum();
                    outage::report(
                        &self.outage,
                        &self.stats,
                        Some(format!(
                            "the cluster has not answered for {} s: {waiting} runs of records \
                         sent before a revoke are not acknowledged",
                            SILENT.as_secs()
                        )),
                    );
                }
            });
            store(consumer, &self.trackers, &self.input);
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "commit on revoke");
            }
            let mut all = self.trackers.lock().unwrap_or_else(PoisonError::into_inner);
            for key in &revoked {
                all.remove(key);
            }
            tracing::info!(partitions = revoked.len(), "partitions revoked");
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => {
                tracing::debug!(partitions = offsets.count(), "offsets committed")
            }
            Err(e) => tracing::warn!(error = %e, "offset commit failed"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            // One stopped here and revoked (see `rewind`) starts afresh when it comes back.
            let _ = consumer.resume(partitions);
            self.stats.assignments.fetch_add(1, Ordering::Relaxed);
            self.stats.ready.store(true, Ordering::Relaxed);
            tracing::info!(partitions = partitions.count(), "partitions assigned");
            if self.stats.set_problem("consumer", None).is_some() {
                tracing::info!("the input's new consumer is a member of the group again");
            }
            self.assigned.store(true, Ordering::Release);
            *self
                .assigned_as
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = fence::member_id(consumer.client());
        }
    }
}

/// Waits until nothing is in flight on these partitions, or `deadline` passes; calls
/// `settle` between two looks.
fn drain(trackers: &[Arc<PartitionTracker>], deadline: Instant, settle: &mut dyn FnMut()) {
    while trackers.iter().any(|t| t.in_flight() > 0) && Instant::now() < deadline {
        settle();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Stores the committable offset of every tracked partition.
fn store(consumer: &BaseConsumer<SourceContext>, trackers: &Trackers, input: &str) {
    let mut tpl = TopicPartitionList::new();
    {
        let all = trackers.lock().unwrap_or_else(PoisonError::into_inner);
        for ((topic, partition), tracker) in all.iter() {
            if let Some(offset) = tracker.committable() {
                // Cannot fail for a valid offset.
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(offset));
            }
        }
    }
    if tpl.count() > 0
        && let Err(e) = consumer.store_offsets(&tpl)
    {
        tracing::warn!(input, error = %e, "storing offsets");
    }
}

/// Consumes topics as a member of a consumer group.
pub struct KafkaSource {
    name: String,
    consumer: BaseConsumer<SourceContext>,
    trackers: Trackers,
    /// The subscribed topics.
    topics: Vec<String>,
    /// Whether one topic is consumed, so a partition number alone names a partition.
    single_topic: bool,
    /// Partitions stopped at a record that could not be written.
    rewinds: Mutex<Rewinds>,
    /// For a consumer that replaced a failed one, until it is given partitions: since
    /// when it has waited for them with the cluster answering, and the input's count of
    /// assignments when it started.
    replacing: Cell<Option<(Instant, u64)>>,
    /// The consumer group.
    group: String,
}

impl KafkaSource {
    /// Joins `group` and subscribes to `topics`; with `transactions`, exactly-once: it
    /// reads only committed records and commits its offsets in those transactions.
    pub fn new(
        name: &str,
        (bootstrap, options): (&str, &BTreeMap<String, String>),
        topics: &[String],
        group: &str,
        stats: Arc<InputStats>,
        (transactions, outage): (Option<Shared>, Arc<Mutex<Outage>>),
    ) -> anyhow::Result<Self> {
        let mut config = super::consumer_config(bootstrap, group, options);
        if transactions.is_some() {
            // After the cluster's options: these two are what exactly-once is made of.
            config
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed");
        }
        let trackers: Trackers = Arc::default();
        let replacing = stats
            .has_problem("consumer")
            .then(|| (Instant::now(), stats.assignments.load(Ordering::Relaxed)));
        let consumer: BaseConsumer<SourceContext> = config
            .create_with_context(SourceContext {
                input: name.to_owned(),
                trackers: Arc::clone(&trackers),
                revoked: AtomicBool::new(false),
                assigned: AtomicBool::new(false),
                stats,
                outage,
                transactions,
                retired: AtomicBool::new(false),
                assigned_as: Mutex::default(),
                rejoined: AtomicBool::new(false),
            })
            .with_context(|| format!("input `{name}`: cannot create a Kafka consumer"))?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .with_context(|| format!("input `{name}`: cannot subscribe to {topics:?}"))?;
        Ok(KafkaSource {
            name: name.to_owned(),
            consumer,
            trackers,
            single_topic: topics.len() == 1,
            rewinds: Mutex::default(),
            replacing: Cell::new(replacing),
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        })
    }

    /// Waits up to `wait` for a first message, then takes whatever else is already
    /// fetched, up to `max`: batches form from what is queued, never by waiting to fill.
    ///
    /// Messages are tracked only once the batch is complete: a revoke during the gathering
    /// then waits only for work already handed out, and what was polled from the revoked
    /// partitions is dropped for their next owner to read.
    pub fn poll_batch(&self, max: usize, wait: Duration) -> Vec<KafkaMessage<'_>> {
        let context = self.consumer.context();
        context.revoked.store(false, Ordering::Release);
        let mut polled = Vec::new();
        let mut timeout = wait;
        while polled.len() < max {
            match self.consumer.poll(timeout) {
                Some(Ok(message)) => polled.push(message),
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
                ))) => self.check_topics(),
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    // The input replaces this consumer (see `KafkaSource::failed`).
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None => break,
            }
            timeout = Duration::ZERO;
        }
        // A missing topic may have appeared: look again when partitions or messages came.
        if (context.assigned.swap(false, Ordering::AcqRel) || !polled.is_empty())
            && context.stats.has_problem("topics")
        {
            self.check_topics();
        }
        {
            // What was polled from a stopped partition is read again once it resumes.
            let rewinds = self.rewinds.lock().unwrap_or_else(PoisonError::into_inner);
            polled.retain(|m| !rewinds.holds(m.topic(), m.partition()));
        }
        if context.revoked.load(Ordering::Acquire) {
            match self.consumer.assignment() {
                Ok(assigned) => {
                    let owned: HashSet<(String, i32)> = assigned
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition()))
                        .collect();
                    polled.retain(|m| owned.contains(&(m.topic().to_owned(), m.partition())));
                }
                Err(e) => tracing::warn!(error = %e, "reading the assignment"),
            }
        }
        // Consecutive messages of one partition form a run that shares one acknowledgement
        // (see `PartitionTracker::begin_run`), and its tracker is looked up once.
        let same_partition = |a: &BorrowedMessage<'_>, b: &BorrowedMessage<'_>| {
            a.partition() == b.partition() && (self.single_topic || a.topic() == b.topic())
        };
        let mut runs = Vec::new();
        let mut start = 0;
        while start < polled.len() {
            let first = &polled[start];
            let end = polled[start..]
                .iter()
                .position(|m| !same_partition(first, m))
                .map_or(polled.len(), |n| start + n);
            let last = &polled[end - 1];
            runs.push((
                end - start,
                self.tracker(first).begin_run(first.offset(), last.offset()),
            ));
            start = end;
        }
        let mut batch = Vec::with_capacity(polled.len());
        let mut polled = polled.into_iter();
        for (len, ack) in runs {
            batch.extend(polled.by_ref().take(len).map(|message| KafkaMessage {
                message,
                ack: ack.clone(),
            }));
        }
        batch
    }

    /// A subscribed topic does not exist (auto-creation off, or a wrong name): say which,
    /// once per change, and keep `/health/ready` red until it appears; say once when every
    /// topic is there again. The consumer keeps its subscription and picks a topic up when
    /// it is created.
    fn check_topics(&self) {
        let missing: Vec<&str> = self
            .topics
            .iter()
            .filter(|topic| {
                self.consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(5))
                    .is_ok_and(|m| {
                        m.topics()
                            .iter()
                            .all(|t| t.error().is_some() || t.partitions().is_empty())
                    })
            })
            .map(String::as_str)
            .collect();
        let context = self.consumer.context();
        if missing.is_empty() {
            if let Some(was) = context.stats.set_problem("topics", None) {
                tracing::info!(was = %was, "subscribed topics exist now");
            }
            return;
        }
        let names: Vec<String> = missing.iter().map(|t| format!("`{t}`")).collect();
        let problem = format!(
            "topic {} does not exist on the broker (its name is wrong, or automatic topic \
             creation is off); waiting for it",
            names.join(", ")
        );
        if context
            .stats
            .set_problem("topics", Some(problem.clone()))
            .as_ref()
            != Some(&problem)
        {
            tracing::warn!("{problem}");
        }
    }

    fn tracker(&self, message: &BorrowedMessage<'_>) -> Arc<PartitionTracker> {
        let mut all = self.trackers.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            all.entry((message.topic().to_owned(), message.partition()))
                .or_default(),
        )
    }

    /// Stores the offsets that became committable; stops the partitions where a record
    /// could not be written, and reads them again from there when their time comes.
    pub fn store_progress(&self) {
        self.rewinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .watch(
                &self.consumer,
                &self.trackers,
                (&self.name, &self.consumer.context().stats),
            );
        store(&self.consumer, &self.trackers, &self.name);
    }

    /// Waits (up to `timeout`) for in-flight messages, calling `settle` meanwhile (it
    /// dead-letters records refused during the wait), stores and commits their offsets, and
    /// leaves the group.
    pub fn close(&self, timeout: Duration, mut settle: impl FnMut()) -> anyhow::Result<()> {
        if self.consumer.context().transactions.is_some() {
            let ended = self.finish_transaction();
            self.consumer.unsubscribe();
            return ended;
        }
        let deadline = Instant::now() + timeout;
        let trackers: Vec<_> = self
            .trackers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        drain(&trackers, deadline, &mut settle);
        self.store_progress();
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Why the consumer failed for good, if it did: it can neither fetch nor commit any
    /// more, and must be replaced by a new one.
    ///
    /// An error instead when another instance with this one's `group.instance.id` fenced
    /// it: a new consumer would fence that one in turn, for ever. A static member fenced by
    /// its own rejoin is replaced; which it was, the member id tells (see
    /// [`super::fence`]), or for a consumer never given partitions, whether librdkafka
    /// said it gave the membership up.
    pub fn failed(&self) -> Option<anyhow::Result<String>> {
        if let Some(why) = self.not_joining() {
            return Some(Ok(why));
        }
        let (code, why) = self.consumer.client().fatal_error()?;
        if code == RDKafkaErrorCode::FencedInstanceId {
            let context = self.consumer.context();
            let assigned_as = context
                .assigned_as
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let now = fence::member_id(self.consumer.client());
            let by_itself = fence::fenced_by_itself(assigned_as.as_deref(), now.as_deref())
                .unwrap_or_else(|| context.rejoined.load(Ordering::Acquire));
            tracing::info!(
                assigned_as = assigned_as.as_deref().unwrap_or("(never assigned)"),
                now = now.as_deref().unwrap_or("(none)"),
                by_itself,
                "static member fenced; its member id when last assigned, and now"
            );
            if !by_itself {
                return Some(Err(anyhow::anyhow!(
                    "input `{}`: another instance took this one's place in the group: {why}",
                    self.name
                )));
            }
        }
        Some(Ok(why))
    }

    /// Why a consumer that replaced a failed one is given up in turn, if it is: it has
    /// waited [`JOIN_PATIENCE`] for partitions while the cluster answered.
    fn not_joining(&self) -> Option<String> {
        let (since, assignments) = self.replacing.get()?;
        let stats = &self.consumer.context().stats;
        if stats.assignments.load(Ordering::Relaxed) != assignments {
            self.replacing.set(None);
            return None;
        }
        if stats.has_problem("cluster") {
            self.replacing.set(Some((Instant::now(), assignments)));
            return None;
        }
        (since.elapsed() >= JOIN_PATIENCE).then(|| {
            format!(
                "the new consumer was not given partitions within {} s while the cluster \
                 answered ({})",
                JOIN_PATIENCE.as_secs(),
                fence::describe_group(self.consumer.client(), &self.group)
            )
        })
    }

    /// Lets go of a consumer that failed for good: closing it can take long (librdkafka
    /// waits on a group that no longer counts it), so that happens on a thread of its own,
    /// and its rebalances no longer touch the transactions or offsets its successor uses.
    pub fn retire(self) {
        self.consumer
            .context()
            .retired
            .store(true, Ordering::Release);
        let closing = std::thread::Builder::new()
            .name("retired consumer".to_owned())
            .spawn(move || drop(self));
        if let Err(e) = closing {
            tracing::warn!(error = %e, "no thread to close the failed consumer on");
        }
    }

    /// An exactly-once input's transactions.
    pub fn transactions(&self) -> Option<&Shared> {
        self.consumer.context().transactions.as_ref()
    }

    /// Ends an exactly-once input's open transaction (see [`transaction::Transactions::finish`]).
    pub fn finish_transaction(&self) -> anyhow::Result<()> {
        match self.transactions() {
            Some(transactions) => transaction::lock(transactions).finish(&self.consumer),
            None => Ok(()),
        }
    }
}

/// A consumed record and its acknowledgement.
pub struct KafkaMessage<'c> {
    message: BorrowedMessage<'c>,
    ack: Ack,
}

impl Incoming for KafkaMessage<'_> {
    fn origin(&self) -> Origin<'_> {
        Origin::Kafka {
            topic: self.message.topic(),
            partition: self.message.partition(),
            offset: self.message.offset(),
        }
    }

    fn key(&self) -> Option<&[u8]> {
        self.message.key()
    }

    fn payload(&self) -> Option<&[u8]> {
        self.message.payload()
    }

    fn headers(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.message
            .headers()
            .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
            .unwrap_or_default()
    }

    fn timestamp(&self) -> Option<i64> {
        self.message.timestamp().to_millis()
    }

    fn ack(&self) -> Option<&Ack> {
        Some(&self.ack)
    }
}
