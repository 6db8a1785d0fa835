//! A ZeroMQ input (SUB, PULL, ROUTER): a socket thread that receives multipart messages and
//! hands them to the input's pipeline thread through a bounded channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, bounded};
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
    payload: Vec<u8>,
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

/// Receives from one socket on a thread of its own.
pub struct ZmqSource {
    rx: Receiver<ZmqRecord>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ZmqSource {
    /// Opens the socket (so bind errors surface at once) and starts its thread.
    pub fn start(ctx: &zmq::Context, name: &str, config: &ZmqEndpoint) -> anyhow::Result<Self> {
        let socket = super::open_socket(ctx, &format!("input `{name}`"), config)?;
        let (tx, rx) = bounded(4096);
        let stop = Arc::new(AtomicBool::new(false));
        let endpoint: Arc<str> = super::endpoint_label(config).into();
        let kind = *config.socket.get_ref();
        let envelope = config.envelope;
        let input = name.to_owned();
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("zmq-in-{name}"))
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let frames = match socket.recv_multipart(0) {
                        Ok(frames) => frames,
                        Err(zmq::Error::EAGAIN) => continue,
                        Err(e) => {
                            tracing::error!(input = %input, "receive failed: {e}");
                            break;
                        }
                    };
                    let mut record = match decode(frames, kind, envelope, &endpoint) {
                        Ok(record) => record,
                        Err(e) => {
                            tracing::warn!(input = %input, "message skipped: {e}");
                            continue;
                        }
                    };
                    loop {
                        match tx.send_timeout(record, Duration::from_millis(super::POLL_MS as u64))
                        {
                            Ok(()) => break,
                            Err(SendTimeoutError::Timeout(back))
                                if !stopping.load(Ordering::Relaxed) =>
                            {
                                record = back;
                            }
                            Err(_) => return,
                        }
                    }
                }
            })
            .with_context(|| format!("input `{name}`: cannot start its socket thread"))?;
        Ok(ZmqSource {
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// Waits up to `wait` for a first message, then takes what else is queued, up to `max`.
    pub fn recv_batch(&self, max: usize, wait: Duration) -> Vec<ZmqRecord> {
        let mut batch = Vec::new();
        match self.rx.recv_timeout(wait) {
            Ok(first) => batch.push(first),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return batch,
        }
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        batch
    }
}

impl ZmqSource {
    /// Stops receiving and closes the socket; what was already received stays queued for
    /// [`ZmqSource::recv_batch`], so a stopping input can finish it.
    pub fn stop_receiving(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ZmqSource {
    fn drop(&mut self) {
        self.stop_receiving();
    }
}

/// Maps frames to a record, as the `zmq` module documentation describes.
fn decode(
    mut frames: Vec<Vec<u8>>,
    kind: ZmqSocketType,
    envelope: bool,
    endpoint: &Arc<str>,
) -> Result<ZmqRecord, String> {
    let mut topic = None;
    let mut peer = None;
    match kind {
        ZmqSocketType::Sub if frames.len() > 1 => topic = Some(frames.remove(0)),
        ZmqSocketType::Router => {
            if frames.len() < 2 {
                return Err("a ROUTER message needs an identity and a payload".to_owned());
            }
            peer = Some(frames.remove(0));
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
        payload: Vec::new(),
        headers: Vec::new(),
        timestamp: None,
    };
    if envelope && frames.first().is_some_and(|f| f == envelope::MARKER) {
        frames.remove(0);
        let (meta, payload) = envelope::decode(&mut frames)?;
        record.key = meta.key;
        record.timestamp = meta.timestamp;
        record.headers = meta.headers;
        record.payload = payload;
    } else {
        if frames.len() != 1 {
            return Err(format!("expected one payload frame, got {}", frames.len()));
        }
        record.payload = frames.pop().unwrap_or_default();
    }
    Ok(record)
}
