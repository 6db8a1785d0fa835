//! A route's plugin chain, one plugin at a time: calling a plugin with a batch, splitting a
//! failed call to find the messages that fail alone, and telling the plugin's circuit
//! breaker how the batch fared.

use std::time::Instant;

use switchyard_abi::{BatchWriter, Outcome, Output};

use super::Incoming;
use crate::metrics::PluginStats;
use crate::plugin::{BreakerChange, ErrorKind, PluginError, PluginInstance};

/// A message on its way through the chain: the input itself, or something a plugin emitted
/// (boxed, so the list of items a batch moves through the chain stays small).
pub(super) enum Item {
    Original,
    Emitted(Box<Output>),
}

/// How one message failed in a plugin.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) kind: &'static str,
    pub(super) message: String,
}

impl From<&PluginError> for Failure {
    fn from(e: &PluginError) -> Self {
        Failure {
            kind: e.kind().as_str(),
            message: e.to_string(),
        }
    }
}

/// A route's plugin in its chain: the route's name, the instance and its counters.
pub(super) type Stage<'a> = (&'a str, &'a mut PluginInstance, &'a PluginStats);

/// How a batch fared through a plugin, for its circuit breaker: `Some(true)` if any
/// message succeeded, `Some(false)` if every one failed, `None` if the plugin was not
/// called for it (its circuit open) or it was empty.
pub(super) fn fared(verdicts: &[Result<Outcome, Failure>]) -> Option<bool> {
    let not_called = verdicts
        .iter()
        .all(|v| matches!(v, Err(f) if f.kind == ErrorKind::Unavailable.as_str()));
    (!not_called).then(|| verdicts.iter().any(Result::is_ok))
}

/// Tells the stage's circuit breaker how a batch fared (see `plugin/breaker.rs`), and logs
/// and counts the change that makes, if any.
pub(super) fn breaker_record((route, plugin, stats): Stage<'_>, ok: bool) {
    let Some(change) = plugin.record_batch(ok) else {
        return;
    };
    let name = plugin.plugin().name();
    match change {
        BreakerChange::Opened(pause, failures) | BreakerChange::Reopened(pause, failures) => {
            tracing::warn!(
                route,
                plugin = name,
                failures,
                "every message of the plugin's last {failures} batches failed; it is not \
                 called for {} ms, and its messages fail as `unavailable` meanwhile",
                pause.as_millis()
            );
        }
        BreakerChange::Closed => tracing::info!(route, plugin = name, "plugin works again"),
    }
    stats.circuit(change);
}

/// Whether a failure of this kind fails every message of the call alike, so that calling
/// again in halves cannot single out culprits.
pub(super) fn whole_batch(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Init | ErrorKind::Unavailable)
}

/// Encodes `items` (of `batch`, from `input`) and calls `plugin` with them once; `None` when
/// every message passed.
pub(super) fn call<M: Incoming>(
    plugin: &mut PluginInstance,
    stats: &PluginStats,
    writer: &mut BatchWriter,
    input: &str,
    batch: &[M],
    items: &[(usize, Item)],
) -> Result<Option<Vec<Outcome>>, PluginError> {
    let started = Instant::now();
    writer.set_version(plugin.batch_version());
    writer.start(input);
    for (i, item) in items {
        let m = &batch[*i];
        match item {
            Item::Original => {
                writer.push(
                    &m.origin(),
                    m.key(),
                    m.timestamp(),
                    m.headers(),
                    m.payload(),
                );
            }
            Item::Emitted(o) => writer.push(
                &m.origin(),
                o.key.as_deref(),
                o.timestamp,
                o.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())),
                o.payload.as_deref(),
            ),
        }
    }
    let result = plugin.process_unless_all_pass(writer);
    stats.observe_call(started.elapsed());
    let counted = plugin.take_counters();
    if !counted.is_empty() {
        stats.add_counters(counted);
    }
    result
}

/// After a call with `items` failed: each half is called again (on the instance rebuilt
/// after the failure), and a half that fails is split again, until every message has its
/// own outcome or fails alone. One looping message among 256 costs about nine deadlines
/// instead of condemning 255 others; messages that pass keep their order.
pub(super) fn isolate<M: Incoming>(
    plugin: &mut PluginInstance,
    stats: &PluginStats,
    writer: &mut BatchWriter,
    input: &str,
    batch: &[M],
    items: &[(usize, Item)],
) -> Vec<Result<Outcome, Failure>> {
    let (left, right) = items.split_at(items.len() / 2);
    let mut verdicts = Vec::with_capacity(items.len());
    for half in [left, right] {
        match call(plugin, stats, writer, input, batch, half) {
            Ok(None) => verdicts.extend(half.iter().map(|_| Ok(Outcome::Pass))),
            Ok(Some(outcomes)) => verdicts.extend(outcomes.into_iter().map(Ok)),
            Err(e) if half.len() == 1 || whole_batch(e.kind()) => {
                let failure = Failure::from(&e);
                verdicts.extend(half.iter().map(|_| Err(failure.clone())));
            }
            Err(_) => verdicts.extend(isolate(plugin, stats, writer, input, batch, half)),
        }
    }
    verdicts
}
