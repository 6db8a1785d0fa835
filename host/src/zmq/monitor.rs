//! The peers an input loses, seen through a libzmq socket monitor. libzmq cuts off a peer
//! that sends a message larger than the input's `max_message_bytes` and says no more than
//! that it disconnected: every disconnect is counted
//! (`switchyard_zmq_peer_disconnects_total`) and said in the log at most once per
//! [`SAY_EVERY`], with the limit, so an oversized message never goes unnoticed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::metrics::InputStats;

/// The shortest time between two log lines about disconnects.
const SAY_EVERY: Duration = Duration::from_secs(10);

/// The disconnect events of one input's socket.
pub struct Monitor {
    events: zmq::Socket,
    stats: Arc<InputStats>,
    max_message_bytes: i64,
    said: Option<Instant>,
    unsaid: u64,
}

impl Monitor {
    /// Watches `socket` (of context `ctx`) for disconnects.
    pub fn start(
        ctx: &zmq::Context,
        socket: &zmq::Socket,
        stats: Arc<InputStats>,
        max_message_bytes: i64,
    ) -> anyhow::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let endpoint = format!(
            "inproc://switchyard-monitor-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        socket
            .monitor(&endpoint, zmq::SocketEvent::DISCONNECTED.to_raw().into())
            .context("cannot monitor the socket")?;
        let events = ctx.socket(zmq::PAIR)?;
        events
            .connect(&endpoint)
            .context("cannot connect to the socket's monitor")?;
        Ok(Monitor {
            events,
            stats,
            max_message_bytes,
            said: None,
            unsaid: 0,
        })
    }

    /// The monitor's events, to poll beside the socket.
    pub fn poll_item(&self) -> zmq::PollItem<'_> {
        self.events.as_poll_item(zmq::POLLIN)
    }

    /// Counts the disconnects reported so far.
    pub fn take(&mut self) {
        // An event is two frames: its number and value, then the peer's address.
        while let Ok(frames) = self.events.recv_multipart(zmq::DONTWAIT) {
            self.stats.disconnects.fetch_add(1, Ordering::Relaxed);
            self.unsaid += 1;
            if self.said.is_none_or(|said| said.elapsed() >= SAY_EVERY) {
                let peer = frames
                    .get(1)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .unwrap_or_default();
                tracing::info!(
                    peer,
                    disconnects = self.unsaid,
                    "peers disconnected (a peer that sends a message over {} bytes, \
                     `max_message_bytes`, is cut off by libzmq)",
                    self.max_message_bytes
                );
                self.said = Some(Instant::now());
                self.unsaid = 0;
            }
        }
    }
}
