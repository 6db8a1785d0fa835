//! Acknowledgement tracking for at-least-once inputs: an input offset becomes committable
//! only when every output it produced (and its dead-letter record) is acknowledged, and
//! every earlier offset of its partition is too.
//!
//! Each run of consecutive messages from one partition in a batch shares one [`Ack`]; every
//! record sent on behalf of one of them holds a clone until its sink confirms delivery. When
//! the last clone is dropped, the run is complete. A failed delivery marks the run failed,
//! and the partition never commits past its first offset: the input reads the run again
//! (a Kafka input pauses the partition and seeks back to it). One acknowledgement per run rather than per message saves an allocation and two
//! lock round trips per message; the price is that a failure re-reads the whole run.
//!
//! A route sends its records with an acknowledgement of its own, a child of the input's
//! ([`Ack::child`]), which carries the route's [`Returns`]: a record an output refuses for
//! good (too large, not authorised, ...) is handed back there with the child, instead of
//! failing the run, and the route dead-letters it; the run completes once the dead letter
//! is delivered.
//!
//! A message from a replying input has an acknowledgement of its own ([`Ack::request`]),
//! whose [`Request`] collects what its outputs stored and how it fared; settling it wakes
//! the input, which answers the sender.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::request::{Request, Stored};

/// The in-flight offsets of one input partition.
#[derive(Debug, Default)]
pub struct PartitionTracker {
    state: Mutex<TrackerState>,
}

#[derive(Debug, Default)]
struct TrackerState {
    /// Runs read, by first offset (ascending), each with whether it is complete; complete
    /// ones are removed from the front.
    window: VecDeque<(i64, bool)>,
    /// How many runs in `window` are not complete.
    pending: usize,
    /// One past the highest offset read.
    next: Option<i64>,
    /// The lowest offset whose delivery failed: commits stop there.
    failed_at: Option<i64>,
}

impl PartitionTracker {
    /// A tracker with nothing in flight.
    pub fn new() -> Arc<Self> {
        Arc::new(PartitionTracker::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a message read at `offset` and returns its acknowledgement.
    pub fn begin(self: &Arc<Self>, offset: i64) -> Ack {
        self.begin_run(offset, offset)
    }

    /// Registers a run of messages read one after the other, from `first` to `last`
    /// (ascending), and returns the acknowledgement they share.
    pub fn begin_run(self: &Arc<Self>, first: i64, last: i64) -> Ack {
        let mut s = self.lock();
        // A partition's offsets are read in ascending order, so this appends; an offset
        // read again (after an offset reset) is kept in order beside the earlier read.
        let at = if s.window.back().is_none_or(|(o, _)| *o < first) {
            s.window.len()
        } else {
            s.window.partition_point(|(o, _)| *o <= first)
        };
        s.window.insert(at, (first, false));
        s.pending += 1;
        let end = last.max(first) + 1;
        s.next = Some(s.next.map_or(end, |n| n.max(end)));
        Ack(Arc::new(Pending {
            owner: Owner::Tracker {
                tracker: Arc::clone(self),
                offset: first,
            },
            failed: AtomicBool::new(false),
            returns: None,
            dead_letter: false,
        }))
    }

    /// Notes that the message at `offset` could not be written: commits stop there.
    fn failed(&self, offset: i64) {
        let mut s = self.lock();
        s.failed_at = Some(s.failed_at.map_or(offset, |f| f.min(offset)));
    }

    /// Completes the run starting at `offset` (a failure in it is noted already, by
    /// [`Ack::fail_at`]).
    fn complete(&self, offset: i64) {
        let mut s = self.lock();
        // The first read of this offset that is not complete yet.
        let from = s.window.partition_point(|(o, _)| *o < offset);
        if let Some(entry) = s
            .window
            .range_mut(from..)
            .take_while(|(o, _)| *o == offset)
            .find(|(_, done)| !*done)
        {
            entry.1 = true;
            s.pending -= 1;
        }
        while s.window.front().is_some_and(|(_, done)| *done) {
            s.window.pop_front();
        }
    }

    /// The offset to commit (the next one to read), if any progress can be committed: the
    /// lowest offset still in flight, or one past the highest read, but never past a
    /// failed message.
    pub fn committable(&self) -> Option<i64> {
        let s = self.lock();
        let next = s.next?;
        let low = s.window.front().map_or(next, |(o, _)| *o);
        Some(s.failed_at.map_or(low, |f| f.min(low)))
    }

    /// Number of runs of messages still in flight.
    pub fn in_flight(&self) -> usize {
        self.lock().pending
    }

    /// The lowest offset whose delivery failed, if one did: commits stop there.
    pub fn failed_at(&self) -> Option<i64> {
        self.lock().failed_at
    }

    /// Whether a delivery failed and commits are held back.
    pub fn stalled(&self) -> bool {
        self.lock().failed_at.is_some()
    }
}

#[derive(Debug)]
struct Pending {
    owner: Owner,
    /// Whether a message of the run could not be written.
    failed: AtomicBool,
    /// Where a record refused for good goes back to (a route's child acknowledgement).
    returns: Option<Arc<Returns>>,
    /// Whether it travels with a dead letter (a request's records say which is which).
    dead_letter: bool,
}

/// Who learns that an acknowledgement completed.
#[derive(Debug)]
enum Owner {
    /// The partition tracker of the run starting at `offset`.
    Tracker {
        tracker: Arc<PartitionTracker>,
        offset: i64,
    },
    /// The input's acknowledgement this route-level one is part of.
    Parent(Ack),
    /// A message of a replying input, answered once this completes.
    Request(Arc<Request>),
}

impl Drop for Pending {
    fn drop(&mut self) {
        match &self.owner {
            Owner::Tracker { tracker, offset } => tracker.complete(*offset),
            // A failure reached the parent when it happened (`Ack::fail_at`).
            Owner::Parent(_) => {}
            Owner::Request(request) => request.settle(self.failed.load(Ordering::Acquire)),
        }
    }
}

/// A record an output refused for good, handed back to the route that sent it.
#[derive(Debug)]
pub struct Returned {
    /// The output that refused it.
    pub output: String,
    /// Why, in the output's words (the broker's error).
    pub reason: String,
    /// The record's key.
    pub key: Option<Vec<u8>>,
    /// The record's payload; `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// The record's headers; a `None` value is a null one.
    pub headers: Vec<switchyard_abi::Header>,
    /// The record's acknowledgement: its run completes once this is dropped.
    pub ack: Ack,
}

/// Where a route's outputs hand back the records they refused for good; the route's input
/// thread takes them between two batches.
#[derive(Debug, Default)]
pub struct Returns(Mutex<Vec<Returned>>);

impl Returns {
    /// Takes everything handed back so far.
    pub fn take(&self) -> Vec<Returned> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The acknowledgement of one input message. Clone it for every record sent on the
/// message's behalf; the message completes when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Ack(Arc<Pending>);

impl Ack {
    /// The acknowledgement of one message of a replying input: `request` settles when it
    /// completes.
    pub fn request(request: Arc<Request>) -> Ack {
        Ack(Arc::new(Pending {
            owner: Owner::Request(request),
            failed: AtomicBool::new(false),
            returns: None,
            dead_letter: false,
        }))
    }

    /// Marks the run failed: its partition will not commit past its first offset.
    pub fn fail(&self) {
        self.fail_at(i64::MIN);
    }

    /// Marks the run failed from its message at `offset` on: its partition will not
    /// commit past that offset (the messages before it in the run are written).
    pub fn fail_at(&self, offset: i64) {
        self.0.failed.store(true, Ordering::Release);
        // Said at once, not only once the run completes: the input stops reading the
        // partition before its next batch, and a commit never sees the run complete
        // without its failure.
        match &self.0.owner {
            Owner::Tracker {
                tracker,
                offset: first,
            } => tracker.failed(offset.max(*first)),
            Owner::Parent(parent) => parent.fail_at(offset),
            Owner::Request(_) => {}
        }
    }

    /// Marks the run failed, and tells a replying input's sender why: an error `kind`
    /// and a message (made only for a request).
    pub fn fail_with(&self, kind: &str, message: impl FnOnce() -> String) {
        if let Some(request) = self.replying() {
            request.failed(kind, &message());
        }
        self.fail();
    }

    /// The request this acknowledgement belongs to, if its message came from a replying
    /// input.
    pub fn replying(&self) -> Option<&Arc<Request>> {
        match &self.0.owner {
            Owner::Request(request) => Some(request),
            Owner::Parent(parent) => parent.replying(),
            Owner::Tracker { .. } => None,
        }
    }

    /// Output `output` has the record this acknowledgement travelled with; for a Kafka
    /// output, at `topic`, `partition`, `offset`. Only a request keeps this.
    pub fn stored(&self, output: &Arc<str>, kafka: Option<(&Arc<str>, i32, i64)>) {
        if let Some(request) = self.replying() {
            request.stored(
                self.0.dead_letter,
                Stored {
                    output: Arc::clone(output),
                    kafka: kafka.map(|(topic, p, o)| (Arc::clone(topic), p, o)),
                },
            );
        }
    }

    /// The acknowledgement a dead letter of this message travels with: this one, or for a
    /// request one that marks the record it is stored as a dead letter.
    pub fn for_dead_letter(&self) -> Ack {
        if self.replying().is_none() {
            return self.clone();
        }
        Ack(Arc::new(Pending {
            owner: Owner::Parent(self.clone()),
            failed: AtomicBool::new(false),
            returns: None,
            dead_letter: true,
        }))
    }

    /// A route's acknowledgement for records it sends on behalf of this one: it completes
    /// this one when it completes, and records refused for good go back to `returns`.
    pub fn child(&self, returns: &Arc<Returns>) -> Ack {
        Ack(Arc::new(Pending {
            owner: Owner::Parent(self.clone()),
            failed: AtomicBool::new(false),
            returns: Some(Arc::clone(returns)),
            dead_letter: false,
        }))
    }

    /// The input's acknowledgement a route-level one is part of (itself for an input's).
    pub fn parent(&self) -> &Ack {
        match &self.0.owner {
            Owner::Parent(parent) => parent,
            Owner::Tracker { .. } | Owner::Request(_) => self,
        }
    }

    /// Whether two acknowledgements are the same one.
    pub fn same(&self, other: &Ack) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Hands a record refused for good back to the route that sent it; the run completes
    /// once the route has dead-lettered it. Without a route to hand it to, the run fails
    /// (its partition stops there).
    pub fn refused(self, returned: impl FnOnce(Ack) -> Returned) {
        match self.0.returns.clone() {
            Some(returns) => returns
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(returned(self)),
            None => self.fail(),
        }
    }

    /// Gives up the reference as a raw pointer, to travel with a record through a C
    /// library; [`Ack::from_raw`] takes it back.
    pub fn into_raw(self) -> *const () {
        Arc::into_raw(self.0).cast()
    }

    /// Takes back a reference given up by [`Ack::into_raw`].
    ///
    /// # Safety
    ///
    /// `ptr` must come from [`Ack::into_raw`] and be taken back exactly once.
    pub unsafe fn from_raw(ptr: *const ()) -> Self {
        // SAFETY: the caller passes a pointer from `Arc::into_raw` of an `Arc<Pending>`,
        // once.
        Ack(unsafe { Arc::from_raw(ptr.cast::<Pending>()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_advance_contiguously() {
        let t = PartitionTracker::new();
        assert_eq!(t.committable(), None);
        let a = t.begin(10);
        let b = t.begin(11);
        let c = t.begin(12);
        let c2 = c.clone();
        assert_eq!(t.committable(), Some(10));
        drop(b);
        assert_eq!(t.committable(), Some(10), "10 is still in flight");
        drop(a);
        assert_eq!(t.committable(), Some(12));
        drop(c);
        assert_eq!(t.committable(), Some(12), "a clone of 12 is still out");
        drop(c2);
        assert_eq!(t.committable(), Some(13));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn an_offset_read_twice_completes_twice() {
        let t = PartitionTracker::new();
        let a = t.begin(5);
        let b = t.begin(6);
        let again = t.begin(5);
        assert_eq!(t.in_flight(), 3);
        drop(a);
        assert_eq!(
            t.committable(),
            Some(5),
            "the second read of 5 is in flight"
        );
        drop(again);
        assert_eq!(t.committable(), Some(6));
        drop(b);
        assert_eq!(t.committable(), Some(7));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_run_commits_as_one() {
        let t = PartitionTracker::new();
        let first = t.begin_run(10, 14);
        let second = t.begin_run(15, 20);
        let record_of_11 = first.clone();
        drop(second);
        assert_eq!(t.committable(), Some(10), "10..=14 are still in flight");
        drop(first);
        assert_eq!(
            t.committable(),
            Some(10),
            "a record of the first run is still out"
        );
        drop(record_of_11);
        assert_eq!(t.committable(), Some(21));
        assert_eq!(t.in_flight(), 0);

        let failing = t.begin_run(21, 30);
        failing.fail();
        drop(failing);
        drop(t.begin_run(31, 40));
        assert_eq!(
            t.committable(),
            Some(21),
            "a failure anywhere in a run holds commits at its start"
        );
    }

    #[test]
    fn a_refused_record_goes_back_to_its_route_and_its_run_waits_for_it() {
        let t = PartitionTracker::new();
        let run = t.begin_run(0, 9);
        let returns = Arc::new(Returns::default());
        let routed = run.child(&returns);
        drop(run);
        let record = routed.clone();
        drop(routed);
        record.refused(|ack| Returned {
            output: "out".into(),
            reason: "too large".into(),
            key: None,
            payload: Some(b"x".to_vec()),
            headers: Vec::new(),
            ack,
        });
        assert_eq!(
            t.committable(),
            Some(0),
            "the refused record is not settled"
        );
        let mut back = returns.take();
        assert_eq!(back.len(), 1);
        let dead_letter = back[0].ack.parent().clone();
        drop(back.pop());
        assert_eq!(t.committable(), Some(0), "its dead letter is in flight");
        drop(dead_letter);
        assert_eq!(t.committable(), Some(10));
        assert!(!t.stalled());

        // Refused with no route to hand it back to: the run fails.
        let alone = t.begin_run(10, 10);
        alone.refused(|_| unreachable!("no returns"));
        assert_eq!(t.committable(), Some(10));
        assert!(t.stalled());
    }

    #[test]
    fn a_failure_holds_commits_back() {
        let t = PartitionTracker::new();
        let a = t.begin(0);
        let b = t.begin(1);
        b.fail();
        drop(b);
        drop(a);
        assert_eq!(t.committable(), Some(1));
        drop(t.begin(2));
        assert_eq!(t.committable(), Some(1));
        assert!(t.stalled());
    }
}
