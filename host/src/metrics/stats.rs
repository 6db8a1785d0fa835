//! The counters' types: histograms and the per-route, per-plugin, per-input and
//! per-output stats the pipeline updates and the renderer reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds, in seconds, of the plugin call latency buckets: from 1 µs, because a batch
/// through a light plugin takes a few microseconds.
pub(super) const LATENCY_BOUNDS: [f64; 17] = [
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.5,
];
/// Upper bounds of the batch size buckets.
pub(super) const BATCH_BOUNDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A histogram with fixed buckets, updated without locks.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus one for `+Inf`; not cumulative.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum of observations, in millionths of the unit (µs for seconds).
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(super) fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    /// How many observations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(super) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Per-route counters, shared by every input thread that runs the route.
#[derive(Debug)]
pub struct RouteStats {
    /// Messages that matched the route.
    pub received: AtomicU64,
    /// Records written to outputs (passes and emits).
    pub sent: AtomicU64,
    /// Messages dropped by a plugin.
    pub dropped: AtomicU64,
    /// Messages a plugin rejected.
    pub rejected: AtomicU64,
    /// Messages failed by a plugin error (timeout, trap, ...).
    pub failed: AtomicU64,
    /// Records written to the dead-letter output.
    pub dead_lettered: AtomicU64,
    /// Messages that stopped their input partition, to be read again.
    pub paused: AtomicU64,
    /// Messages per batch that matched the route.
    pub batch_size: Histogram,
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            received: AtomicU64::default(),
            sent: AtomicU64::default(),
            dropped: AtomicU64::default(),
            rejected: AtomicU64::default(),
            failed: AtomicU64::default(),
            dead_lettered: AtomicU64::default(),
            paused: AtomicU64::default(),
            batch_size: Histogram::new(&BATCH_BOUNDS),
        }
    }
}

impl RouteStats {
    /// Adds `n` to one of the counters.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Per-plugin counters of one route.
#[derive(Debug)]
pub struct PluginStats {
    /// Duration of each `process` call.
    pub latency: Histogram,
    /// Failed calls and messages, by error kind.
    pub(super) errors: Mutex<BTreeMap<&'static str, u64>>,
    /// The plugin's own counters (`counter(name, delta)` in the SDK), by name.
    pub(super) counters: Mutex<BTreeMap<String, u64>>,
    /// Instances (one per input thread running the route) whose circuit is open.
    pub(super) circuits_open: AtomicU64,
}

impl Default for PluginStats {
    fn default() -> Self {
        PluginStats {
            latency: Histogram::new(&LATENCY_BOUNDS),
            errors: Mutex::default(),
            counters: Mutex::default(),
            circuits_open: AtomicU64::default(),
        }
    }
}

impl PluginStats {
    /// Records how long one batch took through the plugin: encoding it, the call and
    /// reading the result.
    pub fn observe_call(&self, took: Duration) {
        self.latency.observe(took.as_secs_f64());
    }

    /// Adds what the plugin added to its own counters.
    pub fn add_counters(&self, deltas: Vec<(String, u64)>) {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, delta) in deltas {
            *counters.entry(name).or_default() += delta;
        }
    }

    /// Counts an instance's circuit opening or closing.
    pub fn circuit(&self, change: crate::plugin::BreakerChange) {
        use crate::plugin::BreakerChange;
        match change {
            BreakerChange::Opened(..) => {
                self.circuits_open.fetch_add(1, Ordering::Relaxed);
            }
            BreakerChange::Reopened(..) => {}
            BreakerChange::Closed => {
                self.circuits_open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Instances whose circuit is open.
    pub fn circuits_open(&self) -> u64 {
        self.circuits_open.load(Ordering::Relaxed)
    }

    /// Counts `n` messages failed with error `kind`.
    pub fn error(&self, kind: &'static str, n: u64) {
        *self
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += n;
    }
}

/// Per-input state: readiness, and for Kafka inputs, lag and rebalances.
#[derive(Debug, Default)]
pub struct InputStats {
    /// Set once the input is connected: its socket open, or its consumer in the group.
    pub ready: AtomicBool,
    /// Partition assignments received (each one follows a rebalance of the group).
    pub assignments: AtomicU64,
    /// Consumer lag by (topic, partition), from librdkafka's statistics.
    pub lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// Why a connected input cannot flow, by what found it (`topics`: a subscribed topic
    /// that does not exist; `cluster`: no broker answers); set and cleared by the input,
    /// shown by `/health/ready`.
    problems: Mutex<BTreeMap<&'static str, String>>,
    /// A replying input's answers, by status, in the order of [`REPLY_STATUSES`].
    replies: [AtomicU64; REPLY_STATUSES.len()],
    /// Answers to requests sent again with a remembered id.
    pub duplicates: AtomicU64,
    /// Answers that found their client gone.
    pub unroutable: AtomicU64,
    /// Peers of a ZeroMQ input that disconnected (libzmq cuts off one that sends a message
    /// larger than `max_message_bytes`).
    pub disconnects: AtomicU64,
    /// An exactly-once input's transactions.
    pub transactions: TransactionStats,
}

/// Upper bounds, in seconds, of the transaction commit latency buckets.
pub(super) const COMMIT_BOUNDS: [f64; 12] = [
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// An exactly-once input's transactions: how many committed, how many aborted, and how
/// long committing took.
#[derive(Debug)]
pub struct TransactionStats {
    /// Set by an exactly-once input when it starts: only its series are shown.
    pub enabled: AtomicBool,
    /// Transactions committed.
    pub committed: AtomicU64,
    /// Transactions aborted (their records are read again).
    pub aborted: AtomicU64,
    /// From asking to commit until the broker has committed, offsets included.
    pub commit_seconds: Histogram,
}

impl Default for TransactionStats {
    fn default() -> Self {
        TransactionStats {
            enabled: AtomicBool::new(false),
            committed: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            commit_seconds: Histogram::new(&COMMIT_BOUNDS),
        }
    }
}

impl InputStats {
    /// Whether the input is connected and has no problem.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.problem().is_none()
    }

    /// The input's current problems, if any, in one line.
    pub fn problem(&self) -> Option<String> {
        let problems = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
        (!problems.is_empty()).then(|| problems.values().cloned().collect::<Vec<_>>().join("; "))
    }

    /// Whether the problem found by `source` is there.
    pub fn has_problem(&self, source: &'static str) -> bool {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(source)
    }

    /// Sets or clears the problem found by `source`; returns the one it replaces.
    pub fn set_problem(&self, source: &'static str, problem: Option<String>) -> Option<String> {
        let mut problems = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
        match problem {
            Some(problem) => problems.insert(source, problem),
            None => problems.remove(source),
        }
    }

    /// Counts one answer with `status` (one of [`REPLY_STATUSES`]).
    pub fn replied(&self, status: &'static str) {
        if let Some(i) = REPLY_STATUSES.iter().position(|s| *s == status) {
            self.replies[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The answers so far, by status; statuses never sent are left out.
    pub fn replies(&self) -> Vec<(&'static str, u64)> {
        REPLY_STATUSES
            .iter()
            .zip(&self.replies)
            .map(|(s, n)| (*s, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Replaces the lag figures.
    pub fn set_lag(&self, lag: BTreeMap<(String, i32), i64>) {
        *self.lag.lock().unwrap_or_else(PoisonError::into_inner) = lag;
    }
}

/// The statuses of a replying input's answers: the gateway's JSON statuses, and `reply`
/// for a plugin's own answer.
pub const REPLY_STATUSES: [&str; 7] = [
    "ok", "rejected", "dropped", "failed", "timeout", "busy", "reply",
];

/// Per-output counters.
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Records the output wrote: acknowledged by the broker (Kafka), handed to libzmq
    /// (ZeroMQ).
    pub written: AtomicU64,
    /// Records a ZeroMQ output dropped at its high-water mark (PUB).
    pub dropped: AtomicU64,
    /// Records the output could not deliver, by error (the broker's error name).
    pub(super) errors: Mutex<BTreeMap<String, u64>>,
}

impl OutputStats {
    /// Counts one record the output could not deliver, with `error`.
    pub fn error(&self, error: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        match errors.get_mut(error) {
            Some(n) => *n += 1,
            None => {
                errors.insert(error.to_owned(), 1);
            }
        }
    }
}
