//! How a route hands its records to its outputs: to every output of a list, with the
//! route's own acknowledgement per input run, or, for messages passed unchanged to one
//! ZeroMQ output, as the frames they came in.

use std::sync::Arc;

use super::{Ack, Forward, Incoming, OutRecord, Refused, Returns, Sink};
use crate::metrics::RouteStats;

/// Forwards the frames gathered in `forwards` to `sink`, as one run, leaving it empty.
pub(super) fn forward(sink: &Arc<dyn Sink>, forwards: &mut Vec<Forward>, stats: &RouteStats) {
    if forwards.is_empty() {
        return;
    }
    let count = forwards.len() as u64;
    match sink.forward(forwards) {
        Ok(()) => RouteStats::add(&stats.sent, count),
        Err(e) => tracing::error!("{e:#}"),
    }
}

/// Owned headers, borrowed as a record holds them.
pub(super) fn borrow_headers(headers: &[switchyard_abi::Header]) -> Vec<(&str, Option<&[u8]>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_deref()))
        .collect()
}

/// The input message itself as a record, with `headers` (its own, possibly extended).
pub(super) fn original<'a, M: Incoming>(
    m: &'a M,
    headers: &'a [(&'a str, Option<&'a [u8]>)],
) -> OutRecord<'a> {
    OutRecord {
        key: m.key(),
        payload: m.payload(),
        headers,
        partition: None,
        timestamp: m.timestamp(),
        frame: m.frame(),
    }
}

/// The route's own acknowledgement for the input run `ack` belongs to. Messages of one run
/// are consecutive, so only the last child is looked at: a run met again later (rare) gets
/// a second child, which completes the same run just as well.
pub(super) fn child_ack<'a>(
    children: &'a mut Vec<(Ack, Ack)>,
    ack: Option<&Ack>,
    returns: &Arc<Returns>,
) -> Option<&'a Ack> {
    let ack = ack?;
    if !children.last().is_some_and(|(input, _)| input.same(ack)) {
        children.push((ack.clone(), ack.child(returns)));
    }
    children.last().map(|(_, child)| child)
}

/// Sends `rec` to every sink; the first refusal for good, if any (the others are logged).
pub(super) fn send_all(
    sinks: &[Arc<dyn Sink>],
    rec: &OutRecord<'_>,
    ack: Option<&Ack>,
    stats: &RouteStats,
) -> Option<Refused> {
    let mut refused = None;
    for sink in sinks {
        match sink.send(rec, ack.cloned()) {
            Ok(()) => RouteStats::add(&stats.sent, 1),
            Err(e) => match e.downcast::<Refused>() {
                Ok(r) => refused = refused.or(Some(r)),
                Err(e) => tracing::error!("{e:#}"),
            },
        }
    }
    refused
}
