//! The wire format of a Switchyard plugin batch and its result, as specified in
//! `wit/plugin.wit` (interface `handler`): encoders and zero-copy decoders used by both the
//! host and the plugin SDK, so the two sides can never disagree about a byte.
//!
//! Decoders never panic on malformed input; they return [`DecodeError`] naming what was
//! malformed and where.

#![deny(missing_docs)]

mod read;
mod write;

pub use read::{
    BatchReader, HeaderIter, Headers, MessageView, decode_headers, decode_result, is_all_pass,
};
pub use write::{BatchWriter, ResultWriter, encode_headers};

/// Version 1 of the wire format (contract 0.1.0): a batch for a plugin of contract 0.1.0
/// or 0.1.1, and a result that needs nothing later.
pub const VERSION: u32 = 1;

/// Version of a result that holds a `reply` (contract 0.1.1). Readers accept every
/// version up to their own; writers use the lowest version that holds what they write, so
/// a plugin that never replies still runs on a host of contract 0.1.0.
pub const VERSION_REPLY: u32 = 2;

/// Version of a batch that may hold null payloads and null header values (contract
/// 0.1.2), written only to a plugin of contract 0.1.2 or later.
pub const BATCH_VERSION_NULLS: u32 = 2;

/// Version of a result that writes a null payload (a tombstone) or a null header value
/// (contract 0.1.2).
pub const RESULT_VERSION_NULLS: u32 = 3;

/// The length value that marks an optional `bytes` field as absent.
pub const ABSENT: u32 = u32::MAX;

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// No origin (a message made up by a test harness, for example).
    None,
    /// A Kafka record.
    Kafka {
        /// Topic the record was read from.
        topic: &'a str,
        /// Partition of that topic.
        partition: i32,
        /// Offset of the record within its partition.
        offset: i64,
    },
    /// A ZeroMQ message.
    Zmq {
        /// The endpoint of the socket that received it, such as `tcp://127.0.0.1:5556`.
        endpoint: &'a str,
        /// The socket type, lower case: `sub`, `pull`, `router`, ...
        socket_type: &'a str,
        /// The topic frame of a PUB/SUB message.
        topic: Option<&'a [u8]>,
        /// The identity of the sending peer (ROUTER sockets).
        peer: Option<&'a [u8]>,
    },
}

/// What a plugin decided for one input message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward the input unchanged to the route's default outputs.
    Pass,
    /// Filter the input out.
    Drop,
    /// Send the input to the route's dead-letter output with this reason.
    Reject(String),
    /// Replace the input with these messages (possibly none).
    Emit(Vec<Output>),
    /// Answer the request this message is (from a ROUTER input with `reply = "ack"`), and
    /// replace the input with the reply's messages (possibly none). For a message from any
    /// other input this is an error of kind `reply`.
    Reply(Reply),
}

impl Outcome {
    /// Answers the request with `payload`, writing nothing.
    pub fn reply(payload: impl Into<Vec<u8>>) -> Self {
        Outcome::Reply(Reply::new(payload))
    }
}

/// A plugin's answer to a request, and the messages it writes besides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// What the client reads.
    pub payload: Vec<u8>,
    /// Headers of the answer: sent in an envelope to a client of an input with
    /// `envelope = true`, dropped otherwise. A `None` value is a null one.
    pub headers: Vec<Header>,
    /// Messages to write, as an `emit` would (possibly none).
    pub emit: Vec<Output>,
}

impl Reply {
    /// An answer with this payload that writes nothing.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Reply {
            payload: payload.into(),
            ..Reply::default()
        }
    }

    /// Appends a header to the answer.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), Some(value.into())));
        self
    }

    /// Writes `output` besides answering.
    #[must_use]
    pub fn and_emit(mut self, output: Output) -> Self {
        self.emit.push(output);
        self
    }
}

/// A message produced by a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Named destination declared by the route; `None` means the route's default outputs.
    pub destination: Option<String>,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Payload bytes; `None` writes a record with no value at all (a Kafka tombstone,
    /// which a compacted topic reads as "delete this key").
    pub payload: Option<Vec<u8>>,
    /// Headers, in order; names may repeat. A `None` value is a null one.
    pub headers: Vec<Header>,
    /// Kafka partition to write to; `None` lets the output choose (by key).
    pub partition: Option<i32>,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

impl Output {
    /// A message with this payload and nothing else, bound for the default outputs.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Output {
            payload: Some(payload.into()),
            ..Output::default()
        }
    }

    /// A record with this key and no value: a Kafka tombstone, which a compacted topic
    /// reads as "delete this key".
    pub fn tombstone(key: impl Into<Vec<u8>>) -> Self {
        Output {
            key: Some(key.into()),
            ..Output::default()
        }
    }

    /// Sends the message to the named destination instead of the default outputs.
    #[must_use]
    pub fn to(mut self, destination: impl Into<String>) -> Self {
        self.destination = Some(destination.into());
        self
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Removes the key.
    #[must_use]
    pub fn without_key(mut self) -> Self {
        self.key = None;
        self
    }

    /// Replaces the payload.
    #[must_use]
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = Some(payload.into());
        self
    }

    /// Removes the payload: the record becomes a tombstone.
    #[must_use]
    pub fn without_payload(mut self) -> Self {
        self.payload = None;
        self
    }

    /// The payload, empty for a tombstone.
    pub fn payload_bytes(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }

    /// Appends a header (existing headers of the same name are kept).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), Some(value.into())));
        self
    }

    /// Appends a header with a null value.
    #[must_use]
    pub fn with_null_header(mut self, name: impl Into<String>) -> Self {
        self.headers.push((name.into(), None));
        self
    }

    /// The value of the first header with this name (`Some(None)` for a null one).
    pub fn header(&self, name: &str) -> Option<Option<&[u8]>> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// Removes every header of this name.
    #[must_use]
    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    /// Pins the Kafka partition.
    #[must_use]
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    #[must_use]
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

/// An owned message, for tools and tests that build batches from data of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageBuf {
    /// Kafka topic, partition and offset it appears to come from; `None` for no origin.
    pub kafka: Option<(String, i32, i64)>,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Payload bytes; `None` for a record with no value (a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Headers, in order; names may repeat. A `None` value is a null one.
    pub headers: Vec<Header>,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

/// A header as owned by [`Output`], [`Reply`] and [`MessageBuf`]: its name, and its value
/// or `None` for a null one (Kafka tells a null header value from an empty one).
pub type Header = (String, Option<Vec<u8>>);

/// A buffer that does not follow the wire format: where, and what was wrong. Small and
/// `Copy`, so decoding stays cheap on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset at which decoding failed.
    pub offset: usize,
    /// What was wrong.
    pub problem: Problem,
}

/// What was wrong with a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The buffer ends inside this field.
    Truncated(&'static str),
    /// This required field is marked absent.
    Absent(&'static str),
    /// This text field is not UTF-8.
    NotUtf8(&'static str),
    /// The buffer is of another version of the format.
    Version(u32),
    /// An outcome tag this version does not know.
    UnknownOutcome(u8),
    /// A result holds a different number of outcomes than its batch had messages.
    Count {
        /// Outcomes in the result.
        found: u32,
        /// Messages in the batch.
        expected: usize,
    },
    /// Bytes left over after the last outcome.
    Trailing(usize),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.problem {
            Problem::Truncated(field) => write!(f, "truncated {field}")?,
            Problem::Absent(field) => write!(f, "{field} is absent but required")?,
            Problem::NotUtf8(field) => write!(f, "{field} is not UTF-8")?,
            Problem::Version(v) => write!(f, "unsupported wire format version {v}")?,
            Problem::UnknownOutcome(tag) => write!(f, "unknown outcome tag {tag}")?,
            Problem::Count { found, expected } => {
                write!(f, "{found} outcomes for a batch of {expected}")?;
            }
            Problem::Trailing(n) => write!(f, "{n} unexpected trailing bytes")?,
        }
        write!(f, " at byte {}", self.offset)
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod conformance;
