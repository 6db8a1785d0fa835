//! A ZeroMQ output (PUB, PUSH, DEALER): the input thread that produces a record sends it on
//! the socket itself, under a lock (several inputs may share an output), with no thread hop.
//! A record's acknowledgement is released once libzmq has queued it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::bail;

use super::envelope;
use crate::config::{WhenFull, ZmqEndpoint, ZmqSocketType};
use crate::metrics::OutputStats;
use crate::pipeline::{Ack, Forward, Frame, OutRecord, Sink};

/// Sends on one socket.
pub struct ZmqSink {
    name: Arc<str>,
    kind: ZmqSocketType,
    /// A `pub` that drops (instead of blocking) when a subscriber is full.
    drops: bool,
    envelope: bool,
    socket: Mutex<Sends>,
    /// Set when the output is closing: a blocked send gives up.
    closing: AtomicBool,
    stats: Arc<OutputStats>,
}

/// The socket, and how many sends since its subscriptions were last read.
struct Sends {
    socket: zmq::Socket,
    since_read: u32,
}

/// How many PUB sends go by between two reads of the subscription messages an XPUB queues.
const READ_SUBSCRIPTIONS_EVERY: u32 = 1024;

impl ZmqSink {
    /// Opens the socket.
    pub fn start(
        ctx: &zmq::Context,
        name: &str,
        config: &ZmqEndpoint,
        stats: Arc<OutputStats>,
    ) -> anyhow::Result<Self> {
        let socket = super::open_socket(ctx, &format!("output `{name}`"), config)?;
        Ok(ZmqSink {
            name: name.into(),
            kind: *config.socket.get_ref(),
            drops: *config.socket.get_ref() == ZmqSocketType::Pub
                && config.when_full != WhenFull::Block,
            envelope: config.envelope,
            socket: Mutex::new(Sends {
                socket,
                since_read: 0,
            }),
            closing: AtomicBool::new(false),
            stats,
        })
    }

    /// The socket, for one record or a run of them.
    fn lock(&self) -> std::sync::MutexGuard<'_, Sends> {
        self.socket.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one message, of `head` then (if given) `last`, on the locked socket. A PUSH
    /// or DEALER, and a PUB with `when_full = "block"`, blocks (in slices of the socket's
    /// send timeout) while it has no room; a PUB drops the record instead, and counts it.
    /// Only the first part can find the socket full (libzmq counts whole messages), so a
    /// failure leaves nothing half sent. True if the message was queued, false if dropped.
    fn send_locked(
        &self,
        sends: &mut Sends,
        head: &[&[u8]],
        mut last: Last,
    ) -> anyhow::Result<bool> {
        if self.kind == ZmqSocketType::Pub {
            sends.since_read += 1;
            if sends.since_read >= READ_SUBSCRIPTIONS_EVERY {
                sends.since_read = 0;
                // Subscriptions arrive as messages on an XPUB; libzmq has applied them
                // already, so they are only read to keep that queue short.
                while sends.socket.recv_bytes(zmq::DONTWAIT).is_ok() {}
            }
        }
        let flags = if self.drops { zmq::DONTWAIT } else { 0 };
        loop {
            match send_parts(&mut sends.socket, head, last, flags) {
                Ok(()) => return Ok(true),
                Err((zmq::Error::EAGAIN, _)) if self.drops => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(false);
                }
                Err((zmq::Error::EAGAIN, back)) if !self.closing.load(Ordering::Relaxed) => {
                    last = back;
                }
                Err((e, _)) => bail!("output `{}`: send failed: {e}", self.name),
            }
        }
    }

    /// Settles `ack` as `result` says.
    fn settle<T>(&self, ack: Option<&Ack>, result: &anyhow::Result<T>) {
        if let Some(ack) = ack {
            match result {
                Ok(_) => ack.stored(&self.name, None),
                Err(e) => ack.fail_with("send", || format!("{e:#}")),
            }
        }
    }
}

/// The last part of a message to send: bytes to copy, a second reference to a frame's
/// bytes, or a frame itself (taken: neither copied nor shared).
enum Last<'a> {
    None,
    Shared(&'a Frame),
    Owned(Frame),
}

/// Sends `head`, then `last`, as one message. On failure, gives `last` back to send again.
fn send_parts<'a>(
    socket: &mut zmq::Socket,
    head: &[&[u8]],
    last: Last<'a>,
    flags: i32,
) -> Result<(), (zmq::Error, Last<'a>)> {
    let more = head.len() + usize::from(!matches!(last, Last::None));
    for (i, part) in head.iter().enumerate() {
        let flags = if i + 1 < more {
            flags | zmq::SNDMORE
        } else {
            flags
        };
        if let Err(e) = socket.send(*part, flags) {
            return Err((e, last));
        }
    }
    match last {
        Last::None => Ok(()),
        Last::Shared(frame) => frame
            .share()
            .send(socket, flags)
            .map_err(|(e, _)| (e, Last::Shared(frame))),
        Last::Owned(frame) => frame
            .send(socket, flags)
            .map_err(|(e, f)| (e, Last::Owned(f))),
    }
}

impl Sink for ZmqSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, rec: &OutRecord<'_>, ack: Option<Ack>) -> anyhow::Result<()> {
        let topic = rec.key.unwrap_or_default();
        let publish = self.kind == ZmqSocketType::Pub;
        let result = if self.envelope {
            let frames = envelope::encode(rec.key, rec.timestamp, rec.headers, rec.payload);
            let mut all: Vec<&[u8]> = Vec::with_capacity(frames.len() + 1);
            if publish {
                all.push(topic);
            }
            all.extend(frames.iter().map(Vec::as_slice));
            self.send_locked(&mut self.lock(), &all, Last::None)
        } else if let Some(frame) = rec.frame {
            // A received frame passed unchanged goes on as a second reference to its bytes.
            let head: &[&[u8]] = if publish { &[topic] } else { &[] };
            self.send_locked(&mut self.lock(), head, Last::Shared(frame))
        } else if publish {
            // Without an envelope, a tombstone is an empty payload frame.
            let payload = rec.payload.unwrap_or_default();
            self.send_locked(&mut self.lock(), &[topic, payload], Last::None)
        } else {
            let payload = rec.payload.unwrap_or_default();
            self.send_locked(&mut self.lock(), &[payload], Last::None)
        };
        if let Ok(true) = result {
            self.stats.written.fetch_add(1, Ordering::Relaxed);
        }
        self.settle(ack.as_ref(), &result);
        result.map(drop)
    }

    fn forwards_frames(&self) -> bool {
        !self.envelope
    }

    /// Sends each message's frames as they are, as `zmq_proxy` forwards them, under one
    /// lock for the run. After a failure (the output closing), the rest fail too.
    fn forward(&self, records: &mut Vec<Forward>) -> anyhow::Result<()> {
        let publish = self.kind == ZmqSocketType::Pub;
        let mut sends = self.lock();
        let mut result = Ok(true);
        let mut written = 0;
        for Forward { frames, ack } in records.drain(..) {
            if result.is_ok() {
                let topic = frames.topic.as_deref().unwrap_or_default();
                let head: &[&[u8]] = if publish { &[topic] } else { &[] };
                result = self.send_locked(&mut sends, head, Last::Owned(frames.payload));
                written += u64::from(matches!(result, Ok(true)));
            }
            self.settle(ack.as_ref(), &result);
        }
        drop(sends);
        self.stats.written.fetch_add(written, Ordering::Relaxed);
        result.map(drop)
    }

    /// Records are in libzmq's queue once `send` returns; closing the socket waits up to
    /// its linger for them to leave.
    fn flush(&self, _timeout: Duration) -> anyhow::Result<()> {
        Ok(())
    }

    fn abort_blocked(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }
}
