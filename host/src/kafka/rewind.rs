//! Partitions that stop at a record that could not be written: its delivery failed past
//! librdkafka's own retries (`message.timeout.ms`), its dead letter could not be written,
//! or an output refused it for good and its route has no dead-letter output
//! (`on_produce_error = "pause"`, or `on_plugin_error = "pause"` for a plugin that failed).
//!
//! Such a partition is paused; once nothing it sent is in flight any more, it is read
//! again from that record, after a pause that doubles with each attempt at the same
//! offset (1 s up to [`MAX_BACKOFF`]). The records after it that were written already are
//! written again (at-least-once), in their order. The input never commits past the
//! record, nothing waits for a restart, and the log and `/health/ready` say which
//! partitions are stopped where.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::source::Trackers;
use crate::metrics::InputStats;
use crate::pipeline::PartitionTracker;

/// The longest pause between two attempts at the same record.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long a seek may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

type Key = (String, i32);

/// The stopped partitions of one input.
#[derive(Debug, Default)]
pub(super) struct Rewinds {
    stopped: HashMap<Key, Stopped>,
    /// The offset each partition last stopped at and how many times in a row, for the
    /// backoff.
    attempts: HashMap<Key, (i64, u32)>,
}

#[derive(Debug)]
struct Stopped {
    /// The tracker of the reads that failed: a partition revoked meanwhile has another
    /// one, or none.
    tracker: Arc<PartitionTracker>,
    offset: i64,
    attempt: u32,
    /// When it may be read again, once nothing it sent is in flight.
    retry_at: Instant,
}

impl Rewinds {
    /// Whether messages polled from `topic`/`partition` are to be dropped: it is stopped,
    /// and will be read again from where it stopped.
    pub(super) fn holds(&self, topic: &str, partition: i32) -> bool {
        // Looked up without building a key: this runs for every message polled.
        !self.stopped.is_empty()
            && self
                .stopped
                .keys()
                .any(|(t, p)| *p == partition && t == topic)
    }

    /// Stops the partitions whose tracker saw a failure, reads again those whose time has
    /// come, and says which are stopped in `stats`.
    pub(super) fn watch<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        trackers: &Trackers,
        (input, stats): (&str, &InputStats),
    ) {
        let current: Vec<(Key, Arc<PartitionTracker>)> = {
            let all = trackers.lock().unwrap_or_else(PoisonError::into_inner);
            // The common case, every partition flowing, costs one look at each.
            if self.stopped.is_empty()
                && self.attempts.is_empty()
                && all.values().all(|t| t.failed_at().is_none())
            {
                return;
            }
            all.iter()
                .map(|(k, t)| (k.clone(), Arc::clone(t)))
                .collect()
        };
        let had = !self.attempts.is_empty();
        for (key, tracker) in &current {
            if let Some(offset) = tracker.failed_at()
                && !self
                    .stopped
                    .get(key)
                    .is_some_and(|s| Arc::ptr_eq(&s.tracker, tracker))
            {
                self.stop(consumer, key, tracker, offset, input);
            }
        }
        // A partition revoked meanwhile is read by its next owner from the committed
        // offset, which is this one's at most.
        self.stopped.retain(|key, s| {
            current
                .iter()
                .any(|(k, t)| k == key && Arc::ptr_eq(t, &s.tracker))
        });
        let now = Instant::now();
        let due: Vec<Key> = self
            .stopped
            .iter()
            .filter(|(_, s)| s.tracker.in_flight() == 0 && now >= s.retry_at)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.read_again(consumer, trackers, &key, input);
        }
        self.forget_mended(&current);
        if had || !self.attempts.is_empty() {
            stats.set_problem("stopped", self.problem());
        }
    }

    fn stop<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        key: &Key,
        tracker: &Arc<PartitionTracker>,
        offset: i64,
        input: &str,
    ) {
        let attempt = match self.attempts.get(key) {
            Some(&(at, n)) if at == offset => n + 1,
            _ => 1,
        };
        self.attempts.insert(key.clone(), (offset, attempt));
        let backoff = backoff(attempt);
        let (topic, partition) = key;
        if let Err(e) = consumer.pause(&one(topic, *partition, Offset::Invalid)) {
            tracing::warn!(input, topic, partition, error = %e, "pausing a stopped partition");
        }
        let say = format!(
            "partition {topic}/{partition} stops at offset {offset}: a record read there \
             could not be written (see above); it is read again from there in {} s \
             (attempt {attempt})",
            backoff.as_secs()
        );
        // The first stop at an offset is news; the next ones are its retries.
        if attempt == 1 {
            tracing::warn!(input, "{say}");
        } else {
            tracing::info!(input, "{say}");
        }
        self.stopped.insert(
            key.clone(),
            Stopped {
                tracker: Arc::clone(tracker),
                offset,
                attempt,
                retry_at: Instant::now() + backoff,
            },
        );
    }

    /// Seeks a stopped partition back to where it stopped and lets it be read again, with
    /// a fresh tracker.
    fn read_again<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        trackers: &Trackers,
        key: &Key,
        input: &str,
    ) {
        let Some(stopped) = self.stopped.get_mut(key) else {
            return;
        };
        let (topic, partition) = key;
        if let Err(e) = consumer.seek(
            topic,
            *partition,
            Offset::Offset(stopped.offset),
            SEEK_TIMEOUT,
        ) {
            tracing::warn!(input, topic, partition, error = %e, "seeking a stopped partition back; tried again later");
            stopped.retry_at = Instant::now() + backoff(stopped.attempt);
            return;
        }
        {
            let mut all = trackers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(tracker) = all.get_mut(key)
                && Arc::ptr_eq(tracker, &stopped.tracker)
            {
                *tracker = PartitionTracker::new();
            }
        }
        if let Err(e) = consumer.resume(&one(topic, *partition, Offset::Invalid)) {
            tracing::warn!(input, topic, partition, error = %e, "resuming a stopped partition");
        }
        tracing::info!(
            input,
            "partition {topic}/{partition} is read again from offset {} (attempt {})",
            stopped.offset,
            stopped.attempt
        );
        self.stopped.remove(key);
    }

    /// Forgets the attempts at an offset once its partition committed past it, or went to
    /// another member.
    fn forget_mended(&mut self, current: &[(Key, Arc<PartitionTracker>)]) {
        if self.attempts.is_empty() {
            return;
        }
        self.attempts.retain(|key, (offset, _)| {
            current
                .iter()
                .find(|(k, _)| k == key)
                .is_some_and(|(_, t)| {
                    t.committable()
                        .is_none_or(|committable| committable <= *offset)
                })
        });
    }

    /// What `/health/ready` says: every partition stopped, or read again but not yet
    /// past where it stopped.
    fn problem(&self) -> Option<String> {
        if self.attempts.is_empty() {
            return None;
        }
        let mut partitions: Vec<String> = self
            .attempts
            .iter()
            .map(|((topic, partition), (offset, attempt))| {
                format!("{topic}/{partition} at offset {offset} (attempt {attempt})")
            })
            .collect();
        partitions.sort();
        Some(format!(
            "stopped at a record that could not be written (see the log), read again from \
             there with a growing pause: {}",
            partitions.join(", ")
        ))
    }
}

/// The pause before the `attempt`-th reading of a stopped partition: 1 s, doubling, at most
/// [`MAX_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}

fn one(topic: &str, partition: i32, offset: Offset) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    // Cannot fail for a valid partition.
    let _ = tpl.add_partition_offset(topic, partition, offset);
    tpl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_bound() {
        let secs: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
