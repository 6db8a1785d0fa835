//! What a replying input learns about one message on its way through the routes: the
//! records its outputs acknowledged (with topic, partition and offset), what the plugins
//! decided, and how it failed. The message's acknowledgement ([`super::Ack::request`])
//! settles it once every record sent on its behalf is settled; the input then answers the
//! message's sender from the [`Receipt`].
//!
//! Requests settle on whatever thread releases their last record (a Kafka producer's
//! delivery thread, or the input's own). They queue themselves on their input's
//! [`Completions`], which wakes the input's thread through a socket pair it polls beside
//! its ZeroMQ socket.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One message a replying input accepted.
#[derive(Debug)]
pub struct Request {
    /// The client (peer identity) that sent it.
    client: Arc<[u8]>,
    receipt: Mutex<Receipt>,
    settled: AtomicBool,
    /// A plugin's answer is to be sent as soon as it is given (`reply_when = "immediate"`).
    early: AtomicBool,
    completions: Arc<Completions>,
}

/// Everything a request's reply is made from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Records its outputs acknowledged.
    pub records: Vec<Stored>,
    /// Dead letters written for it.
    pub dead_letters: Vec<Stored>,
    /// Whether a plugin dropped it (on some route).
    pub dropped: bool,
    /// A plugin's rejection: the plugin and its reason.
    pub rejected: Option<(String, String)>,
    /// Its first failure: an error kind and a message.
    pub failed: Option<(String, String)>,
    /// A plugin's answer (the first one is kept).
    pub reply: Option<(Vec<u8>, Headers)>,
}

/// Headers, owned, in order; a `None` value is a null one.
pub type Headers = Vec<switchyard_abi::Header>;

/// A record an output has: the output, and where Kafka stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The output's name.
    pub output: Arc<str>,
    /// For a Kafka output: the topic, partition and offset.
    pub kafka: Option<(Arc<str>, i32, i64)>,
}

impl Request {
    /// A request from `client` to the input whose completions are `completions`.
    pub fn new(client: Arc<[u8]>, completions: &Arc<Completions>) -> Arc<Self> {
        Arc::new(Request {
            client,
            receipt: Mutex::default(),
            settled: AtomicBool::new(false),
            early: AtomicBool::new(false),
            completions: Arc::clone(completions),
        })
    }

    /// A request that is settled already with `receipt` (one the input answers itself,
    /// such as a malformed message).
    pub fn settled(
        client: Arc<[u8]>,
        completions: &Arc<Completions>,
        receipt: Receipt,
    ) -> Arc<Self> {
        Arc::new(Request {
            client,
            receipt: Mutex::new(receipt),
            settled: AtomicBool::new(true),
            early: AtomicBool::new(false),
            completions: Arc::clone(completions),
        })
    }

    /// The client that sent it.
    pub fn client(&self) -> &Arc<[u8]> {
        &self.client
    }

    fn lock(&self) -> MutexGuard<'_, Receipt> {
        self.receipt.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether every record sent on its behalf is settled.
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// Reads what happened to it so far (everything, once settled).
    pub fn read<T>(&self, f: impl FnOnce(&Receipt) -> T) -> T {
        f(&self.lock())
    }

    /// An output acknowledged one of its records (a dead letter if `dead_letter`).
    pub fn stored(&self, dead_letter: bool, stored: Stored) {
        let mut receipt = self.lock();
        if dead_letter {
            receipt.dead_letters.push(stored);
        } else {
            receipt.records.push(stored);
        }
    }

    /// Whether a plugin's answer may go before the request settles.
    pub fn answers_early(&self) -> bool {
        self.early.load(Ordering::Acquire)
    }

    /// A plugin answered it with `payload` and `headers`, to be sent once it settles, or at
    /// once if `now`. The first answer is kept.
    pub fn replied(self: &Arc<Self>, payload: Vec<u8>, headers: Headers, now: bool) {
        {
            let mut receipt = self.lock();
            if receipt.reply.is_some() {
                return;
            }
            receipt.reply = Some((payload, headers));
        }
        if now {
            self.early.store(true, Ordering::Release);
            self.completions.push(Arc::clone(self));
        }
    }

    /// A plugin dropped it.
    pub fn dropped(&self) {
        self.lock().dropped = true;
    }

    /// A plugin rejected it: `plugin`, for `reason`. The first rejection is kept.
    pub fn rejected(&self, plugin: &str, reason: &str) {
        let mut receipt = self.lock();
        if receipt.rejected.is_none() {
            receipt.rejected = Some((plugin.to_owned(), reason.to_owned()));
        }
    }

    /// It failed, with an error `kind` and `message`. The first failure is kept.
    pub fn failed(&self, kind: &str, message: &str) {
        let mut receipt = self.lock();
        if receipt.failed.is_none() {
            receipt.failed = Some((kind.to_owned(), message.to_owned()));
        }
    }

    /// Its last record is settled; `failed` if one could not be delivered.
    pub(super) fn settle(self: &Arc<Self>, failed: bool) {
        if failed {
            self.failed(
                "delivery",
                "a record could not be delivered and was not dead-lettered",
            );
        }
        self.settled.store(true, Ordering::Release);
        self.completions.push(Arc::clone(self));
    }
}

/// Requests of one input that settled since its thread last looked, and the wake-up that
/// tells the thread so.
#[derive(Debug)]
pub struct Completions {
    settled: Mutex<Vec<Arc<Request>>>,
    wake: UnixStream,
    /// Set when the input has gone: nothing is queued any more (a queued request would
    /// keep the queue alive through its own reference).
    closed: AtomicBool,
}

/// The input thread's end of [`Completions`]: readable when a request settled.
#[derive(Debug)]
pub struct Waker(UnixStream);

impl Completions {
    /// A queue and the end its input's thread polls.
    pub fn new() -> std::io::Result<(Arc<Self>, Waker)> {
        let (wake, watch) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        watch.set_nonblocking(true)?;
        Ok((
            Arc::new(Completions {
                settled: Mutex::default(),
                wake,
                closed: AtomicBool::new(false),
            }),
            Waker(watch),
        ))
    }

    fn push(&self, request: Arc<Request>) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut settled = self.settled.lock().unwrap_or_else(PoisonError::into_inner);
        settled.push(request);
        if settled.len() == 1 {
            // One byte per empty-to-non-empty change; a full buffer already says "look".
            let _ = (&self.wake).write(&[1]);
        }
    }

    /// The requests settled since the last call, in the order they settled.
    pub fn take(&self) -> Vec<Arc<Request>> {
        std::mem::take(&mut *self.settled.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Completions {
    /// The input has gone: drops what is queued and queues nothing more.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        drop(std::mem::take(
            &mut *self.settled.lock().unwrap_or_else(PoisonError::into_inner),
        ));
    }
}

impl Waker {
    /// The file descriptor to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Reads the wake-up bytes, once a poll found them, before the settled requests are
    /// taken: a request settling after that wakes the thread again.
    pub fn drain(&mut self) {
        let mut buf = [0_u8; 64];
        loop {
            match self.0.read(&mut buf) {
                Ok(n) if n == buf.len() => {}
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}
