//! An input's view of its cluster's outages: when no broker answers, or one holding
//! requests stays silent, it is said once in the log and in `/health/ready` while it lasts,
//! and once when the cluster has answered for a while again.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::statistics::Statistics;

use crate::metrics::InputStats;

/// How long a broker with requests waiting may stay silent before the input reports it. A
/// consumer's fetches are answered at least every `fetch.wait.max.ms` (500 ms by default).
pub(super) const SILENT: Duration = Duration::from_secs(5);

/// How long the cluster must answer before the end of an outage is announced. A broker
/// that comes back from a freeze often drops its connections a second later (requests timed
/// out meanwhile): that relapse belongs to the same outage and is not a new one.
const STABLE: Duration = Duration::from_secs(5);

/// An outage of the cluster, from the input's side: shared by the consumers an input has
/// in turn, so the one that replaces a failed consumer says when the outage is over.
#[derive(Debug, Default)]
pub struct Outage {
    /// When the outage began; `None` once its end is announced.
    since: Option<Instant>,
    /// When the cluster last came back (not announced until it has stayed back for
    /// [`STABLE`]).
    back_since: Option<Instant>,
}

/// Takes a consumer's `statistics`: an outage when no broker of the cluster answers, or one
/// that holds requests has been silent for [`SILENT`].
pub(super) fn watch(outage: &Mutex<Outage>, stats: &InputStats, statistics: &Statistics) {
    let brokers: Vec<_> = statistics
        .brokers
        .values()
        .filter(|b| b.source == "learned" || b.source == "configured")
        .collect();
    if brokers.is_empty() {
        return;
    }
    let problem = if !brokers.iter().any(|b| b.state == "UP") {
        let states: Vec<String> = brokers
            .iter()
            .map(|b| format!("{} {}", b.name, b.state))
            .collect();
        Some(format!(
            "no broker of the cluster answers ({})",
            states.join(", ")
        ))
    } else {
        brokers
            .iter()
            .find(|b| {
                b.state == "UP"
                    && b.waitresp_cnt > 0
                    && Duration::from_micros(u64::try_from(b.rxidle).unwrap_or(0)) >= SILENT
            })
            .map(|b| {
                format!(
                    "broker {} has not answered for {} s ({} requests waiting)",
                    b.name,
                    b.rxidle / 1_000_000,
                    b.waitresp_cnt
                )
            })
    };
    report(outage, stats, problem);
}

/// Takes what the cluster looks like now: `Some` problem while it does not answer. Said
/// once when the outage starts, in `/health/ready` while it lasts, and once the cluster
/// has answered for [`STABLE`].
pub(super) fn report(outage: &Mutex<Outage>, stats: &InputStats, problem: Option<String>) {
    let mut outage = outage.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    match (problem, stats.has_problem("cluster")) {
        (Some(problem), false) => {
            if outage.back_since.take().is_none() {
                tracing::warn!("{problem}; waiting for it");
                outage.since = Some(now);
            } else {
                tracing::debug!("{problem}: the outage goes on");
            }
            stats.set_problem("cluster", Some(problem));
        }
        (Some(problem), true) => {
            stats.set_problem("cluster", Some(problem));
        }
        (None, true) => {
            // Ready again at once; said in the log once it lasts.
            outage.back_since = Some(now);
            stats.set_problem("cluster", None);
        }
        (None, false) => {
            if let Some(back) = outage.back_since
                && back.elapsed() >= STABLE
            {
                let after_s = outage
                    .since
                    .take()
                    .map_or(0, |since| back.duration_since(since).as_secs());
                outage.back_since = None;
                tracing::info!(after_s, "the cluster answers again");
            }
        }
    }
}
