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
use crate::pipeline::{Ack, Frame, OutRecord, Sink};

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

    /// Sends one message of `frames`. A PUSH or DEALER, and a PUB with `when_full = "block"`,
    /// blocks (in slices of the socket's send timeout) while it has no room; a PUB drops the
    /// record instead, and counts it.
    fn send_frames(&self, frames: &[&[u8]], last: Option<&Frame>) -> anyhow::Result<()> {
        let publish = self.kind == ZmqSocketType::Pub;
        let mut sends = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        if publish {
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
            let sent = match last {
                None => sends.socket.send_multipart(frames.iter(), flags),
                Some(frame) => send_with(&mut sends.socket, frames, frame, flags),
            };
            match sent {
                Ok(()) => {
                    self.stats.written.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(zmq::Error::EAGAIN) if self.drops => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(zmq::Error::EAGAIN) if !self.closing.load(Ordering::Relaxed) => {}
                Err(e) => bail!("output `{}`: send failed: {e}", self.name),
            }
        }
    }
}

/// Sends `head`, then a second reference to `frame`'s bytes (no copy), as one message.
/// Only the first part can find the socket full (libzmq counts whole messages), so a
/// failure leaves nothing half sent.
fn send_with(
    socket: &mut zmq::Socket,
    head: &[&[u8]],
    frame: &Frame,
    flags: i32,
) -> zmq::Result<()> {
    for part in head {
        socket.send(*part, flags | zmq::SNDMORE)?;
    }
    frame.share().send(socket, flags).map_err(|(e, _)| e)
}

impl Sink for ZmqSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, rec: &OutRecord<'_>, ack: Option<Ack>) -> anyhow::Result<()> {
        let topic = rec.key.unwrap_or_default();
        let result = if self.envelope {
            let frames = envelope::encode(rec.key, rec.timestamp, rec.headers, rec.payload);
            let mut all: Vec<&[u8]> = Vec::with_capacity(frames.len() + 1);
            if self.kind == ZmqSocketType::Pub {
                all.push(topic);
            }
            all.extend(frames.iter().map(Vec::as_slice));
            self.send_frames(&all, None)
        } else if let Some(frame) = rec.frame {
            // A received frame passed unchanged goes on as it is, as `zmq_proxy` does.
            if self.kind == ZmqSocketType::Pub {
                self.send_frames(&[topic], Some(frame))
            } else {
                self.send_frames(&[], Some(frame))
            }
        } else if self.kind == ZmqSocketType::Pub {
            // Without an envelope, a tombstone is an empty payload frame.
            self.send_frames(&[topic, rec.payload.unwrap_or_default()], None)
        } else {
            self.send_frames(&[rec.payload.unwrap_or_default()], None)
        };
        if let Some(ack) = &ack {
            match &result {
                Ok(()) => ack.stored(&self.name, None),
                Err(e) => ack.fail_with("send", || format!("{e:#}")),
            }
        }
        result
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
