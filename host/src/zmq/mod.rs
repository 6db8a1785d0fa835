//! ZeroMQ sources and sinks. An input's socket lives on that input's thread and is read
//! there in batches; an output's socket is written by the input threads that produce to
//! it, under a lock, with no thread hop on either side.
//!
//! Guarantees: a ZeroMQ input is **at-most-once** (ZeroMQ gives no acknowledgement),
//! except a ROUTER with `reply = "ack"`, which answers each request once its records are
//! acknowledged (the gateway, in `gateway`): at-least-once for a client that retries. A
//! PUSH or DEALER output acknowledges a record once libzmq has queued it and blocks while
//! its queue is full, which back-pressures a Kafka input behind it; a PUB output never
//! blocks: a record a subscriber has no room for (its high-water mark is reached) is
//! dropped and counted in `switchyard_zmq_dropped_total`.
//!
//! Multipart mapping:
//!
//! | socket | frames |
//! |---|---|
//! | PUB → / → SUB | `[topic, payload]`: the topic frame is the record key on the way out and becomes the key on the way in |
//! | PUSH → / → PULL, DEALER → | `[payload]` |
//! | → ROUTER | `[peer-identity, payload]`; frames up to an empty delimiter after the identity are the routing envelope, echoed before a replying input's answer |
//!
//! With `envelope = true` the payload frame is replaced by five frames that carry what a
//! Kafka record has, tombstones and null header values included:
//! `["switchyard-envelope-2", key, meta, headers, payload]`, laid out in `envelope.rs` and
//! documented for peers in `docs/configuration.md` ("ZeroMQ envelopes"); the headers frame
//! is the plugin wire format's header block. Version 1 is still read.

mod envelope;
mod gateway;
mod monitor;
mod record;
mod sink;
mod source;

pub use record::ZmqRecord;
pub use sink::ZmqSink;
pub use source::ZmqSource;
pub(crate) use source::decode_received;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{ReplyMode, WhenFull, ZmqEndpoint, ZmqSocketType};
use crate::metrics::{InputStats, OutputStats};
use crate::pipeline::{DRAIN_TIMEOUT, IDLE_WAIT, InputControl, MAX_BATCH, RouteRunner, Sink};

/// The body of a ZeroMQ input's thread: opens the socket, then takes batches through
/// `runners` until `control` says stop; then closes the socket and finishes what it had
/// already received.
pub fn run_input(
    ctx: &zmq::Context,
    name: &str,
    endpoint: &ZmqEndpoint,
    stats: &Arc<InputStats>,
    control: &InputControl,
    mut runners: Vec<RouteRunner>,
) -> anyhow::Result<()> {
    let mut source = ZmqSource::start(ctx, name, endpoint, stats)?;
    stats
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut stopped: Option<Instant> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if !control.between_batches(&mut runners) && stopped.is_none() {
            // Stop taking messages, then finish what was received (and answer it).
            source.stop_receiving();
            stopped = Some(Instant::now());
        }
        let wait = if stopped.is_some() {
            Duration::from_millis(10)
        } else {
            IDLE_WAIT
        };
        source.recv_batch(&mut batch, MAX_BATCH, wait);
        if batch.is_empty() {
            if let Some(since) = stopped {
                if source.is_finished() {
                    return Ok(());
                }
                if since.elapsed() >= DRAIN_TIMEOUT {
                    source.give_up();
                    return Ok(());
                }
            }
            continue;
        }
        crate::pipeline::run_batch(name, &mut runners, &mut batch);
        batch.clear();
        source.answer();
    }
}

/// Opens ZeroMQ output `name`.
pub fn open_sink(
    ctx: &zmq::Context,
    name: &str,
    endpoint: &ZmqEndpoint,
    stats: Arc<OutputStats>,
) -> anyhow::Result<Arc<dyn Sink>> {
    Ok(Arc::new(ZmqSink::start(ctx, name, endpoint, stats)?))
}

/// How long a blocking send or receive waits before its thread looks up to check for
/// shutdown.
const POLL_MS: i32 = 100;

/// Creates, configures, binds and connects a socket as configured.
fn open_socket(ctx: &zmq::Context, name: &str, e: &ZmqEndpoint) -> anyhow::Result<zmq::Socket> {
    let kind = match e.socket.get_ref() {
        ZmqSocketType::Sub => zmq::SUB,
        ZmqSocketType::Pull => zmq::PULL,
        ZmqSocketType::Router => zmq::ROUTER,
        // An XPUB with XPUB_NODROP behaves as a PUB towards subscribers, but reports a full
        // subscriber queue as EAGAIN instead of dropping silently, so drops can be counted.
        ZmqSocketType::Pub => zmq::XPUB,
        ZmqSocketType::Push => zmq::PUSH,
        ZmqSocketType::Dealer => zmq::DEALER,
    };
    let mut socket = ctx
        .socket(kind)
        .with_context(|| format!("`{name}`: cannot create socket"))?;
    let hwm = match (e.hwm, e.socket.get_ref()) {
        (Some(hwm), _) => Some(hwm),
        (None, ZmqSocketType::Pub) => Some(ZmqEndpoint::PUB_HWM),
        (None, _) => None,
    };
    if let Some(hwm) = hwm {
        socket.set_rcvhwm(hwm)?;
        socket.set_sndhwm(hwm)?;
    }
    if e.reply == ReplyMode::Ack {
        // Each client's queue of answers holds at least its whole window: a client that
        // reads its answers as they come never has one held back for room, and one that
        // does not read is still bounded by its window.
        let window = e.max_in_flight.unwrap_or(ZmqEndpoint::MAX_IN_FLIGHT);
        let window = i32::try_from(window).unwrap_or(i32::MAX);
        socket.set_sndhwm(socket.get_sndhwm()?.max(window))?;
    }
    if e.socket.get_ref().is_input() {
        socket.set_maxmsgsize(
            e.max_message_bytes
                .unwrap_or(ZmqEndpoint::MAX_MESSAGE_BYTES),
        )?;
    }
    socket.set_linger(e.linger_ms.unwrap_or(1000))?;
    if *e.socket.get_ref() == ZmqSocketType::Pub && e.when_full != WhenFull::DropPerSubscriber {
        set_xpub_nodrop(&mut socket)?;
    }
    socket.set_rcvtimeo(POLL_MS)?;
    socket.set_sndtimeo(POLL_MS)?;
    if *e.socket.get_ref() == ZmqSocketType::Sub {
        if e.subscribe.is_empty() {
            socket.set_subscribe(b"")?;
        }
        for prefix in &e.subscribe {
            socket.set_subscribe(prefix.as_bytes())?;
        }
    }
    for endpoint in &e.bind {
        socket
            .bind(endpoint.get_ref())
            .with_context(|| format!("`{name}`: cannot bind {}", endpoint.get_ref()))?;
    }
    for endpoint in &e.connect {
        socket
            .connect(endpoint.get_ref())
            .with_context(|| format!("`{name}`: cannot connect to {}", endpoint.get_ref()))?;
    }
    Ok(socket)
}

/// Sets ZMQ_XPUB_NODROP, which the zmq crate does not wrap.
fn set_xpub_nodrop(socket: &mut zmq::Socket) -> anyhow::Result<()> {
    let on: std::ffi::c_int = 1;
    // SAFETY: the socket pointer is valid for the socket's lifetime, and the option value
    // is a C int that outlives the call, as zmq_setsockopt requires.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            zmq_sys::ZMQ_XPUB_NODROP as std::ffi::c_int,
            (&raw const on).cast(),
            std::mem::size_of::<std::ffi::c_int>(),
        )
    };
    if rc != 0 {
        // SAFETY: zmq_errno reads libzmq's thread-local error number; it takes no
        // arguments and has no preconditions.
        let errno = unsafe { zmq_sys::zmq_errno() };
        anyhow::bail!(
            "cannot set ZMQ_XPUB_NODROP: {}",
            zmq::Error::from_raw(errno)
        );
    }
    Ok(())
}

/// The endpoint a socket is known by in origins: its first bind, else its first connect.
fn endpoint_label(e: &ZmqEndpoint) -> String {
    e.bind
        .iter()
        .chain(&e.connect)
        .next()
        .map(|s| s.get_ref().clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(options: &str) -> zmq::Socket {
        let toml = format!("socket = \"router\"\nbind = \"tcp://127.0.0.1:*\"\n{options}");
        let endpoint: ZmqEndpoint = toml::from_str(&toml).expect("a router endpoint");
        open_socket(&zmq::Context::new(), "test", &endpoint).expect("a bound socket")
    }

    #[test]
    fn a_replying_router_queues_a_whole_window_of_answers_per_client() {
        let sndhwm = |options| {
            router(options)
                .get_sndhwm()
                .expect("its send high-water mark")
        };
        assert_eq!(sndhwm("reply = \"ack\"\nmax_in_flight = 8000"), 8000);
        assert_eq!(sndhwm("reply = \"ack\"\nmax_in_flight = 10"), 1000);
        assert_eq!(sndhwm("reply = \"ack\"\nhwm = 20000"), 20000);
        assert_eq!(sndhwm("reply = \"ack\""), 1000);
        assert_eq!(sndhwm(""), 1000);
    }
}
