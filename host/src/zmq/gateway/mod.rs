//! The ZeroMQ gateway: a `router` input with `reply = "ack"` answers every request with one
//! JSON frame once every record it produced is acknowledged (dead letters included), or at
//! once when nothing needs acknowledging.
//!
//! - **Frames.** Whatever a request carries before its first empty frame (a REQ socket's
//!   delimiter, or a DEALER's `[request-id, "", payload]`) is echoed before the answer, so
//!   a REQ client, a plain DEALER and a pipelining DEALER with its own request ids all get
//!   the layout they sent.
//! - **Order.** Each client (peer identity) is answered in the order it sent: an answer
//!   that is ready waits for the earlier ones of the same client. Every request has the
//!   same timeout, so waiting never exceeds it.
//! - **Window.** A client with `max_in_flight` requests unanswered gets `busy` for the next
//!   one at once, which is not accepted: memory stays bounded by clients × window.
//! - **Retries.** With `dedup_window`, a request whose id was seen among the last N is
//!   answered with the first one's result (`"duplicate": true`) instead of being produced
//!   again; one still in flight is answered when it settles. A request whose first try
//!   failed is tried again. The window lives in memory: a restart forgets it.
//! - **Gone clients.** Answers are sent with `ZMQ_ROUTER_MANDATORY`: one for a client that
//!   has disconnected is counted (`switchyard_zmq_replies_unroutable_total`), and one for
//!   a client that does not read (its queue is full) waits for room without holding up
//!   the others.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod answer;
#[cfg(test)]
mod tests;

pub use answer::render;

use crate::metrics::InputStats;
use crate::pipeline::{Ack, Completions, Receipt, Request, Waker};

/// The gateway's maps: keyed by client identities, which clients choose, so hashed with a
/// fast hash seeded per process (foldhash) rather than SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Sends one answer; the socket in the router, a list in tests.
pub trait Replier {
    /// Sends `[client, envelope..., "", body...]` (no envelope: `[client, body...]`)
    /// without blocking: `EAGAIN` when the client's queue is full, `EHOSTUNREACH` when the
    /// client is gone.
    fn reply(
        &mut self,
        client: &[u8],
        envelope: Option<&[Vec<u8>]>,
        body: &[&[u8]],
    ) -> Result<(), zmq::Error>;
}

impl Replier for zmq::Socket {
    fn reply(
        &mut self,
        client: &[u8],
        envelope: Option<&[Vec<u8>]>,
        body: &[&[u8]],
    ) -> Result<(), zmq::Error> {
        let more = zmq::DONTWAIT | zmq::SNDMORE;
        // A ROUTER refuses the first frame if the client is gone or full; once it takes the
        // first, it takes the rest of the message.
        self.send(client, more)?;
        if let Some(envelope) = envelope {
            for frame in envelope {
                self.send(&frame[..], more)?;
            }
            self.send(&b""[..], more)?;
        }
        let Some((last, rest)) = body.split_last() else {
            return self.send(&b""[..], zmq::DONTWAIT);
        };
        for frame in rest {
            self.send(*frame, more)?;
        }
        self.send(*last, zmq::DONTWAIT)
    }
}

/// The limits of a replying input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a request waits for its acknowledgements.
    pub timeout: Duration,
    /// Requests a client may have unanswered.
    pub max_in_flight: usize,
    /// Request ids remembered (0: none).
    pub dedup_window: usize,
    /// Whether the input speaks in envelopes: a plugin's reply then carries its headers.
    pub envelope: bool,
}

/// One client's requests, in arrival order, under its identity (shared with its requests).
struct Client {
    key: Arc<[u8]>,
    slots: VecDeque<Slot>,
}

/// The clients by identity: a request finds its client's queue in one lookup.
#[derive(Default)]
struct Clients {
    table: hashbrown::HashTable<Client>,
    hasher: foldhash::fast::RandomState,
}

impl Clients {
    fn hash(&self, client: &[u8]) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, client)
    }

    fn get_mut(&mut self, client: &[u8]) -> Option<&mut Client> {
        self.table
            .find_mut(self.hash(client), |c| *c.key == *client)
    }

    /// The client's queue, empty for a client that has none.
    fn entry(&mut self, client: &[u8]) -> &mut Client {
        let hash = self.hash(client);
        let hasher = &self.hasher;
        self.table
            .entry(
                hash,
                |c| *c.key == *client,
                |c| std::hash::BuildHasher::hash_one(hasher, &*c.key),
            )
            .or_insert_with(|| Client {
                key: Arc::from(client),
                slots: VecDeque::new(),
            })
            .into_mut()
    }

    fn remove(&mut self, client: &[u8]) {
        if let Ok(entry) = self
            .table
            .find_entry(self.hash(client), |c| *c.key == *client)
        {
            entry.remove();
        }
    }
}

/// A request's place in its client's queue.
struct Slot {
    /// Its number among the input's slots, in arrival order.
    ticket: u64,
    request: Arc<Request>,
    /// The frames sent before the request's delimiter, if it had one.
    envelope: Option<Vec<Vec<u8>>>,
    /// Answered with the result of an earlier request with the same id.
    duplicate: bool,
    /// Its deadline passed before it settled.
    timed_out: bool,
}

/// The replying side of one `router` input.
pub struct Gateway {
    limits: Limits,
    completions: Arc<Completions>,
    waker: Waker,
    /// Each client's requests, in arrival order.
    clients: Clients,
    /// Every slot's deadline and client, by ticket from `first_ticket` on: all share one
    /// timeout, so this is deadline order too. An answered slot's entry lets its client go,
    /// and such entries leave from the front.
    deadlines: VecDeque<(Instant, Option<Arc<[u8]>>)>,
    /// The ticket of the first entry of `deadlines`.
    first_ticket: u64,
    /// Clients with a retry waiting for a request still in flight, by the request's
    /// address.
    retries: HashMap<usize, Vec<Arc<[u8]>>>,
    /// Clients whose next answer found their queue full.
    blocked: HashSet<Arc<[u8]>>,
    dedup: Dedup,
    /// The answer being written, reused.
    body: String,
    stats: Arc<InputStats>,
}

impl Gateway {
    /// A gateway with these limits, counting into `stats`.
    pub fn new(limits: Limits, stats: Arc<InputStats>) -> std::io::Result<Self> {
        let (completions, waker) = Completions::new()?;
        Ok(Gateway {
            limits,
            completions,
            waker,
            clients: Clients::default(),
            deadlines: VecDeque::new(),
            first_ticket: 0,
            retries: HashMap::default(),
            blocked: HashSet::default(),
            dedup: Dedup::new(limits.dedup_window),
            body: String::with_capacity(256),
            stats,
        })
    }

    /// The descriptor that becomes readable when a request settles.
    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        self.waker.fd()
    }

    /// Reads the wake-up of settled requests, once a poll found it (before [`Gateway::answer`]).
    pub fn woken(&mut self) {
        self.waker.drain();
    }

    /// Whether retried requests are recognised by their ids (`dedup_window` is set).
    pub fn remembers_ids(&self) -> bool {
        self.limits.dedup_window > 0
    }

    /// Whether no request is waiting for its answer.
    pub fn is_idle(&self) -> bool {
        self.clients.table.is_empty()
    }

    /// How long the input may wait before a deadline passes, at most `wait`.
    pub fn wait(&self, wait: Duration, now: Instant) -> Duration {
        let blocked = if self.blocked.is_empty() {
            wait
        } else {
            // Retry clients whose queue was full soon, but without spinning.
            Duration::from_millis(10)
        };
        self.deadlines
            .front()
            .map_or(blocked, |(at, _)| at.saturating_duration_since(now))
            .min(blocked)
    }

    /// Takes in a request from `client`. Returns the acknowledgement its records travel
    /// with, or `None` when it was answered instead (`busy`, or a retry of a remembered
    /// request).
    pub fn admit(
        &mut self,
        client: &[u8],
        envelope: Option<Vec<Vec<u8>>>,
        id: Option<Vec<u8>>,
        now: Instant,
        out: &mut impl Replier,
    ) -> Option<Ack> {
        let entry = self.clients.entry(client);
        let queued = entry.slots.len();
        let key = Arc::clone(&entry.key);
        if queued >= self.limits.max_in_flight {
            self.body.clear();
            let _ = write!(
                self.body,
                r#"{{"status":"busy","message":"{queued} requests from this client are waiting for their answers; this one was not accepted: send it again later"}}"#
            );
            let sent = out.reply(client, envelope.as_deref(), &[self.body.as_bytes()]);
            // A client that does not read its answers is not waited for here: a `busy`
            // that finds its queue full is given up.
            count(&self.stats, sent, "busy", false);
            return None;
        }
        if let Some(first) = id.as_deref().and_then(|id| self.dedup.get(id)) {
            if !first.is_settled() {
                self.retries
                    .entry(address(&first))
                    .or_default()
                    .push(Arc::clone(&key));
            }
            self.queue(&key, envelope, first, true, now);
            self.flush(&key, out);
            return None;
        }
        let request = Request::new(Arc::clone(&key), &self.completions);
        if let Some(id) = id {
            self.dedup.insert(id, Arc::clone(&request));
        }
        self.queue(&key, envelope, Arc::clone(&request), false, now);
        Some(Ack::request(request))
    }

    /// Takes in a request that is answered without running (a malformed one): it fails
    /// with `kind` and `message`, in its place in its client's order.
    pub fn refuse(
        &mut self,
        client: &[u8],
        envelope: Option<Vec<Vec<u8>>>,
        kind: &str,
        message: &str,
        now: Instant,
        out: &mut impl Replier,
    ) {
        let key = Arc::clone(&self.clients.entry(client).key);
        let receipt = Receipt {
            failed: Some((kind.to_owned(), message.to_owned())),
            ..Receipt::default()
        };
        let request = Request::settled(Arc::clone(&key), &self.completions, receipt);
        self.queue(&key, envelope, request, false, now);
        self.flush(&key, out);
    }

    fn queue(
        &mut self,
        client: &Arc<[u8]>,
        envelope: Option<Vec<Vec<u8>>>,
        request: Arc<Request>,
        duplicate: bool,
        now: Instant,
    ) {
        let ticket = self.first_ticket + self.deadlines.len() as u64;
        self.deadlines
            .push_back((now + self.limits.timeout, Some(Arc::clone(client))));
        self.clients.entry(client).slots.push_back(Slot {
            ticket,
            request,
            envelope,
            duplicate,
            timed_out: false,
        });
    }

    /// Sends every answer that is ready: requests that settled, deadlines that passed, and
    /// answers that found their client's queue full before.
    pub fn answer(&mut self, now: Instant, out: &mut impl Replier) {
        // One flush answers everything of its client that is ready: a run of requests
        // from one client (a pipelining client's) is flushed once.
        let mut flushed: Option<Arc<[u8]>> = None;
        for request in self.completions.take() {
            if flushed
                .as_ref()
                .is_none_or(|c| !Arc::ptr_eq(c, request.client()))
            {
                self.flush(request.client(), out);
                flushed = Some(Arc::clone(request.client()));
            }
            if !self.retries.is_empty()
                && let Some(clients) = self.retries.remove(&address(&request))
            {
                for client in clients {
                    self.flush(&client, out);
                }
            }
        }
        while let Some((at, client)) = self.deadlines.front() {
            if client.is_some() && *at > now {
                break;
            }
            let ticket = self.first_ticket;
            let client = self.deadlines.pop_front().and_then(|(_, client)| client);
            self.first_ticket += 1;
            let Some(client) = client else {
                continue;
            };
            if let Some(slot) = self
                .clients
                .get_mut(&client)
                .and_then(|c| c.slots.iter_mut().find(|s| s.ticket == ticket))
            {
                slot.timed_out = true;
                self.flush(&client, out);
            }
        }
        for client in std::mem::take(&mut self.blocked) {
            self.flush(&client, out);
        }
    }

    /// Answers every request still waiting `timeout` (the input is stopping).
    pub fn time_out_all(&mut self, out: &mut impl Replier) {
        let clients: Vec<Arc<[u8]>> = self
            .clients
            .table
            .iter()
            .map(|c| Arc::clone(&c.key))
            .collect();
        for client in clients {
            if let Some(queued) = self.clients.get_mut(&client) {
                for slot in &mut queued.slots {
                    slot.timed_out |= !slot.request.is_settled();
                }
            }
            self.flush(&client, out);
        }
        // What a full queue still holds is given up: the socket closes.
        self.clients.table.clear();
        self.first_ticket += self.deadlines.len() as u64;
        self.deadlines.clear();
    }

    /// Sends `client`'s answers that are ready, in order, up to the first that is not.
    fn flush(&mut self, client: &[u8], out: &mut impl Replier) {
        let Some(Client { slots: queue, .. }) = self.clients.get_mut(client) else {
            return;
        };
        let body = &mut self.body;
        let limits = self.limits;
        while let Some(slot) = queue.front() {
            let settled = slot.request.is_settled();
            let early = !settled && slot.request.answers_early();
            let envelope = slot.envelope.as_deref();
            let (sent, status) = if settled || early {
                slot.request.read(|receipt| match &receipt.reply {
                    // A plugin's answer, unless a record failed since it was given.
                    Some((payload, headers)) if early || receipt.failed.is_none() => {
                        let sent = if limits.envelope {
                            let headers: Vec<(&str, Option<&[u8]>)> = headers
                                .iter()
                                .map(|(n, v)| (n.as_str(), v.as_deref()))
                                .collect();
                            let frames =
                                super::envelope::encode(None, None, &headers, Some(payload));
                            let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                            out.reply(client, envelope, &frames)
                        } else {
                            out.reply(client, envelope, &[payload])
                        };
                        (sent, "reply")
                    }
                    _ => {
                        body.clear();
                        let status = render(receipt, slot.duplicate, body);
                        (out.reply(client, envelope, &[body.as_bytes()]), status)
                    }
                })
            } else if slot.timed_out {
                body.clear();
                let _ = write!(
                    body,
                    r#"{{"status":"timeout","message":"no acknowledgement within {} ms; the record may still be delivered"}}"#,
                    limits.timeout.as_millis()
                );
                (out.reply(client, envelope, &[body.as_bytes()]), "timeout")
            } else {
                break;
            };
            if !count(&self.stats, sent, status, slot.duplicate) {
                self.blocked.insert(Arc::from(client));
                return;
            }
            // Its deadline no longer holds the client.
            if let Some((_, client)) = slot
                .ticket
                .checked_sub(self.first_ticket)
                .and_then(|at| self.deadlines.get_mut(usize::try_from(at).ok()?))
            {
                *client = None;
            }
            queue.pop_front();
        }
        if queue.is_empty() {
            self.clients.remove(client);
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Settled requests queued here hold the queue itself: let them go, and stop
        // queueing those that settle later.
        self.completions.close();
    }
}

/// Counts an answer sent with `status` (and as a duplicate); false when the client's queue
/// was full and it is to be sent again later. An answer to a client that has gone is
/// counted as unroutable.
fn count(
    stats: &InputStats,
    sent: Result<(), zmq::Error>,
    status: &'static str,
    duplicate: bool,
) -> bool {
    match sent {
        Err(zmq::Error::EAGAIN) => return false,
        Ok(()) => {
            stats.replied(status);
            if duplicate {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(zmq::Error::EHOSTUNREACH) => {
            stats.unroutable.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!("answer not sent: {e}"),
    }
    true
}

/// A request's identity while it is in flight.
fn address(request: &Arc<Request>) -> usize {
    Arc::as_ptr(request) as usize
}

/// The last N request ids, and the request each one started.
struct Dedup {
    capacity: usize,
    ids: HashMap<Vec<u8>, Arc<Request>>,
    order: VecDeque<Vec<u8>>,
}

impl Dedup {
    fn new(capacity: usize) -> Self {
        Dedup {
            capacity,
            ids: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// The request `id` started, unless it failed (a failed request is tried again).
    fn get(&self, id: &[u8]) -> Option<Arc<Request>> {
        let request = self.ids.get(id)?;
        let failed = request.is_settled() && request.read(|r| r.failed.is_some());
        (!failed).then(|| Arc::clone(request))
    }

    fn insert(&mut self, id: Vec<u8>, request: Arc<Request>) {
        if self.capacity == 0 {
            return;
        }
        if self.ids.insert(id.clone(), request).is_none() {
            self.order.push_back(id);
            if self.order.len() > self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.ids.remove(&oldest);
            }
        }
    }
}
