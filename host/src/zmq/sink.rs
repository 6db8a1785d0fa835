//! A ZeroMQ output (PUB, PUSH, DEALER): the pipeline hands frames to a bounded channel; a
//! socket thread sends them and releases their acknowledgement once libzmq has them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use crossbeam_channel::{RecvTimeoutError, Sender, bounded};

use super::envelope;
use crate::config::{ZmqEndpoint, ZmqSocketType};
use crate::metrics::OutputStats;
use crate::pipeline::{Ack, OutRecord, Sink};

type Job = (Vec<Vec<u8>>, Option<Ack>);

/// Sends from one socket on a thread of its own.
pub struct ZmqSink {
    name: String,
    kind: ZmqSocketType,
    envelope: bool,
    tx: Option<Sender<Job>>,
    /// Records handed over and not yet sent.
    pending: Arc<AtomicUsize>,
    /// Records sent.
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ZmqSink {
    /// Opens the socket and starts its thread.
    pub fn start(
        ctx: &zmq::Context,
        name: &str,
        config: &ZmqEndpoint,
        stats: Arc<OutputStats>,
    ) -> anyhow::Result<Self> {
        let socket = super::open_socket(ctx, &format!("output `{name}`"), config)?;
        let publish = *config.socket.get_ref() == ZmqSocketType::Pub;
        let (tx, rx) = bounded::<Job>(1024);
        let pending = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (pending2, sent2, stopping) =
            (Arc::clone(&pending), Arc::clone(&sent), Arc::clone(&stop));
        let output = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("zmq-out-{name}"))
            .spawn(move || {
                loop {
                    if publish {
                        // Subscriptions arrive as messages on an XPUB; libzmq has applied them
                        // already, so they are only read to keep the queue empty.
                        while socket.recv_bytes(zmq::DONTWAIT).is_ok() {}
                    }
                    let (frames, ack) =
                        match rx.recv_timeout(Duration::from_millis(super::POLL_MS as u64)) {
                            Ok(job) => job,
                            Err(RecvTimeoutError::Timeout) if !stopping.load(Ordering::Relaxed) => {
                                continue;
                            }
                            Err(_) => break,
                        };
                    // Blocks (in POLL_MS slices) while a PUSH or DEALER socket has no room;
                    // a PUB drops the record instead, and counts it.
                    let flags = if publish { zmq::DONTWAIT } else { 0 };
                    let mut dropped = false;
                    let delivered = loop {
                        match socket.send_multipart(frames.iter(), flags) {
                            Ok(()) => break true,
                            Err(zmq::Error::EAGAIN) if publish => {
                                stats.dropped.fetch_add(1, Ordering::Relaxed);
                                dropped = true;
                                break true;
                            }
                            Err(zmq::Error::EAGAIN) if !stopping.load(Ordering::Relaxed) => {}
                            Err(e) => {
                                tracing::error!(output = %output, "send failed: {e}");
                                break false;
                            }
                        }
                    };
                    if delivered && !dropped {
                        sent2.fetch_add(1, Ordering::Relaxed);
                    } else if let Some(ack) = &ack {
                        ack.fail();
                    }
                    drop(ack);
                    pending2.fetch_sub(1, Ordering::Release);
                }
            })
            .with_context(|| format!("output `{name}`: cannot start its socket thread"))?;
        Ok(ZmqSink {
            name: name.to_owned(),
            kind: *config.socket.get_ref(),
            envelope: config.envelope,
            tx: Some(tx),
            pending,
            sent,
            stop,
            thread: Some(thread),
        })
    }

    /// Records sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Sink for ZmqSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, rec: &OutRecord<'_>, ack: Option<Ack>) -> anyhow::Result<()> {
        let mut frames = Vec::with_capacity(6);
        if self.kind == ZmqSocketType::Pub {
            frames.push(rec.key.unwrap_or_default().to_vec());
        }
        if self.envelope {
            frames.extend(envelope::encode(
                rec.key,
                rec.timestamp,
                rec.headers,
                rec.payload,
            ));
        } else {
            frames.push(rec.payload.to_vec());
        }
        let Some(tx) = &self.tx else {
            bail!("output `{}` is closed", self.name);
        };
        self.pending.fetch_add(1, Ordering::Acquire);
        if tx.send((frames, ack)).is_err() {
            self.pending.fetch_sub(1, Ordering::Release);
            bail!("output `{}` is closed", self.name);
        }
        Ok(())
    }

    fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.pending.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                bail!(
                    "output `{}`: {} records not sent within {timeout:?}",
                    self.name,
                    self.pending.load(Ordering::Acquire)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

impl Drop for ZmqSink {
    fn drop(&mut self) {
        self.tx = None;
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
