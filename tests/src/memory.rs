//! An in-memory source and sink, to drive the route runner in process: messages built in
//! the test with acknowledgements from a real partition tracker, and outputs that keep
//! what they are given and can refuse or fail it as a broker would.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use switchyard::pipeline::{Ack, Incoming, OutRecord, PartitionTracker, Refused, Returned, Sink};
use switchyard_abi::{Header, Origin};

/// A message as a Kafka input would read it, at `offset` of partition 0 of `topic`.
#[derive(Debug)]
pub struct MemoryMessage {
    /// Topic it appears to come from.
    pub topic: String,
    /// Its offset in partition 0.
    pub offset: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Payload; `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Headers; a `None` value is a null one.
    pub headers: Vec<Header>,
    /// Its acknowledgement.
    pub ack: Option<Ack>,
}

impl MemoryMessage {
    /// A message with this payload, tracked by `tracker` at `offset`.
    pub fn new(tracker: &Arc<PartitionTracker>, offset: i64, payload: &str) -> Self {
        MemoryMessage {
            topic: "in".to_owned(),
            offset,
            key: None,
            payload: Some(payload.as_bytes().to_vec()),
            headers: Vec::new(),
            ack: Some(tracker.begin(offset)),
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.as_bytes().to_vec());
        self
    }
}

/// `payloads` as a batch read from one partition at offsets 0, 1, ..., with the tracker
/// that commits them.
pub fn batch(payloads: &[&str]) -> (Arc<PartitionTracker>, Vec<MemoryMessage>) {
    let tracker = PartitionTracker::new();
    let messages = payloads
        .iter()
        .zip(0..)
        .map(|(p, offset)| MemoryMessage::new(&tracker, offset, p))
        .collect();
    (tracker, messages)
}

impl Incoming for MemoryMessage {
    fn origin(&self) -> Origin<'_> {
        Origin::Kafka {
            topic: &self.topic,
            partition: 0,
            offset: self.offset,
        }
    }

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    fn headers(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref()))
            .collect()
    }

    fn timestamp(&self) -> Option<i64> {
        None
    }

    fn ack(&self) -> Option<&Ack> {
        self.ack.as_ref()
    }
}

/// A record an output was given, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Payload; `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Headers; a `None` value is a null one.
    pub headers: Vec<Header>,
}

impl Written {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.payload.as_deref().unwrap_or_default()).into_owned()
    }

    /// The first header of this name, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned())
    }
}

/// What a [`MemorySink`] does with a record whose payload starts with a given prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keeps it and acknowledges it.
    Accept,
    /// Refuses it at once, for good (a record too large for the broker, say).
    RefuseNow,
    /// Accepts it, then hands it back refused for good (a broker's delivery report).
    RefuseLater,
    /// Accepts it, then reports its delivery failed.
    Fail,
}

/// An output that keeps what it is given, in order.
pub struct MemorySink {
    name: Arc<str>,
    written: Mutex<Vec<Written>>,
    rules: Vec<(String, Verdict)>,
}

impl MemorySink {
    /// An output that accepts everything.
    pub fn new(name: &str) -> Arc<Self> {
        MemorySink::with_rules(name, &[])
    }

    /// An output that gives `verdict` to records whose payload starts with `prefix` (the
    /// first rule that matches), and accepts the rest.
    pub fn with_rules(name: &str, rules: &[(&str, Verdict)]) -> Arc<Self> {
        Arc::new(MemorySink {
            name: Arc::from(name),
            written: Mutex::default(),
            rules: rules.iter().map(|(p, v)| ((*p).to_owned(), *v)).collect(),
        })
    }

    /// What it kept so far.
    pub fn written(&self) -> Vec<Written> {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The payloads it kept, as text.
    pub fn texts(&self) -> Vec<String> {
        self.written().iter().map(Written::text).collect()
    }

    /// As a route's output.
    pub fn as_sink(self: &Arc<Self>) -> Arc<dyn Sink> {
        Arc::clone(self) as Arc<dyn Sink>
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, rec: &OutRecord<'_>, ack: Option<Ack>) -> anyhow::Result<()> {
        let written = Written {
            key: rec.key.map(<[u8]>::to_vec),
            payload: rec.payload.map(<[u8]>::to_vec),
            headers: rec
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.map(<[u8]>::to_vec)))
                .collect(),
        };
        let payload = rec.payload.unwrap_or_default();
        let verdict = self
            .rules
            .iter()
            .find(|(prefix, _)| payload.starts_with(prefix.as_bytes()))
            .map_or(Verdict::Accept, |(_, v)| *v);
        match verdict {
            Verdict::RefuseNow => {
                return Err(Refused {
                    output: self.name.to_string(),
                    reason: "refused by the test".to_owned(),
                }
                .into());
            }
            Verdict::RefuseLater => {
                if let Some(ack) = ack {
                    ack.refused(|ack| Returned {
                        output: self.name.to_string(),
                        reason: "refused later by the test".to_owned(),
                        key: written.key.clone(),
                        payload: written.payload.clone(),
                        headers: written.headers.clone(),
                        ack,
                    });
                }
                return Ok(());
            }
            Verdict::Fail => {
                if let Some(ack) = ack {
                    ack.fail_with("delivery", || "failed by the test".to_owned());
                }
                return Ok(());
            }
            Verdict::Accept => {}
        }
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(written);
        if let Some(ack) = ack {
            ack.stored(&self.name, None);
        }
        Ok(())
    }

    fn flush(&self, _timeout: Duration) -> anyhow::Result<()> {
        Ok(())
    }
}
