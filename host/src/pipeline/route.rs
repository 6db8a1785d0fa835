//! One route on one input thread: its `when` predicates, its plugin chain, and applying
//! outcomes: `pass` to `to`, `emit` to the default outputs or declared destinations, `drop`
//! counted, `reject` and every plugin failure to the dead-letter output with context.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use switchyard_abi::{BatchWriter, Origin, Outcome};

use super::chain::{Failure, Item, breaker_record, call, fared, isolate, whole_batch};
use super::send::{borrow_headers, child_ack, forward, original, send_all};
use super::{Ack, Forward, Incoming, OutRecord, Refused, Returned, Returns, Sink};
use crate::config::When;
use crate::metrics::{PluginStats, RouteStats};
use crate::plugin::{PluginError, PluginInstance};

/// Everything a route needs, shared by the input threads that run it.
#[derive(Clone)]
pub struct RouteSpec {
    /// The route's name.
    pub name: String,
    /// Predicates a message must match.
    pub when: When,
    /// Outputs for `pass` and destination-less emits.
    pub to: Vec<Arc<dyn Sink>>,
    /// Declared destinations.
    pub destinations: HashMap<String, Arc<dyn Sink>>,
    /// The dead-letter output.
    pub dead_letter: Option<Arc<dyn Sink>>,
    /// Counters.
    pub stats: Arc<RouteStats>,
    /// Whether a plugin's reply goes out as soon as it is given, before the request's
    /// records are acknowledged (`reply_when = "immediate"`).
    pub reply_now: bool,
    /// Without a dead-letter output: whether a record an output refuses for good is
    /// dropped and counted (`on_produce_error = "drop"`), rather than stopping its input
    /// partition there.
    pub drop_refused: bool,
    /// Whether a message whose plugin failed stops its input partition there, to be read
    /// again (`on_plugin_error = "pause"`), rather than going to the dead-letter output.
    pub pause_on_plugin_error: bool,
}

/// Why a message goes to the dead-letter output.
struct DeadLetter {
    plugin: String,
    hash: String,
    kind: &'static str,
    reason: String,
}

impl DeadLetter {
    /// Output `output` refused the record for good, for `reason`.
    fn produce(output: &str, reason: &str) -> Self {
        DeadLetter {
            plugin: String::new(),
            hash: String::new(),
            kind: "produce",
            reason: format!("output `{output}`: {reason}"),
        }
    }
}

/// A route with its own plugin instances, run by one input thread.
pub struct RouteRunner {
    spec: RouteSpec,
    plugins: Vec<(PluginInstance, Arc<PluginStats>)>,
    writer: BatchWriter,
    /// The run of frames on their way to a ZeroMQ output, its room kept from batch to batch.
    forwards: Vec<Forward>,
    /// Records this runner's outputs refused after accepting them, waiting to be
    /// dead-lettered by [`RouteRunner::settle_returns`].
    returns: Arc<Returns>,
}

impl RouteRunner {
    /// A runner for `spec` with this thread's plugin instances and their counters, in chain
    /// order.
    pub fn new(spec: RouteSpec, plugins: Vec<(PluginInstance, Arc<PluginStats>)>) -> Self {
        RouteRunner {
            spec,
            plugins,
            writer: BatchWriter::new(),
            forwards: Vec::new(),
            returns: Arc::default(),
        }
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Replaces each output for which `replace` gives another: an exactly-once input
    /// moves its routes' Kafka outputs into its transactions.
    pub fn replace_sinks(
        &mut self,
        mut replace: impl FnMut(&Arc<dyn Sink>) -> Option<Arc<dyn Sink>>,
    ) {
        let spec = &mut self.spec;
        let sinks = spec
            .to
            .iter_mut()
            .chain(spec.destinations.values_mut())
            .chain(spec.dead_letter.iter_mut());
        for sink in sinks {
            if let Some(other) = replace(sink) {
                *sink = other;
            }
        }
    }

    /// Runs a batch from `input` through the route. `last` says no other route reads the
    /// batch after this one: a message this route passes unchanged to its one ZeroMQ output
    /// is then forwarded as the frames it came in ([`Incoming::take_frames`]).
    pub fn process<M: Incoming>(&mut self, input: &str, batch: &mut [M], last: bool) {
        let stats = Arc::clone(&self.spec.stats);
        let mut items: Vec<(usize, Item)> = batch
            .iter()
            .enumerate()
            .filter(|(_, m)| matches(&self.spec.when, *m))
            .map(|(i, _)| (i, Item::Original))
            .collect();
        if items.is_empty() {
            return;
        }
        RouteStats::add(&stats.received, items.len() as u64);
        stats.batch_size.observe(items.len() as f64);
        // Messages bound for the dead-letter output, by index; the first reason wins.
        let mut dead: BTreeMap<usize, DeadLetter> = BTreeMap::new();

        let route = self.spec.name.as_str();
        for (plugin, plugin_stats) in &mut self.plugins {
            if items.is_empty() {
                break;
            }
            let compiled = plugin.plugin().clone();
            let blame = |kind: &'static str, reason: String| DeadLetter {
                plugin: compiled.name().to_owned(),
                hash: compiled.hash().to_owned(),
                kind,
                reason,
            };
            let verdicts = match call(plugin, plugin_stats, &mut self.writer, input, batch, &items)
            {
                // Every message passed: the items go on to the next plugin as they are.
                Ok(None) => {
                    breaker_record((route, plugin, plugin_stats), true);
                    continue;
                }
                Ok(Some(outcomes)) => outcomes.into_iter().map(Ok).collect(),
                Err(e) if items.len() > 1 && !whole_batch(e.kind()) => {
                    // Find the messages that fail on their own; the others go on.
                    tracing::warn!(
                        route,
                        plugin = compiled.name(),
                        kind = e.kind().as_str(),
                        messages = items.len(),
                        "{e}; calling again in halves to find the messages that fail"
                    );
                    isolate(plugin, plugin_stats, &mut self.writer, input, batch, &items)
                }
                Err(e) => vec![Err(Failure::from(&e)); items.len()],
            };
            if let Some(ok) = fared(&verdicts) {
                breaker_record((route, plugin, plugin_stats), ok);
            }
            let mut next = Vec::with_capacity(items.len());
            for ((i, item), verdict) in items.into_iter().zip(verdicts) {
                match verdict {
                    Ok(Outcome::Pass) => next.push((i, item)),
                    Ok(Outcome::Drop) => {
                        RouteStats::add(&stats.dropped, 1);
                        if let Some(request) = batch[i].ack().and_then(Ack::replying) {
                            request.dropped();
                        }
                    }
                    Ok(Outcome::Emit(outputs)) => {
                        next.extend(outputs.into_iter().map(|o| (i, Item::Emitted(Box::new(o)))));
                    }
                    Ok(Outcome::Reply(reply)) => match batch[i].ack().and_then(Ack::replying) {
                        Some(request) => {
                            request.replied(reply.payload, reply.headers, self.spec.reply_now);
                            next.extend(
                                reply
                                    .emit
                                    .into_iter()
                                    .map(|o| (i, Item::Emitted(Box::new(o)))),
                            );
                        }
                        None => {
                            let message = "the plugin replied to a message no client waits for: \
                                           only a ROUTER input with `reply = \"ack\"` takes replies";
                            tracing::warn!(
                                route,
                                plugin = compiled.name(),
                                kind = "reply",
                                "{message}"
                            );
                            RouteStats::add(&stats.failed, 1);
                            plugin_stats.error("reply", 1);
                            dead.entry(i)
                                .or_insert_with(|| blame("reply", message.to_owned()));
                        }
                    },
                    Ok(Outcome::Reject(reason)) => {
                        RouteStats::add(&stats.rejected, 1);
                        dead.entry(i).or_insert_with(|| blame("reject", reason));
                    }
                    Err(Failure { kind, message }) => {
                        tracing::warn!(route, plugin = compiled.name(), kind, "{message}");
                        RouteStats::add(&stats.failed, 1);
                        plugin_stats.error(kind, 1);
                        dead.entry(i).or_insert_with(|| blame(kind, message));
                    }
                }
            }
            items = next;
        }

        let (last_plugin, last_hash) = self
            .plugins
            .last()
            .map(|(p, _)| (p.plugin().name().to_owned(), p.plugin().hash().to_owned()))
            .unwrap_or_default();
        // The route's own acknowledgement per input run, so that a record refused later
        // comes back here; and records refused at once, by message.
        let mut children: Vec<(Ack, Ack)> = Vec::new();
        let mut refused: Vec<(usize, Refused)> = Vec::new();
        let mut stops = self.stops(batch, &dead);
        // Without a dead-letter output, a record refused at once stops its partition
        // (`on_produce_error = "pause"`): nothing after it is written ahead of it.
        let refusal_stops = self.spec.dead_letter.is_none() && !self.spec.drop_refused;
        // Messages passed unchanged, on their way to the one output as the frames they
        // came in; sent before anything else is, to keep the order.
        let forward_to = match &self.spec.to[..] {
            [sink] if last && sink.forwards_frames() => Some(Arc::clone(sink)),
            _ => None,
        };
        let mut forwards = std::mem::take(&mut self.forwards);
        for (i, item) in items {
            if dead.contains_key(&i) || stopped_before(&stops, i, batch) {
                continue;
            }
            let ack = child_ack(&mut children, batch[i].ack(), &self.returns);
            if let (Item::Original, Some(_)) = (&item, &forward_to)
                && let Some(frames) = batch[i].take_frames()
            {
                forwards.push(Forward {
                    frames,
                    ack: ack.cloned(),
                });
                continue;
            }
            if let Some(sink) = &forward_to {
                forward(sink, &mut forwards, &stats);
            }
            let m = &batch[i];
            let mut send = |sinks: &[Arc<dyn Sink>], rec: &OutRecord<'_>| {
                if let Some(r) = send_all(sinks, rec, ack, &stats) {
                    refused.push((i, r));
                }
            };
            match item {
                Item::Original => {
                    let headers = m.headers();
                    send(&self.spec.to, &original(m, &headers));
                }
                Item::Emitted(o) => {
                    let headers = borrow_headers(&o.headers);
                    let rec = OutRecord {
                        key: o.key.as_deref(),
                        payload: o.payload.as_deref(),
                        headers: &headers,
                        partition: o.partition,
                        timestamp: o.timestamp,
                        frame: None,
                    };
                    match &o.destination {
                        None => send(&self.spec.to, &rec),
                        Some(d) => match self.spec.destinations.get(d) {
                            Some(sink) => send(std::slice::from_ref(sink), &rec),
                            None => {
                                RouteStats::add(&stats.failed, 1);
                                if let Some((_, last)) = self.plugins.last() {
                                    last.error("destination", 1);
                                }
                                dead.entry(i).or_insert(DeadLetter {
                                    plugin: last_plugin.clone(),
                                    hash: last_hash.clone(),
                                    kind: "destination",
                                    reason: PluginError::Destination(d.clone()).to_string(),
                                });
                            }
                        },
                    }
                }
            }
            if refusal_stops
                && refused.last().is_some_and(|(j, _)| *j == i)
                && first_stop(&stops, batch, i)
            {
                stops.push(i);
            }
        }
        if let Some(sink) = &forward_to {
            forward(sink, &mut forwards, &stats);
        }
        self.forwards = forwards;

        drop(children);
        for (i, why) in dead {
            if !stopped_before(&stops, i, batch) {
                self.dead_letter(&batch[i], &why);
            }
        }
        for (i, refusal) in refused {
            self.dead_letter(
                &batch[i],
                &DeadLetter::produce(&refusal.output, &refusal.reason),
            );
        }
    }

    /// With `on_plugin_error = "pause"`, the first message of each input partition whose
    /// plugin failed, by index: its partition stops there, and the messages after it are
    /// read again with it, so none of them is written (or dead-lettered) ahead of it.
    fn stops<M: Incoming>(&self, batch: &[M], dead: &BTreeMap<usize, DeadLetter>) -> Vec<usize> {
        if !self.spec.pause_on_plugin_error {
            return Vec::new();
        }
        let mut stops = Vec::new();
        for (&i, why) in dead {
            if why.kind != "reject" && first_stop(&stops, batch, i) {
                stops.push(i);
            }
        }
        stops
    }

    /// Dead-letters the records this route's outputs refused after accepting them (kind
    /// `produce`, with the output and the broker's reason); each one's input run completes
    /// once its dead letter is delivered. Called by the input's thread between batches.
    pub fn settle_returns(&mut self) {
        for returned in self.returns.take() {
            let Returned {
                output,
                reason,
                key,
                payload,
                mut headers,
                ack,
            } = returned;
            let why = DeadLetter::produce(&output, &reason);
            if let Some(request) = ack.replying() {
                request.failed(why.kind, &why.reason);
            }
            let Some(sink) = &self.spec.dead_letter else {
                self.refused_without_dead_letter(None, &why, &ack);
                continue;
            };
            headers.extend(
                self.context_headers(&why, ("", String::new(), String::new()))
                    .into_iter()
                    .map(|(n, v)| (n.to_owned(), Some(v))),
            );
            let headers = borrow_headers(&headers);
            let rec = OutRecord {
                key: key.as_deref(),
                payload: payload.as_deref(),
                headers: &headers,
                partition: None,
                timestamp: None,
                frame: None,
            };
            // The dead letter carries the input's acknowledgement itself: if it is refused
            // too, the run fails there instead of coming back here again.
            match sink.send(&rec, Some(ack.parent().for_dead_letter())) {
                Ok(()) => RouteStats::add(&self.spec.stats.dead_lettered, 1),
                Err(e) => {
                    tracing::error!(route = %self.spec.name, "dead letter not written: {e:#}");
                    ack.fail_with("dead_letter", || format!("dead letter not written: {e:#}"));
                }
            }
        }
    }

    /// The headers a dead letter carries besides the message's own; `origin` is the input
    /// topic (or endpoint), partition and offset, as far as they are known.
    fn context_headers(
        &self,
        why: &DeadLetter,
        origin: (&str, String, String),
    ) -> Vec<(&'static str, Vec<u8>)> {
        let (topic, partition, offset) = origin;
        vec![
            ("switchyard-route", self.spec.name.clone().into_bytes()),
            ("switchyard-plugin", why.plugin.clone().into_bytes()),
            ("switchyard-plugin-hash", why.hash.clone().into_bytes()),
            ("switchyard-error-kind", why.kind.as_bytes().to_vec()),
            ("switchyard-reason", why.reason.clone().into_bytes()),
            ("switchyard-origin-topic", topic.as_bytes().to_vec()),
            ("switchyard-origin-partition", partition.into_bytes()),
            ("switchyard-origin-offset", offset.into_bytes()),
        ]
    }

    /// A record refused for good by an output of a route without a dead-letter output:
    /// dropped and counted with `on_produce_error = "drop"`; otherwise its input partition
    /// stops there and reads it again later (`"pause"`, the default).
    fn refused_without_dead_letter(&self, at: Option<i64>, why: &DeadLetter, ack: &Ack) {
        let route = &self.spec.name;
        if self.spec.drop_refused {
            RouteStats::add(&self.spec.stats.dropped, 1);
            tracing::warn!(%route, reason = %why.reason, "a record was refused for good and the route has no dead_letter output; it is dropped (on_produce_error = \"drop\")");
        } else {
            RouteStats::add(&self.spec.stats.paused, 1);
            tracing::error!(%route, reason = %why.reason, "a record was refused for good and the route has no dead_letter output; its partition stops there and reads it again later (on_produce_error = \"pause\")");
            fail(at, ack);
        }
    }

    /// Writes the original message, with context headers, to the dead-letter output.
    fn dead_letter<M: Incoming>(&self, m: &M, why: &DeadLetter) {
        let stats = &self.spec.stats;
        if self.spec.pause_on_plugin_error
            && !matches!(why.kind, "reject" | "produce")
            && let Some(ack) = m.ack()
        {
            RouteStats::add(&stats.paused, 1);
            tracing::warn!(route = %self.spec.name, plugin = %why.plugin, kind = why.kind, reason = %why.reason, "a plugin failed on a message; its partition stops there and reads it again later (on_plugin_error = \"pause\")");
            fail_message(m, ack);
            return;
        }
        if let Some(request) = m.ack().and_then(Ack::replying) {
            match why.kind {
                "reject" => request.rejected(&why.plugin, &why.reason),
                kind => request.failed(kind, &why.reason),
            }
        }
        let Some(sink) = &self.spec.dead_letter else {
            match m.ack() {
                Some(ack) if why.kind == "produce" => {
                    self.refused_without_dead_letter(offset(m), why, ack)
                }
                _ => {
                    tracing::warn!(route = %self.spec.name, kind = why.kind, reason = %why.reason, "message failed and the route has no dead_letter output; it is dropped");
                }
            }
            return;
        };
        let origin = m.origin();
        let origin = match &origin {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => (*topic, partition.to_string(), offset.to_string()),
            Origin::Zmq { endpoint, .. } => (*endpoint, String::new(), String::new()),
            Origin::None => ("", String::new(), String::new()),
        };
        let context = self.context_headers(why, origin);
        let mut headers = m.headers();
        headers.extend(context.iter().map(|(n, v)| (*n, Some(v.as_slice()))));
        match sink.send(&original(m, &headers), m.ack().map(Ack::for_dead_letter)) {
            Ok(()) => RouteStats::add(&stats.dead_lettered, 1),
            Err(e) => {
                // Never commit past a message that is neither delivered nor dead-lettered.
                tracing::error!(route = %self.spec.name, "dead letter not written; the input will not commit past this message: {e:#}");
                if let Some(ack) = m.ack() {
                    if let Some(request) = ack.replying() {
                        request.failed("dead_letter", &format!("dead letter not written: {e:#}"));
                    }
                    fail_message(m, ack);
                }
            }
        }
    }
}

/// The Kafka partition message `m` was read from, if it was.
fn partition<M: Incoming>(m: &M) -> Option<(&str, i32)> {
    match m.origin() {
        Origin::Kafka {
            topic, partition, ..
        } => Some((topic, partition)),
        _ => None,
    }
}

/// The Kafka offset message `m` was read at, if it was.
fn offset<M: Incoming>(m: &M) -> Option<i64> {
    match m.origin() {
        Origin::Kafka { offset, .. } => Some(offset),
        _ => None,
    }
}

/// Marks a run failed from its message at offset `at` on (from its start when `at` is not
/// known): its partition stops there.
fn fail(at: Option<i64>, ack: &Ack) {
    match at {
        Some(offset) => ack.fail_at(offset),
        None => ack.fail(),
    }
}

/// Marks `m`'s run failed from `m` on.
fn fail_message<M: Incoming>(m: &M, ack: &Ack) {
    fail(offset(m), ack);
}

/// Whether message `i` comes after a stop (see [`RouteRunner::stops`]) of its partition.
fn stopped_before<M: Incoming>(stops: &[usize], i: usize, batch: &[M]) -> bool {
    !stops.is_empty()
        && partition(&batch[i]).is_some_and(|p| {
            stops
                .iter()
                .any(|&at| at < i && partition(&batch[at]) == Some(p))
        })
}

/// Whether message `i` would be the first stop of its Kafka partition (see
/// [`RouteRunner::stops`]): it has one, and no earlier stop is of it. A message of no
/// partition never stops anything.
fn first_stop<M: Incoming>(stops: &[usize], batch: &[M], i: usize) -> bool {
    partition(&batch[i]).is_some_and(|p| !stops.iter().any(|&at| partition(&batch[at]) == Some(p)))
}

/// Whether a message matches every `when` predicate.
fn matches<M: Incoming>(when: &When, m: &M) -> bool {
    if let Some(topic) = &when.topic {
        let actual: &[u8] = match m.origin() {
            Origin::Kafka { topic, .. } => topic.as_bytes(),
            Origin::Zmq { topic, .. } => topic.unwrap_or_default(),
            Origin::None => b"",
        };
        if actual != topic.as_bytes() {
            return false;
        }
    }
    if let Some(prefix) = &when.key_prefix
        && !m.key().unwrap_or_default().starts_with(prefix.as_bytes())
    {
        return false;
    }
    if !when.header.is_empty() {
        let headers = m.headers();
        for (name, value) in &when.header {
            if !headers
                .iter()
                .any(|(n, v)| n == name && *v == Some(value.as_bytes()))
            {
                return false;
            }
        }
    }
    true
}
