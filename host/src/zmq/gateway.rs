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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::metrics::InputStats;
use crate::pipeline::{Ack, Completions, Receipt, Request, Stored, Waker};

/// Sends one answer's frames; the socket in the router, a list in tests.
pub trait Replier {
    /// Sends without blocking: `EAGAIN` when the client's queue is full, `EHOSTUNREACH`
    /// when the client is gone.
    fn reply(&mut self, frames: &[&[u8]]) -> Result<(), zmq::Error>;
}

impl Replier for zmq::Socket {
    fn reply(&mut self, frames: &[&[u8]]) -> Result<(), zmq::Error> {
        self.send_multipart(frames.iter(), zmq::DONTWAIT)
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
    next_seq: u64,
    next_ticket: u64,
    /// Each client's requests, in arrival order.
    clients: HashMap<Vec<u8>, VecDeque<Slot>>,
    /// Queued slots by arrival: (deadline, client, ticket). All share one timeout, so this
    /// is deadline order too. Entries of slots already answered leave from the front.
    deadlines: VecDeque<(Instant, Vec<u8>, u64)>,
    /// The clients waiting for each unsettled request, by request number.
    waiting: HashMap<u64, Vec<Vec<u8>>>,
    /// Clients whose next answer found their queue full.
    blocked: HashSet<Vec<u8>>,
    dedup: Dedup,
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
            next_seq: 0,
            next_ticket: 0,
            clients: HashMap::new(),
            deadlines: VecDeque::new(),
            waiting: HashMap::new(),
            blocked: HashSet::new(),
            dedup: Dedup::new(limits.dedup_window),
            stats,
        })
    }

    /// The descriptor that becomes readable when a request settles.
    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        self.waker.fd()
    }

    /// Whether no request is waiting for its answer.
    pub fn is_idle(&self) -> bool {
        self.clients.is_empty()
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
            .map_or(blocked, |(at, _, _)| at.saturating_duration_since(now))
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
        let queued = self.clients.get(client).map_or(0, VecDeque::len);
        if queued >= self.limits.max_in_flight {
            let body = json!({
                "status": "busy",
                "message": format!(
                    "{queued} requests from this client are waiting for their answers; this one \
                     was not accepted: send it again later"
                ),
            });
            self.send(out, client, envelope.as_deref(), &body.to_string(), "busy");
            return None;
        }
        if let Some(first) = id.as_deref().and_then(|id| self.dedup.get(id)) {
            self.queue(client, envelope, &first, true, now);
            self.flush(client, out);
            return None;
        }
        let request = Request::new(self.next_seq, &self.completions);
        self.next_seq += 1;
        if let Some(id) = id {
            self.dedup.insert(id, Arc::clone(&request));
        }
        self.queue(client, envelope, &request, false, now);
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
        let receipt = Receipt {
            failed: Some((kind.to_owned(), message.to_owned())),
            ..Receipt::default()
        };
        let request = Request::settled(self.next_seq, &self.completions, receipt);
        self.next_seq += 1;
        self.queue(client, envelope, &request, false, now);
        self.flush(client, out);
    }

    fn queue(
        &mut self,
        client: &[u8],
        envelope: Option<Vec<Vec<u8>>>,
        request: &Arc<Request>,
        duplicate: bool,
        now: Instant,
    ) {
        if !request.is_settled() {
            self.waiting
                .entry(request.seq())
                .or_default()
                .push(client.to_vec());
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.deadlines
            .push_back((now + self.limits.timeout, client.to_vec(), ticket));
        self.clients
            .entry(client.to_vec())
            .or_default()
            .push_back(Slot {
                ticket,
                request: Arc::clone(request),
                envelope,
                duplicate,
                timed_out: false,
            });
    }

    /// Sends every answer that is ready: requests that settled, deadlines that passed, and
    /// answers that found their client's queue full before.
    pub fn answer(&mut self, now: Instant, out: &mut impl Replier) {
        for seq in self.completions.take(&mut self.waker) {
            for client in self.waiting.remove(&seq).unwrap_or_default() {
                self.flush(&client, out);
            }
        }
        while let Some((at, client, ticket)) = self.deadlines.front() {
            let head = self
                .clients
                .get(client)
                .and_then(VecDeque::front)
                .map(|s| s.ticket);
            let answered = head.is_none_or(|head| head > *ticket);
            if !answered && *at > now {
                break;
            }
            let (ticket, client) = (*ticket, client.clone());
            self.deadlines.pop_front();
            if answered {
                continue;
            }
            if let Some(slot) = self
                .clients
                .get_mut(&client)
                .and_then(|q| q.iter_mut().find(|s| s.ticket == ticket))
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
        let clients: Vec<Vec<u8>> = self.clients.keys().cloned().collect();
        for client in clients {
            if let Some(queue) = self.clients.get_mut(&client) {
                for slot in queue.iter_mut() {
                    slot.timed_out |= !slot.request.is_settled();
                }
            }
            self.flush(&client, out);
        }
        // What a full queue still holds is given up: the socket closes.
        self.clients.clear();
        self.deadlines.clear();
    }

    /// Sends `client`'s answers that are ready, in order, up to the first that is not.
    fn flush(&mut self, client: &[u8], out: &mut impl Replier) {
        let timeout_ms = self.limits.timeout.as_millis();
        let Some(queue) = self.clients.get_mut(client) else {
            return;
        };
        while let Some(slot) = queue.front() {
            let (body, status) = if slot.request.is_settled() {
                let receipt = slot.request.receipt();
                let (mut body, status) = render(&receipt);
                if slot.duplicate {
                    body["duplicate"] = Value::Bool(true);
                }
                (body, status)
            } else if slot.timed_out {
                let body = json!({
                    "status": "timeout",
                    "message": format!(
                        "no acknowledgement within {timeout_ms} ms; the record may still be \
                         delivered"
                    ),
                });
                (body, "timeout")
            } else {
                break;
            };
            let frames = frames(client, slot.envelope.as_deref(), &body.to_string());
            let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            match out.reply(&frames) {
                Err(zmq::Error::EAGAIN) => {
                    self.blocked.insert(client.to_vec());
                    return;
                }
                Ok(()) => {
                    self.stats.replied(status);
                    if slot.duplicate {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(zmq::Error::EHOSTUNREACH) => {
                    self.stats.unroutable.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("answer not sent: {e}"),
            }
            queue.pop_front();
        }
        if queue.is_empty() {
            self.clients.remove(client);
        }
    }

    /// Sends one answer that has no place in a queue (`busy`).
    fn send(
        &self,
        out: &mut impl Replier,
        client: &[u8],
        envelope: Option<&[Vec<u8>]>,
        body: &str,
        status: &'static str,
    ) {
        let frames = frames(client, envelope, body);
        let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        match out.reply(&frames) {
            Ok(()) => self.stats.replied(status),
            Err(zmq::Error::EHOSTUNREACH) => {
                self.stats.unroutable.fetch_add(1, Ordering::Relaxed);
            }
            // A client that does not read its answers is not waited for here.
            Err(_) => {}
        }
    }
}

/// An answer's frames: the client, what it sent before its delimiter and the delimiter,
/// then the body.
fn frames(client: &[u8], envelope: Option<&[Vec<u8>]>, body: &str) -> Vec<Vec<u8>> {
    let mut frames = Vec::with_capacity(3 + envelope.map_or(0, <[_]>::len));
    frames.push(client.to_vec());
    if let Some(envelope) = envelope {
        frames.extend(envelope.iter().cloned());
        frames.push(Vec::new());
    }
    frames.push(body.as_bytes().to_vec());
    frames
}

/// A settled request's answer and its status: `failed` over `rejected` over `ok` (some
/// record stored) over `dropped`.
pub fn render(receipt: &Receipt) -> (Value, &'static str) {
    let stored = |s: &Stored| {
        let mut v = json!({ "output": s.output });
        if let (Some(topic), Some(partition), Some(offset)) = (&s.topic, s.partition, s.offset) {
            v["topic"] = json!(topic);
            v["partition"] = json!(partition);
            v["offset"] = json!(offset);
        }
        v
    };
    let records: Vec<Value> = receipt.records.iter().map(stored).collect();
    let dead_letter = receipt.dead_letters.first().map_or(Value::Null, stored);
    if let Some((kind, message)) = &receipt.failed {
        let mut body = json!({
            "status": "failed",
            "error": { "kind": kind, "message": message },
            "records": records,
        });
        if !receipt.dead_letters.is_empty() {
            body["dead_letter"] = dead_letter;
        }
        (body, "failed")
    } else if let Some((plugin, reason)) = &receipt.rejected {
        let body = json!({
            "status": "rejected",
            "plugin": plugin,
            "reason": reason,
            "dead_letter": dead_letter,
            "records": records,
        });
        (body, "rejected")
    } else if !records.is_empty() {
        (json!({ "status": "ok", "records": records }), "ok")
    } else {
        let reason = if receipt.dropped {
            "a plugin dropped it"
        } else {
            "no route took it"
        };
        (json!({ "status": "dropped", "reason": reason }), "dropped")
    }
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
            ids: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The request `id` started, unless it failed (a failed request is tried again).
    fn get(&self, id: &[u8]) -> Option<Arc<Request>> {
        let request = self.ids.get(id)?;
        let failed = request.is_settled() && request.receipt().failed.is_some();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers as (client, frames after the client).
    #[derive(Default)]
    struct Sent {
        answers: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
        full: bool,
        gone: bool,
    }

    impl Replier for Sent {
        fn reply(&mut self, frames: &[&[u8]]) -> Result<(), zmq::Error> {
            if self.gone {
                return Err(zmq::Error::EHOSTUNREACH);
            }
            if self.full {
                return Err(zmq::Error::EAGAIN);
            }
            self.answers.push((
                frames[0].to_vec(),
                frames[1..].iter().map(|f| f.to_vec()).collect(),
            ));
            Ok(())
        }
    }

    impl Sent {
        fn statuses(&self) -> Vec<String> {
            self.answers
                .iter()
                .map(|(_, frames)| {
                    let body: Value =
                        serde_json::from_slice(frames.last().expect("a body")).expect("JSON");
                    body["status"].as_str().expect("a status").to_owned()
                })
                .collect()
        }
    }

    fn gateway(max_in_flight: usize, dedup_window: usize) -> Gateway {
        let limits = Limits {
            timeout: Duration::from_secs(5),
            max_in_flight,
            dedup_window,
        };
        Gateway::new(limits, Arc::default()).expect("a socket pair")
    }

    fn kafka(ack: &Ack, offset: i64) {
        ack.stored("out", Some(("topic", 0, offset)));
    }

    #[test]
    fn answers_in_each_clients_order_with_its_envelope() {
        let mut g = gateway(10, 0);
        let mut out = Sent::default();
        let now = Instant::now();
        let a1 = g.admit(b"a", Some(vec![b"1".to_vec()]), None, now, &mut out);
        let a2 = g.admit(b"a", None, None, now, &mut out);
        let b1 = g.admit(b"b", Some(Vec::new()), None, now, &mut out);
        let (a1, a2, b1) = (a1.expect("a1"), a2.expect("a2"), b1.expect("b1"));
        kafka(&a2, 7);
        drop(a2);
        kafka(&b1, 8);
        drop(b1);
        g.answer(now, &mut out);
        assert_eq!(out.answers.len(), 1, "a's second waits for its first");
        assert_eq!(out.answers[0].0, b"b");
        assert_eq!(
            out.answers[0].1[0], b"",
            "a REQ client gets its delimiter back"
        );
        kafka(&a1, 6);
        drop(a1);
        g.answer(now, &mut out);
        let a: Vec<&Vec<Vec<u8>>> = out
            .answers
            .iter()
            .filter(|(c, _)| c == b"a")
            .map(|(_, f)| f)
            .collect();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0][..2], [b"1".to_vec(), Vec::new()], "request id echoed");
        let first: Value = serde_json::from_slice(&a[0][2]).expect("JSON");
        assert_eq!(first["records"][0]["offset"], 6);
        assert_eq!(a[1].len(), 1, "a plain DEALER request gets one frame");
        let second: Value = serde_json::from_slice(&a[1][0]).expect("JSON");
        assert_eq!(
            second,
            json!({"status": "ok", "records": [{"output": "out", "topic": "topic", "partition": 0, "offset": 7}]})
        );
        assert!(g.is_idle());
    }

    #[test]
    fn busy_timeout_and_gone_clients() {
        let mut g = gateway(2, 0);
        let mut out = Sent::default();
        let now = Instant::now();
        let first = g.admit(b"a", None, None, now, &mut out).expect("first");
        let _second = g.admit(b"a", None, None, now, &mut out).expect("second");
        assert!(g.admit(b"a", None, None, now, &mut out).is_none());
        assert_eq!(out.statuses(), ["busy"]);
        g.answer(now + Duration::from_secs(6), &mut out);
        assert_eq!(out.statuses(), ["busy", "timeout", "timeout"]);
        assert!(g.is_idle());
        drop(first);
        g.answer(now + Duration::from_secs(7), &mut out);
        assert_eq!(
            out.statuses().len(),
            3,
            "a settled request already answered"
        );

        let late = g.admit(b"c", None, None, now, &mut out).expect("late");
        out.gone = true;
        drop(late);
        g.answer(now, &mut out);
        assert_eq!(g.stats.unroutable.load(Ordering::Relaxed), 1);
        assert!(g.is_idle());
    }

    #[test]
    fn a_full_client_queue_holds_its_answers_until_there_is_room() {
        let mut g = gateway(10, 0);
        let mut out = Sent {
            full: true,
            ..Sent::default()
        };
        let now = Instant::now();
        drop(g.admit(b"a", None, None, now, &mut out));
        g.answer(now, &mut out);
        assert!(out.answers.is_empty());
        assert!(!g.is_idle());
        out.full = false;
        g.answer(now, &mut out);
        assert_eq!(out.statuses(), ["dropped"]);
    }

    #[test]
    fn a_retry_gets_the_first_result() {
        let mut g = gateway(10, 100);
        let mut out = Sent::default();
        let now = Instant::now();
        let id = || Some(b"msg-1".to_vec());
        let first = g.admit(b"a", None, id(), now, &mut out).expect("first");
        assert!(
            g.admit(b"b", None, id(), now, &mut out).is_none(),
            "a retry in flight is not produced again"
        );
        kafka(&first, 3);
        drop(first);
        g.answer(now, &mut out);
        assert!(
            g.admit(b"c", None, id(), now, &mut out).is_none(),
            "nor is a retry after the answer"
        );
        let bodies: Vec<Value> = out
            .answers
            .iter()
            .map(|(_, f)| serde_json::from_slice(&f[0]).expect("JSON"))
            .collect();
        assert_eq!(bodies.len(), 3);
        for body in &bodies {
            assert_eq!(body["records"][0]["offset"], 3);
        }
        assert_eq!(bodies[0].get("duplicate"), None);
        assert_eq!(bodies[1]["duplicate"], true);
        assert_eq!(bodies[2]["duplicate"], true);

        // A failed request is tried again.
        let failing = g
            .admit(b"a", None, Some(b"msg-2".to_vec()), now, &mut out)
            .expect("new");
        failing.fail_with("delivery", || "broker down".to_owned());
        drop(failing);
        g.answer(now, &mut out);
        assert!(
            g.admit(b"a", None, Some(b"msg-2".to_vec()), now, &mut out)
                .is_some()
        );
    }

    #[test]
    fn statuses_rank_failed_rejected_ok_dropped() {
        let stored = Stored {
            output: "dlq".into(),
            topic: Some("dlq".into()),
            partition: Some(0),
            offset: Some(1),
        };
        let mut receipt = Receipt {
            dropped: true,
            ..Receipt::default()
        };
        assert_eq!(render(&receipt).1, "dropped");
        receipt.records.push(Stored {
            output: "zmq".into(),
            topic: None,
            partition: None,
            offset: None,
        });
        assert_eq!(render(&receipt).0["records"][0], json!({"output": "zmq"}));
        receipt.rejected = Some(("filter".into(), "too small".into()));
        receipt.dead_letters.push(stored);
        let (body, status) = render(&receipt);
        assert_eq!(status, "rejected");
        assert_eq!(body["dead_letter"]["offset"], 1);
        receipt.failed = Some(("trap".into(), "unreachable".into()));
        assert_eq!(render(&receipt).1, "failed");
    }
}
