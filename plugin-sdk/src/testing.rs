//! Native testing of plugin logic: build messages, run them through a plugin exactly as
//! the router would (same wire format, same batch loop), read back logs and counters.
//!
//! ```
//! use switchyard_plugin_sdk::testing::{TestMessage, run};
//! use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin};
//!
//! struct Upper;
//! impl Plugin for Upper {
//!     fn init(_: &Config) -> Result<Self, String> { Ok(Upper) }
//!     fn process(&mut self, m: &Message<'_>) -> Outcome {
//!         Outcome::Emit(vec![m.to_output().with_payload(m.payload().to_ascii_uppercase())])
//!     }
//! }
//!
//! let out = run::<Upper>(&[], &[TestMessage::new("hi").header("h", "v")]).unwrap();
//! let Outcome::Emit(msgs) = &out[0] else { panic!() };
//! assert_eq!(msgs[0].payload_bytes(), b"HI");
//! assert_eq!(msgs[0].header("h"), Some(Some(&b"v"[..])));
//! ```

use switchyard_abi::{BatchWriter, MessageBuf, Outcome, decode_result};

use crate::backend;
use crate::level::Level;
use crate::{Config, Plugin};

/// Takes the log lines written on this thread so far.
pub fn take_logs() -> Vec<(Level, String)> {
    backend::take_logs()
}

/// Takes the counter totals reported on this thread so far, in first-use order.
pub fn take_counters() -> Vec<(String, u64)> {
    backend::take_counters()
}

/// A message to feed a plugin in a test.
#[derive(Debug, Clone, Default)]
pub struct TestMessage(MessageBuf);

impl TestMessage {
    /// A message with this payload.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        TestMessage(MessageBuf {
            payload: Some(payload.into()),
            ..MessageBuf::default()
        })
    }

    /// A message with this key and no payload at all: a Kafka tombstone.
    pub fn tombstone(key: impl Into<Vec<u8>>) -> Self {
        TestMessage(MessageBuf {
            key: Some(key.into()),
            ..MessageBuf::default()
        })
    }

    /// Sets the key.
    #[must_use]
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.0.key = Some(key.into());
        self
    }

    /// Appends a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.0.headers.push((name.into(), Some(value.into())));
        self
    }

    /// Appends a header with a null value.
    #[must_use]
    pub fn null_header(mut self, name: impl Into<String>) -> Self {
        self.0.headers.push((name.into(), None));
        self
    }

    /// Sets the timestamp in milliseconds.
    #[must_use]
    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.0.timestamp = Some(timestamp_ms);
        self
    }

    /// Makes the message come from a Kafka topic, partition and offset.
    #[must_use]
    pub fn from_kafka(mut self, topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        self.0.kafka = Some((topic.into(), partition, offset));
        self
    }
}

/// Runs `messages` as one batch from the input `test` through a fresh `P` built from
/// `config`, exactly as the router's batch loop would, and returns one outcome per
/// message. `Err` carries the plugin's `init` error.
pub fn run<P: Plugin>(
    config: &[(&str, &str)],
    messages: &[TestMessage],
) -> Result<Vec<Outcome>, String> {
    let config = Config::new(
        config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    let mut plugin = P::init(&config)?;
    Ok(run_batch(&mut plugin, messages))
}

/// Runs `messages` as one batch through an existing plugin value (to test state kept
/// across batches).
pub fn run_batch<P: Plugin>(plugin: &mut P, messages: &[TestMessage]) -> Vec<Outcome> {
    let mut batch = BatchWriter::new();
    batch.start("test");
    for m in messages {
        batch.push_buf(&m.0);
    }
    let result = crate::rt::process_one_batch(plugin, batch.as_bytes());
    match decode_result(&result, messages.len()) {
        Ok(outcomes) => outcomes,
        Err(e) => panic!("the SDK wrote a malformed result: {e}"),
    }
}
