//! A circuit breaker per plugin instance. A plugin that fails batch after batch (it traps on
//! every message, or its `init` fails on every rebuild) would otherwise be rebuilt and
//! called again for every batch, and for every half of it while its culprits are looked
//! for: a storm of instantiations that costs the whole input thread. After [`TRIP_AFTER`]
//! batches in a row in which every message failed, the circuit opens: the plugin is
//! neither called nor rebuilt for a pause, and its messages fail at once with the error
//! kind `unavailable`. A batch in which one message succeeds resets the count, so poison
//! messages among good ones never open it. The first batch after the pause is a trial:
//! success closes the circuit, failure opens it again for twice as long, up to
//! [`MAX_PAUSE`].

use std::time::{Duration, Instant};

/// Failed batches in a row that open the circuit.
pub const TRIP_AFTER: u32 = 5;
/// The first pause.
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// A breaker's state change, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The circuit opened for this pause, after this many failed batches in a row.
    Opened(Duration, u32),
    /// The trial after a pause failed: the circuit opened again, for this pause, after this
    /// many failed batches in a row.
    Reopened(Duration, u32),
    /// A call succeeded: the circuit closed.
    Closed,
}

/// Counts failed batches in a row and decides when the plugin may be called.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: u32,
    /// While open: until when, and the pause that led there.
    open: Option<(Instant, Duration)>,
}

impl Breaker {
    /// `Err` with the time left while the circuit is open and its pause not over.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.open {
            Some((until, _)) if now < until => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Failed batches in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a batch's outcome; the state change it caused, if any.
    pub fn record(&mut self, ok: bool, now: Instant) -> Option<Change> {
        if ok {
            self.failures = 0;
            return self.open.take().map(|_| Change::Closed);
        }
        self.failures = self.failures.saturating_add(1);
        let (pause, change): (Duration, fn(Duration, u32) -> Change) = match self.open {
            Some((_, pause)) => ((pause * 2).min(MAX_PAUSE), Change::Reopened),
            None if self.failures >= TRIP_AFTER => (FIRST_PAUSE, Change::Opened),
            None => return None,
        };
        self.open = Some((now + pause, pause));
        Some(change(pause, self.failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_backs_off_and_closes_on_success() {
        let mut b = Breaker::default();
        let t = Instant::now();
        for _ in 1..TRIP_AFTER {
            assert_eq!(b.record(false, t), None);
        }
        assert_eq!(b.record(true, t), None, "a success in between starts over");
        for _ in 1..TRIP_AFTER {
            assert_eq!(b.record(false, t), None);
        }
        assert_eq!(
            b.record(false, t),
            Some(Change::Opened(FIRST_PAUSE, TRIP_AFTER))
        );
        assert_eq!(b.check(t), Err(FIRST_PAUSE));
        let later = t + FIRST_PAUSE;
        assert_eq!(b.check(later), Ok(()), "the pause is over: a trial");
        assert_eq!(
            b.record(false, later),
            Some(Change::Reopened(FIRST_PAUSE * 2, TRIP_AFTER + 1))
        );
        let mut now = later;
        for _ in 0..10 {
            now += MAX_PAUSE;
            b.record(false, now);
        }
        assert_eq!(b.check(now), Err(MAX_PAUSE), "the pause stops growing");
        assert_eq!(b.record(true, now + MAX_PAUSE), Some(Change::Closed));
        assert_eq!(b.check(now), Ok(()));
        assert_eq!(b.failures(), 0);
    }
}
