//! A borrowed view of one input message.

use switchyard_abi::{MessageView, Output};

pub use switchyard_abi::{Headers, Origin};

/// One input message, borrowed from the batch the host sent: nothing is copied until the
/// plugin asks for an owned [`Output`].
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub(crate) input: &'a str,
    pub(crate) view: MessageView<'a>,
}

impl<'a> Message<'a> {
    /// Name of the configured input the message came from.
    pub fn input(&self) -> &'a str {
        self.input
    }

    /// Where the message came from (Kafka topic/partition/offset or ZeroMQ endpoint).
    pub fn origin(&self) -> Origin<'a> {
        self.view.origin()
    }

    /// The record key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.view.key
    }

    /// The payload; empty for a tombstone (see [`Message::is_tombstone`]).
    pub fn payload(&self) -> &'a [u8] {
        self.view.payload.unwrap_or_default()
    }

    /// Whether the message has no payload at all, not even an empty one: a Kafka record
    /// with a null value (a tombstone), which a compacted topic reads as "delete this key".
    pub fn is_tombstone(&self) -> bool {
        self.view.payload.is_none()
    }

    /// The payload as UTF-8 text, if it is.
    pub fn payload_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.payload()).ok()
    }

    /// All headers, in order (names may repeat); a `None` value is a null one.
    pub fn headers(&self) -> Headers<'a> {
        self.view.headers
    }

    /// The value of the first header with this name; a null value reads as empty.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.view.headers.get(name)
    }

    /// Timestamp in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> Option<i64> {
        self.view.timestamp
    }

    /// An owned copy of this message (key, payload, headers, timestamp) bound for the
    /// route's default outputs, to modify and emit. A tombstone stays one, and null header
    /// values stay null.
    pub fn to_output(&self) -> Output {
        Output {
            destination: None,
            key: self.key().map(<[u8]>::to_vec),
            payload: self.view.payload.map(<[u8]>::to_vec),
            headers: self
                .headers()
                .iter()
                .map(|(n, v)| (n.to_owned(), v.map(<[u8]>::to_vec)))
                .collect(),
            partition: None,
            timestamp: self.timestamp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{TestMessage, run};
    use crate::{Config, Message, Outcome, Output, Plugin};

    /// Emits a copy of each message, and says whether it was a tombstone.
    struct Copy;

    impl Plugin for Copy {
        fn init(_: &Config) -> Result<Self, String> {
            Ok(Copy)
        }

        fn process(&mut self, m: &Message<'_>) -> Outcome {
            let seen = if m.is_tombstone() {
                "tombstone"
            } else {
                "value"
            };
            Outcome::Emit(vec![m.to_output().with_header("seen", seen)])
        }
    }

    #[test]
    fn a_copy_keeps_tombstones_and_null_header_values() {
        let out = run::<Copy>(
            &[],
            &[
                TestMessage::tombstone("k").null_header("trace"),
                TestMessage::new("").header("trace", ""),
            ],
        )
        .expect("init");
        let copies: Vec<&Output> = out
            .iter()
            .map(|o| match o {
                Outcome::Emit(copies) => &copies[0],
                other => panic!("expected an emit, got {other:?}"),
            })
            .collect();
        assert_eq!(copies[0].payload, None);
        assert_eq!(copies[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(copies[0].header("trace"), Some(None));
        assert_eq!(copies[0].header("seen"), Some(Some(&b"tombstone"[..])));
        assert_eq!(copies[1].payload.as_deref(), Some(&b""[..]));
        assert_eq!(copies[1].header("trace"), Some(Some(&b""[..])));
        assert_eq!(copies[1].header("seen"), Some(Some(&b"value"[..])));
    }
}
