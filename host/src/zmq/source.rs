//! A ZeroMQ input (SUB, PULL, ROUTER): the input's thread receives multipart messages
//! straight from the socket, in batches of what libzmq has queued. A payload stays in the
//! message libzmq received it into: it is not copied on its way to the plugins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::envelope;
use super::gateway::{Gateway, Limits};
use super::monitor::Monitor;
use super::record::ZmqRecord;
use crate::config::{ReplyMode, ZmqEndpoint, ZmqSocketType};
use crate::metrics::InputStats;
use crate::pipeline::Frame;

/// The header that names a request for retries, when it has no request-id frames.
pub const MESSAGE_ID_HEADER: &str = "switchyard-message-id";

/// Receives from one socket, on the input's own thread: no thread hop between the socket
/// and the plugin chain.
pub struct ZmqSource {
    /// Malformed messages skipped since the last warning.
    skips: Skips,
    socket: Option<zmq::Socket>,
    /// The endpoint records name as their origin.
    endpoint: &'static str,
    kind: ZmqSocketType,
    envelope: bool,
    /// A PULL or SUB without an envelope: a message of one frame is its payload.
    plain: bool,
    /// A `router` input's answers, with `reply = "ack"`.
    gateway: Option<Gateway>,
    /// False once the input stops taking requests (a replying input still answers).
    receiving: bool,
    /// The peers the socket loses.
    monitor: Option<Monitor>,
}

impl ZmqSource {
    /// Opens the socket (so bind errors surface at once).
    pub fn start(
        ctx: &zmq::Context,
        name: &str,
        config: &ZmqEndpoint,
        stats: &Arc<InputStats>,
    ) -> anyhow::Result<Self> {
        let socket = super::open_socket(ctx, &format!("input `{name}`"), config)?;
        let gateway = match config.reply {
            ReplyMode::None => None,
            ReplyMode::Ack => {
                socket.set_router_mandatory(true)?;
                let limits = Limits {
                    timeout: Duration::from_millis(
                        config
                            .reply_timeout_ms
                            .unwrap_or(ZmqEndpoint::REPLY_TIMEOUT_MS),
                    ),
                    max_in_flight: config.max_in_flight.unwrap_or(ZmqEndpoint::MAX_IN_FLIGHT)
                        as usize,
                    dedup_window: config.dedup_window.unwrap_or(0) as usize,
                    envelope: config.envelope,
                };
                Some(Gateway::new(limits, Arc::clone(stats))?)
            }
        };
        let max_message_bytes = config
            .max_message_bytes
            .unwrap_or(ZmqEndpoint::MAX_MESSAGE_BYTES);
        let monitor = Monitor::start(ctx, &socket, Arc::clone(stats), max_message_bytes)
            .with_context(|| format!("input `{name}`"))?;
        Ok(ZmqSource {
            monitor: Some(monitor),
            skips: Skips::default(),
            socket: Some(socket),
            endpoint: super::record::intern(&super::endpoint_label(config)),
            kind: *config.socket.get_ref(),
            envelope: config.envelope,
            plain: !config.envelope
                && matches!(
                    config.socket.get_ref(),
                    ZmqSocketType::Pull | ZmqSocketType::Sub
                ),
            gateway,
            receiving: true,
        })
    }

    /// Whether the input has stopped and answered everything it owes.
    pub fn is_finished(&self) -> bool {
        self.socket.is_none()
            || (!self.receiving && self.gateway.as_ref().is_none_or(Gateway::is_idle))
    }

    /// Sends the answers that are ready (a replying input), after a batch went through
    /// its routes: those that settled at once are answered without waiting for a poll.
    pub fn answer(&mut self) {
        if let (Some(socket), Some(gateway)) = (&mut self.socket, &mut self.gateway) {
            gateway.answer(Instant::now(), socket);
        }
    }

    /// Polls the socket (while receiving) and, for a replying input, the wake-up of
    /// settled requests, for up to `wait`; answers what is ready. True if the socket has
    /// messages.
    fn poll(&mut self, wait: Duration) -> bool {
        let Some(socket) = &mut self.socket else {
            return false;
        };
        let now = Instant::now();
        let wait = self.gateway.as_ref().map_or(wait, |g| g.wait(wait, now));
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let events = if self.receiving {
            zmq::POLLIN
        } else {
            zmq::PollEvents::empty()
        };
        let mut items = vec![socket.as_poll_item(events)];
        if let Some(monitor) = &self.monitor {
            items.push(monitor.poll_item());
        }
        if let Some(gateway) = &self.gateway {
            items.push(zmq::PollItem::from_fd(gateway.wake_fd(), zmq::POLLIN));
        }
        let (readable, disconnects, settled) = match zmq::poll(&mut items, wait_ms) {
            Ok(_) => (
                self.receiving && items[0].is_readable(),
                self.monitor.is_some() && items[1].is_readable(),
                self.gateway.is_some() && items[items.len() - 1].is_readable(),
            ),
            Err(e) => {
                tracing::error!("poll failed: {e}");
                (false, false, false)
            }
        };
        drop(items);
        if disconnects && let Some(monitor) = &mut self.monitor {
            monitor.take();
        }
        if let Some(gateway) = &mut self.gateway {
            if settled {
                gateway.woken();
            }
            // With requests waiting, the answers go out after their batch, in one pass.
            if !readable {
                gateway.answer(Instant::now(), socket);
            }
        }
        readable
    }

    /// Waits up to `wait` for a first message, then takes what else libzmq has queued into
    /// `batch` (empty, its room kept from one batch to the next), up to `max`.
    pub fn recv_batch(&mut self, batch: &mut Vec<ZmqRecord>, max: usize, wait: Duration) {
        if !self.poll(wait) {
            return;
        }
        let Some(socket) = &mut self.socket else {
            return;
        };
        let mut frames = Vec::new();
        let now = Instant::now();
        while batch.len() < max {
            let mut first = Frame::new();
            match first.recv(socket, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    tracing::error!("receive failed: {e}");
                    break;
                }
            }
            // The common case, one frame on a PULL or SUB without an envelope: its payload.
            if self.plain && !first.more() {
                batch.push(ZmqRecord::plain(first, self.endpoint, self.kind));
                continue;
            }
            if let Err(e) = recv_rest(socket, first, &mut frames) {
                tracing::error!("receive failed: {e}");
                break;
            }
            let Received {
                peer,
                routing,
                decoded,
            } = received(&mut frames, self.kind, self.envelope, self.endpoint);
            let Some(gateway) = &mut self.gateway else {
                match decoded {
                    Ok(mut record) => {
                        record.set_peer(peer.map(|p| Arc::from(&p[..])));
                        batch.push(record);
                    }
                    Err(e) => self.skips.skipped(e),
                }
                continue;
            };
            let Some(peer) = peer else {
                continue;
            };
            let mut record = match decoded {
                Ok(record) => record,
                Err(e) => {
                    self.skips.skipped(e.clone());
                    gateway.refuse(&peer, routing, "malformed", &e, now, socket);
                    continue;
                }
            };
            // Ids are read only where they are remembered.
            let id = gateway
                .remembers_ids()
                .then(|| request_id(routing.as_deref(), &record))
                .flatten();
            if let Some(ack) = gateway.admit(&peer, routing, id, now, socket) {
                record.set_peer(ack.replying().map(|r| Arc::clone(r.client())));
                record.ack = Some(ack);
                batch.push(record);
            }
        }
        // No batch follows (each request was answered at once, or none came): what is
        // ready is answered here instead of after it.
        if batch.is_empty()
            && let Some(gateway) = &mut self.gateway
        {
            gateway.answer(now, socket);
        }
    }

    /// Stops taking messages. A plain input closes its socket: what libzmq had queued and
    /// not handed out is gone (a ZeroMQ input is at-most-once). A replying input keeps it
    /// open to answer the requests it took, until they are answered or
    /// [`ZmqSource::give_up`].
    pub fn stop_receiving(&mut self) {
        self.receiving = false;
        if self.gateway.is_none() {
            self.monitor = None;
            self.socket = None;
        }
    }

    /// Answers what is still waiting `timeout` and closes the socket.
    pub fn give_up(&mut self) {
        if let (Some(socket), Some(gateway)) = (&mut self.socket, &mut self.gateway) {
            gateway.time_out_all(socket);
        }
        self.monitor = None;
        self.socket = None;
    }
}

/// How often a ZeroMQ input reports the malformed messages it skipped.
const SKIPS_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Malformed messages skipped: the first is reported at once, the next ones once per
/// [`SKIPS_REPORT_EVERY`] with their count and the last reason, so a peer sending garbage
/// cannot flood the log.
#[derive(Debug, Default)]
struct Skips {
    reported: Option<std::time::Instant>,
    count: u64,
}

impl Skips {
    fn skipped(&mut self, reason: String) {
        self.count += 1;
        if self
            .reported
            .is_none_or(|at| at.elapsed() >= SKIPS_REPORT_EVERY)
        {
            tracing::warn!(
                skipped = self.count,
                "malformed message skipped: {reason} (the next are counted and reported at most \
                 every {} s)",
                SKIPS_REPORT_EVERY.as_secs()
            );
            self.count = 0;
            self.reported = Some(std::time::Instant::now());
        }
    }
}

impl Drop for Skips {
    fn drop(&mut self) {
        if self.count > 0 {
            tracing::warn!(
                skipped = self.count,
                "malformed messages skipped since the last report"
            );
        }
    }
}

/// Receives the frames of a message after its `first` into `frames` (emptied first, then
/// holding them all). The parts of a multipart message arrive together, so none of them
/// has to be waited for.
fn recv_rest(socket: &mut zmq::Socket, first: Frame, frames: &mut Vec<Frame>) -> zmq::Result<()> {
    frames.clear();
    let mut more = first.more();
    frames.push(first);
    while more {
        let mut part = Frame::new();
        part.recv(socket, 0)?;
        more = part.more();
        frames.push(part);
    }
    Ok(())
}

/// A message as received, taken apart: a ROUTER's peer identity and routing envelope, and
/// the record the rest decodes to (or why it does not).
struct Received {
    peer: Option<Frame>,
    routing: Option<Vec<Vec<u8>>>,
    decoded: Result<ZmqRecord, String>,
}

/// Takes `frames`, as a `kind` input with `envelope` received them, apart.
fn received(
    frames: &mut Vec<Frame>,
    kind: ZmqSocketType,
    envelope: bool,
    endpoint: &'static str,
) -> Received {
    let peer = (kind == ZmqSocketType::Router && !frames.is_empty()).then(|| frames.remove(0));
    let routing = routing_envelope(frames, kind);
    let decoded = decode(frames, kind, envelope, endpoint);
    Received {
        peer,
        routing,
        decoded,
    }
}

/// What a `kind` input with `envelope` makes of a message of `frames`, by the path
/// [`ZmqSource::recv_batch`] takes: its record with its peer, and the request id a gateway
/// would remember it by; or why it is refused. For the fuzz targets (`crate::fuzzing`).
pub(crate) fn decode_received(
    mut frames: Vec<Frame>,
    kind: ZmqSocketType,
    envelope: bool,
) -> Result<(ZmqRecord, Option<Vec<u8>>), String> {
    let Received {
        peer,
        routing,
        decoded,
    } = received(&mut frames, kind, envelope, "tcp://127.0.0.1:1");
    let mut record = decoded?;
    record.set_peer(peer.map(|p| Arc::from(&p[..])));
    let id = request_id(routing.as_deref(), &record);
    Ok((record, id))
}

/// Takes a ROUTER message's routing envelope off `frames` (the identity already taken):
/// the frames before its first empty frame, when one comes before the last frame and
/// before a Switchyard envelope. `None` when the message has no delimiter.
fn routing_envelope(frames: &mut Vec<Frame>, kind: ZmqSocketType) -> Option<Vec<Vec<u8>>> {
    if kind != ZmqSocketType::Router {
        return None;
    }
    let last = frames.len().checked_sub(1)?;
    let delimiter = frames[..last]
        .iter()
        .take_while(|f| !envelope::is_marker(f))
        .position(|f| f.is_empty())?;
    let routing = frames
        .drain(..=delimiter)
        .map(|f| f.to_vec())
        .collect::<Vec<_>>();
    Some(routing[..delimiter].to_vec())
}

/// The id a request is remembered by for retries: its request-id frames, else its
/// `switchyard-message-id` header.
fn request_id(routing: Option<&[Vec<u8>]>, record: &ZmqRecord) -> Option<Vec<u8>> {
    match routing {
        Some(frames) if !frames.is_empty() => {
            let mut id = Vec::new();
            for frame in frames {
                id.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                id.extend_from_slice(frame);
            }
            Some(id)
        }
        _ => record
            .extras
            .as_ref()?
            .headers
            .iter()
            .find(|(name, _)| name == MESSAGE_ID_HEADER)
            .and_then(|(_, value)| value.clone()),
    }
}

/// Maps frames (a ROUTER's identity and routing envelope already taken off) to a record,
/// as the `zmq` module documentation describes.
fn decode(
    frames: &mut Vec<Frame>,
    kind: ZmqSocketType,
    envelope: bool,
    endpoint: &'static str,
) -> Result<ZmqRecord, String> {
    let mut topic = None;
    if kind == ZmqSocketType::Sub && frames.len() > 1 {
        topic = Some(frames.remove(0));
    }
    if kind == ZmqSocketType::Router && frames.is_empty() {
        return Err("a ROUTER message needs an identity and a payload".to_owned());
    }
    let mut record = ZmqRecord::plain(Frame::new(), endpoint, kind);
    if let Some(topic) = topic {
        record.extras().topic = Some(topic);
    }
    let enveloped = frames.first().is_some_and(|f| envelope::is_marker(f));
    if envelope && enveloped {
        let marker = frames.remove(0);
        let (meta, payload) = envelope::decode(&marker, std::mem::take(frames))?;
        let extras = record.extras();
        extras.enveloped = true;
        extras.key = meta.key;
        extras.timestamp = meta.timestamp;
        extras.headers = meta.headers;
        extras.null_payload = meta.null_payload;
        record.payload = payload;
    } else {
        if frames.len() != 1 {
            let hint = if enveloped {
                "; it is a Switchyard envelope: set `envelope = true` on this input to accept it"
            } else {
                ""
            };
            return Err(format!(
                "expected one payload frame, got {}{hint}",
                frames.len()
            ));
        }
        record.payload = frames.pop().unwrap_or_default();
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Incoming;

    /// Decodes `parts` as received on a `kind` socket.
    fn decode_parts(
        parts: &[&[u8]],
        kind: ZmqSocketType,
        envelope: bool,
    ) -> Result<ZmqRecord, String> {
        let mut frames = parts.iter().map(|p| Frame::from(*p)).collect();
        decode(&mut frames, kind, envelope, "tcp://127.0.0.1:1")
    }

    /// The routing envelope of ROUTER frames after the identity, and the frames left.
    fn routing(parts: &[&[u8]]) -> (Option<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
        let mut frames = parts.iter().map(|p| Frame::from(*p)).collect();
        let routing = routing_envelope(&mut frames, ZmqSocketType::Router);
        (routing, frames.iter().map(|f| f.to_vec()).collect())
    }

    #[test]
    fn routing_envelopes_end_at_the_first_empty_frame() {
        let v = |parts: &[&[u8]]| parts.iter().map(|p| p.to_vec()).collect::<Vec<_>>();
        assert_eq!(routing(&[b"", b"req"]), (Some(vec![]), v(&[b"req"])), "REQ");
        assert_eq!(
            routing(&[b"id-7", b"", b"req"]),
            (Some(v(&[b"id-7"])), v(&[b"req"])),
            "DEALER with a request id"
        );
        assert_eq!(routing(&[b"req"]), (None, v(&[b"req"])), "plain DEALER");
        assert_eq!(routing(&[b""]), (None, v(&[b""])), "an empty payload");
        assert_eq!(routing(&[b"", b""]), (Some(vec![]), v(&[b""])));
        let [marker, key, meta, headers, payload] =
            envelope::encode(None, None, &[], Some(b"body"));
        let enveloped = [&marker[..], &key, &meta, &headers, &payload];
        assert_eq!(
            routing(&enveloped).0,
            None,
            "an envelope's empty key is not a delimiter"
        );
        let mut with_id: Vec<&[u8]> = vec![b"id", b""];
        with_id.extend(enveloped);
        assert_eq!(routing(&with_id).0, Some(v(&[b"id"])));
    }

    #[test]
    fn frames_map_to_records() {
        let sub = decode_parts(&[b"EURUSD", b"1.1"], ZmqSocketType::Sub, false)
            .expect("a topic and a payload");
        assert_eq!(sub.key(), Some(&b"EURUSD"[..]));
        assert_eq!(sub.payload(), Some(&b"1.1"[..]));

        let router = decode_parts(&[b"request"], ZmqSocketType::Router, false)
            .expect("a payload after the identity and routing envelope");
        assert_eq!(router.payload(), Some(&b"request"[..]));

        let [marker, rest @ ..] = envelope::encode(
            Some(b"k"),
            None,
            &[("h", Some(b"v")), ("n", None)],
            Some(b"body"),
        );
        let mut parts = vec![marker.as_slice()];
        parts.extend(rest.iter().map(Vec::as_slice));
        let enveloped = decode_parts(&parts, ZmqSocketType::Pull, true).expect("an envelope");
        assert_eq!(enveloped.key(), Some(&b"k"[..]));
        assert_eq!(
            enveloped.headers(),
            vec![("h", Some(&b"v"[..])), ("n", None)]
        );
        assert_eq!(enveloped.payload(), Some(&b"body"[..]));

        let refused = decode_parts(&parts, ZmqSocketType::Pull, false)
            .expect_err("an envelope on a plain input");
        assert!(refused.contains("set `envelope = true`"), "{refused}");
        let refused =
            decode_parts(&[b"a", b"b"], ZmqSocketType::Pull, false).expect_err("two frames");
        assert_eq!(refused, "expected one payload frame, got 2");
    }
}
