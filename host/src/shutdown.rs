//! Asking a running router to drain and stop, and waiting for that request.
//!
//! A [`Shutdown`] is a channel nobody sends on: triggering it drops the only sender, which
//! closes the channel and wakes every thread blocked on it at once (in `select!`, in
//! [`Shutdown::wait`] or [`Shutdown::wait_timeout`]). Nothing polls a flag.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded};

/// A request to stop, shared by everything that must notice it; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Dropped (set to `None`) by the first [`Shutdown::trigger`].
    sender: Arc<Mutex<Option<Sender<()>>>>,
    /// Disconnected once the sender is gone; never carries a message.
    receiver: Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A request not made yet.
    pub fn new() -> Self {
        let (sender, receiver) = bounded(0);
        Shutdown {
            sender: Arc::new(Mutex::new(Some(sender))),
            receiver,
        }
    }

    /// Asks everything watching to stop; the second and later calls do nothing.
    pub fn trigger(&self) {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Triggers on SIGINT and SIGTERM; a second signal exits at once with status 130, for
    /// an operator who will not wait for the drain.
    pub fn on_signals(&self) -> anyhow::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let shutdown = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    if seen > 1 {
                        tracing::warn!(signal, "second signal: exiting without draining");
                        std::process::exit(130);
                    }
                    tracing::info!(signal, "stopping: draining in-flight messages");
                    shutdown.trigger();
                }
            })?;
        Ok(())
    }

    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        matches!(self.receiver.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Blocks until a stop is asked for.
    pub fn wait(&self) {
        let _ = self.receiver.recv();
    }

    /// Blocks for at most `timeout`; true if a stop was asked for.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        matches!(
            self.receiver.recv_timeout(timeout),
            Err(RecvTimeoutError::Disconnected)
        )
    }

    /// The channel that closes on a stop, for a `crossbeam_channel::select!` beside other
    /// channels.
    pub fn channel(&self) -> &Receiver<()> {
        &self.receiver
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_trigger_wakes_every_waiter_at_once() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_triggered());
        assert!(!shutdown.wait_timeout(Duration::from_millis(1)));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let s = shutdown.clone();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    s.wait();
                    started.elapsed()
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        shutdown.trigger();
        shutdown.trigger();
        for waiter in waiters {
            let waited = waiter.join().expect("a waiter panicked");
            assert!(waited < Duration::from_secs(5), "woke after {waited:?}");
        }
        assert!(shutdown.is_triggered());
        assert!(shutdown.wait_timeout(Duration::from_secs(60)));
    }
}
