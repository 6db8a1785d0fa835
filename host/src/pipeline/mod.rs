//! The pipeline: what a message goes through between its input and its outputs. Each input
//! runs on its own thread, from consume through the plugin chain to produce, taking batches
//! of whatever is queued; the route's plugin instances belong to that thread.

mod ack;
mod chain;
mod frame;
pub mod input;
pub mod request;
mod route;
mod send;

use std::time::Duration;

use switchyard_abi::Origin;

pub use ack::{Ack, PartitionTracker, Returned, Returns};
pub use frame::Frame;
pub use input::{DRAIN_TIMEOUT, IDLE_WAIT, InputControl, MAX_BATCH, Swap, run_batch};
pub use request::{Completions, Receipt, Request, Stored, Waker};
pub use route::{RouteRunner, RouteSpec};

/// A message as the pipeline sees it, whatever its source.
pub trait Incoming {
    /// Where it came from.
    fn origin(&self) -> Origin<'_>;
    /// Record key.
    fn key(&self) -> Option<&[u8]>;
    /// Payload bytes; `None` for a record with no value (a Kafka tombstone).
    fn payload(&self) -> Option<&[u8]>;
    /// Headers in order; a `None` value is a null one.
    fn headers(&self) -> Vec<(&str, Option<&[u8]>)>;
    /// Timestamp in milliseconds since the Unix epoch.
    fn timestamp(&self) -> Option<i64>;
    /// Its acknowledgement, for inputs that commit (Kafka) or reply (a ZeroMQ ROUTER with
    /// `reply = "ack"`).
    fn ack(&self) -> Option<&Ack>;
    /// The ZeroMQ frame its payload lies in, for a ZeroMQ output to send on without a copy.
    fn frame(&self) -> Option<&Frame> {
        None
    }
    /// Takes the ZeroMQ frames a message received as it is consists of, for a ZeroMQ output
    /// to send on without a copy or a second reference, as `zmq_proxy` forwards: its topic
    /// frame (a SUB's), if it has one, and its payload frame. The message is empty after
    /// it. `None` for a message that is more than its frames (an envelope, a Kafka record).
    fn take_frames(&mut self) -> Option<Frames> {
        None
    }
}

/// The frames of a message received from ZeroMQ, taken to be forwarded
/// ([`Incoming::take_frames`]).
#[derive(Debug)]
pub struct Frames {
    /// A SUB's topic frame, which is the record's key.
    pub topic: Option<Frame>,
    /// The payload.
    pub payload: Frame,
}

/// A message's frames on their way to a ZeroMQ output, with the acknowledgement the output
/// settles once it has them.
#[derive(Debug)]
pub struct Forward {
    /// The frames.
    pub frames: Frames,
    /// The acknowledgement.
    pub ack: Option<Ack>,
}

/// A record for a sink, borrowed from the message or plugin output it comes from.
#[derive(Debug, Clone, Copy)]
pub struct OutRecord<'a> {
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Payload bytes; `None` writes a record with no value (a Kafka tombstone).
    pub payload: Option<&'a [u8]>,
    /// Headers in order; a `None` value is a null one.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// Kafka partition to write to; `None` partitions by key.
    pub partition: Option<i32>,
    /// Timestamp in milliseconds.
    pub timestamp: Option<i64>,
    /// The ZeroMQ frame `payload` lies in, when it is a received payload passed unchanged:
    /// a ZeroMQ output sends it on as it is, without copying its bytes.
    pub frame: Option<&'a Frame>,
}

/// An output refused a record for good: sending it again cannot succeed (too large for the
/// broker, not authorised, a partition that does not exist, ...). The route dead-letters
/// the message instead, and its input moves on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("output `{output}` refused the record: {reason}")]
pub struct Refused {
    /// The output.
    pub output: String,
    /// Why, in the broker's or client's words.
    pub reason: String,
}

/// Where records go: a Kafka topic or a ZeroMQ socket.
pub trait Sink: Send + Sync {
    /// The output's name.
    fn name(&self) -> &str;
    /// Hands a record over. Blocks while the output is full (back-pressure). The sink keeps
    /// `ack` until the record is delivered, and marks it failed if it cannot be. A record
    /// refused at once for good is a [`Refused`] error (and `ack` is dropped untouched); one
    /// refused later goes back to its route through [`Ack::refused`].
    fn send(&self, record: &OutRecord<'_>, ack: Option<Ack>) -> anyhow::Result<()>;
    /// Whether the output takes received ZeroMQ frames as they are ([`Sink::forward`]).
    fn forwards_frames(&self) -> bool {
        false
    }
    /// Sends received frames on as they are, in order, taking them (`records` is left
    /// empty, its room kept for the next run): for each, what `send` does with a record.
    /// Called only on an output that [`Sink::forwards_frames`].
    fn forward(&self, records: &mut Vec<Forward>) -> anyhow::Result<()> {
        records.clear();
        anyhow::bail!("output `{}` does not forward ZeroMQ frames", self.name())
    }
    /// Waits until everything handed over is delivered, or `timeout` passes.
    fn flush(&self, timeout: Duration) -> anyhow::Result<()>;
    /// For a Kafka output: its topic and counters (an exactly-once input writes the
    /// output's records through its own transactional producer).
    fn kafka(&self) -> Option<(&str, &std::sync::Arc<crate::metrics::OutputStats>)> {
        None
    }
    /// Makes a `send` blocked on a full output give up (its record fails), so a shutdown
    /// that waited long enough can finish.
    fn abort_blocked(&self) {}
}

impl<T: Incoming + ?Sized> Incoming for &T {
    fn origin(&self) -> Origin<'_> {
        (**self).origin()
    }
    fn key(&self) -> Option<&[u8]> {
        (**self).key()
    }
    fn payload(&self) -> Option<&[u8]> {
        (**self).payload()
    }
    fn headers(&self) -> Vec<(&str, Option<&[u8]>)> {
        (**self).headers()
    }
    fn timestamp(&self) -> Option<i64> {
        (**self).timestamp()
    }
    fn ack(&self) -> Option<&Ack> {
        (**self).ack()
    }
    fn frame(&self) -> Option<&Frame> {
        (**self).frame()
    }
}
