//! A message a ZeroMQ input received, as the pipeline sees it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use switchyard_abi::Origin;

use crate::config::ZmqSocketType;
use crate::pipeline::{Ack, Frame, Frames, Incoming};

/// A message received from a ZeroMQ socket. Kept small, with what most messages lack
/// behind one pointer: records are moved into the batch one by one.
#[derive(Debug)]
pub struct ZmqRecord {
    pub(super) payload: Frame,
    endpoint: &'static str,
    socket_type: &'static str,
    /// A topic, a peer, an envelope's metadata.
    pub(super) extras: Option<Box<Extras>>,
    /// A replying input's acknowledgement.
    pub(super) ack: Option<Ack>,
}

/// What a [`ZmqRecord`] holds besides its payload, when it holds anything.
#[derive(Debug, Default)]
pub(super) struct Extras {
    /// A SUB's topic frame: the record's key too, unless an envelope gave one.
    pub(super) topic: Option<Frame>,
    /// A ROUTER's peer: for a replying input, the key its gateway knows the client by.
    pub(super) peer: Option<Arc<[u8]>>,
    /// Whether the record came in an envelope, which gives its key, headers and timestamp.
    pub(super) enveloped: bool,
    pub(super) key: Option<Vec<u8>>,
    /// The payload frame stands for no payload at all (an envelope's tombstone).
    pub(super) null_payload: bool,
    pub(super) headers: Vec<switchyard_abi::Header>,
    pub(super) timestamp: Option<i64>,
}

impl ZmqRecord {
    /// A record of `payload` alone.
    pub(super) fn plain(payload: Frame, endpoint: &'static str, kind: ZmqSocketType) -> Self {
        ZmqRecord {
            payload,
            endpoint,
            socket_type: kind.as_str(),
            extras: None,
            ack: None,
        }
    }

    pub(super) fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// Sets the peer a ROUTER received it from.
    pub(super) fn set_peer(&mut self, peer: Option<Arc<[u8]>>) {
        if peer.is_some() {
            self.extras().peer = peer;
        }
    }

    fn null_payload(&self) -> bool {
        self.extras.as_ref().is_some_and(|e| e.null_payload)
    }
}

impl Incoming for ZmqRecord {
    fn origin(&self) -> Origin<'_> {
        let extras = self.extras.as_deref();
        Origin::Zmq {
            endpoint: self.endpoint,
            socket_type: self.socket_type,
            topic: extras.and_then(|e| e.topic.as_deref()),
            peer: extras.and_then(|e| e.peer.as_deref()),
        }
    }

    fn key(&self) -> Option<&[u8]> {
        let extras = self.extras.as_deref()?;
        if extras.enveloped {
            extras.key.as_deref()
        } else {
            extras.topic.as_deref()
        }
    }

    fn payload(&self) -> Option<&[u8]> {
        (!self.null_payload()).then_some(&*self.payload)
    }

    fn headers(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.extras.as_ref().map_or_else(Vec::new, |e| {
            e.headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_deref()))
                .collect()
        })
    }

    fn timestamp(&self) -> Option<i64> {
        self.extras.as_ref().and_then(|e| e.timestamp)
    }

    fn ack(&self) -> Option<&Ack> {
        self.ack.as_ref()
    }

    fn frame(&self) -> Option<&Frame> {
        (!self.null_payload()).then_some(&self.payload)
    }

    fn take_frames(&mut self) -> Option<Frames> {
        if self.extras.as_ref().is_some_and(|e| e.enveloped) {
            return None;
        }
        Some(Frames {
            topic: self.extras.as_mut().and_then(|e| e.topic.take()),
            payload: std::mem::take(&mut self.payload),
        })
    }
}

/// The endpoint label records carry, kept once per distinct label for the life of the
/// process, so that a record points at it rather than counting references to it. Labels
/// come from the configuration's endpoints, so there are few.
pub(super) fn intern(label: &str) -> &'static str {
    static LABELS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut labels = LABELS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = labels.get(label) {
        return known;
    }
    let label: &'static str = Box::leak(label.into());
    labels.insert(label);
    label
}
