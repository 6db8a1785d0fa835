//! A ZeroMQ input (SUB, PULL, ROUTER): the input's thread receives multipart messages
//! straight from the socket, in batches of what libzmq has queued. A payload stays in the
//! message libzmq received it into: it is not copied on its way to the plugins.

use std::sync::Arc;
use std::time::Duration;

use switchyard_abi::Origin;

use super::envelope;
use crate::config::{ZmqEndpoint, ZmqSocketType};
use crate::pipeline::{Ack, Incoming};

/// A message received from a ZeroMQ socket.
#[derive(Debug)]
pub struct ZmqRecord {
    endpoint: Arc<str>,
    socket_type: &'static str,
    topic: Option<Vec<u8>>,
    peer: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    payload: zmq::Message,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

impl Incoming for ZmqRecord {
    fn origin(&self) -> Origin<'_> {
        Origin::Zmq {
            endpoint: &self.endpoint,
            socket_type: self.socket_type,
            topic: self.topic.as_deref(),
            peer: self.peer.as_deref(),
        }
    }

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn headers(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect()
    }

    fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    fn ack(&self) -> Option<&Ack> {
        None
    }
}

/// Receives from one socket, on the input's own thread: no thread hop between the socket
/// and the plugin chain.
pub struct ZmqSource {
    /// Malformed messages skipped since the last warning.
    skips: Skips,
    socket: Option<zmq::Socket>,
    endpoint: Arc<str>,
    kind: ZmqSocketType,
    envelope: bool,
}

impl ZmqSource {
    /// Opens the socket (so bind errors surface at once).
    pub fn start(ctx: &zmq::Context, name: &str, config: &ZmqEndpoint) -> anyhow::Result<Self> {
        let socket = super::open_socket(ctx, &format!("input `{name}`"), config)?;
        Ok(ZmqSource {
            skips: Skips::default(),
            socket: Some(socket),
            endpoint: super::endpoint_label(config).into(),
            kind: *config.socket.get_ref(),
            envelope: config.envelope,
        })
    }

    /// Waits up to `wait` for a first message, then takes what else libzmq has queued, up
    /// to `max`.
    pub fn recv_batch(&mut self, max: usize, wait: Duration) -> Vec<ZmqRecord> {
        let mut batch = Vec::new();
        let Some(socket) = &self.socket else {
            return batch;
        };
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        match socket.poll(zmq::POLLIN, wait_ms) {
            Ok(n) if n > 0 => {}
            Ok(_) => return batch,
            Err(e) => {
                tracing::error!("poll failed: {e}");
                return batch;
            }
        }
        let mut frames = Vec::new();
        while batch.len() < max {
            match recv_frames(socket, &mut frames) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!("receive failed: {e}");
                    break;
                }
            }
            match decode(&mut frames, self.kind, self.envelope, &self.endpoint) {
                Ok(record) => batch.push(record),
                Err(e) => self.skips.skipped(e.to_string()),
            }
        }
        batch
    }

    /// Stops receiving and closes the socket; what libzmq had queued and not handed out is
    /// gone (a ZeroMQ input is at-most-once).
    pub fn stop_receiving(&mut self) {
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

/// Receives the frames of one message into `frames` (emptied first) if one is queued;
/// `Ok(false)` if none is. The parts of a multipart message arrive together, so only the
/// first receive can find the queue empty.
fn recv_frames(socket: &zmq::Socket, frames: &mut Vec<zmq::Message>) -> zmq::Result<bool> {
    frames.clear();
    let mut first = zmq::Message::new();
    match socket.recv(&mut first, zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(false),
        Err(e) => return Err(e),
    }
    let mut more = first.get_more();
    frames.push(first);
    while more {
        let mut part = zmq::Message::new();
        socket.recv(&mut part, 0)?;
        more = part.get_more();
        frames.push(part);
    }
    Ok(true)
}

/// Maps frames to a record, as the `zmq` module documentation describes.
fn decode(
    frames: &mut Vec<zmq::Message>,
    kind: ZmqSocketType,
    envelope: bool,
    endpoint: &Arc<str>,
) -> Result<ZmqRecord, String> {
    let mut topic = None;
    let mut peer = None;
    match kind {
        ZmqSocketType::Sub if frames.len() > 1 => topic = Some(frames.remove(0).to_vec()),
        ZmqSocketType::Router => {
            if frames.len() < 2 {
                return Err("a ROUTER message needs an identity and a payload".to_owned());
            }
            peer = Some(frames.remove(0).to_vec());
            if frames.len() > 1 && frames[0].is_empty() {
                frames.remove(0);
            }
        }
        _ => {}
    }
    let mut record = ZmqRecord {
        endpoint: Arc::clone(endpoint),
        socket_type: kind.as_str(),
        key: topic.clone(),
        topic,
        peer,
        payload: zmq::Message::new(),
        headers: Vec::new(),
        timestamp: None,
    };
    let enveloped = frames.first().is_some_and(|f| **f == *envelope::MARKER);
    if envelope && enveloped {
        frames.remove(0);
        let (meta, payload) = envelope::decode(std::mem::take(frames))?;
        record.key = meta.key;
        record.timestamp = meta.timestamp;
        record.headers = meta.headers;
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
        record.payload = frames.pop().unwrap_or_else(zmq::Message::new);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `parts` as received on a `kind` socket.
    fn decode_parts(
        parts: &[&[u8]],
        kind: ZmqSocketType,
        envelope: bool,
    ) -> Result<ZmqRecord, String> {
        let mut frames = parts.iter().map(|p| zmq::Message::from(*p)).collect();
        decode(&mut frames, kind, envelope, &"tcp://127.0.0.1:1".into())
    }

    #[test]
    fn frames_map_to_records() {
        let sub = decode_parts(&[b"EURUSD", b"1.1"], ZmqSocketType::Sub, false)
            .expect("a topic and a payload");
        assert_eq!(sub.key(), Some(&b"EURUSD"[..]));
        assert_eq!(sub.payload(), b"1.1");

        let router = decode_parts(&[b"peer-1", b"", b"request"], ZmqSocketType::Router, false)
            .expect("identity, delimiter, payload");
        assert_eq!(router.peer.as_deref(), Some(&b"peer-1"[..]));
        assert_eq!(router.payload(), b"request");

        let [marker, rest @ ..] = envelope::encode(Some(b"k"), None, &[("h", b"v")], b"body");
        let mut parts = vec![marker.as_slice()];
        parts.extend(rest.iter().map(Vec::as_slice));
        let enveloped = decode_parts(&parts, ZmqSocketType::Pull, true).expect("an envelope");
        assert_eq!(enveloped.key(), Some(&b"k"[..]));
        assert_eq!(enveloped.headers(), vec![("h", &b"v"[..])]);
        assert_eq!(enveloped.payload(), b"body");

        let refused = decode_parts(&parts, ZmqSocketType::Pull, false)
            .expect_err("an envelope on a plain input");
        assert!(refused.contains("set `envelope = true`"), "{refused}");
        let refused =
            decode_parts(&[b"a", b"b"], ZmqSocketType::Pull, false).expect_err("two frames");
        assert_eq!(refused, "expected one payload frame, got 2");
    }
}
