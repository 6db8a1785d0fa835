//! The thread side of an input: the loop every transport's `run_input` is built from.
//!
//! Each input runs on its own thread: it takes a batch of whatever its source has queued,
//! runs it through every route that reads the input, and between two batches looks at its
//! control channel. The router holds the channel's other end ([`crate::router`]'s running
//! input). A [`Swap`] arriving there hands over new route runners (a reload); the router
//! dropping its end means stop: the input finishes the batch in hand, drains and returns,
//! and the thread's end dropping tells the router it is done.

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::{Incoming, RouteRunner};

/// Most messages taken into one batch.
pub const MAX_BATCH: usize = 256;
/// How long an idle input blocks in its source for a first message before it looks at its
/// control channel again.
pub const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How long a stopping input waits for its in-flight messages and a sink for its queue.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// New route runners for a running input, and where to say they are in use.
pub struct Swap {
    /// The runners of the new configuration, for this input.
    pub runners: Vec<RouteRunner>,
    /// Sent to (or dropped) once the input has let the old runners go.
    pub done: Sender<()>,
}

/// The input thread's end of its control channel.
pub struct InputControl {
    swaps: Receiver<Swap>,
}

impl InputControl {
    /// The thread's end of a control channel whose router end sends [`Swap`]s.
    pub fn new(swaps: Receiver<Swap>) -> Self {
        InputControl { swaps }
    }

    /// Between two batches: dead-letters what outputs refused since the last batch, takes
    /// the newest runners handed over, if any, and says so once the old ones are gone
    /// (which closes nothing: sinks are shared and closed by the router). False once the
    /// router has asked the input to stop.
    pub fn between_batches(&self, runners: &mut Vec<RouteRunner>) -> bool {
        self.between_batches_with(runners, |_| Ok(()))
            .unwrap_or(false)
    }

    /// [`InputControl::between_batches`], calling `switch` with new runners before they
    /// replace the old ones: an exactly-once input commits its open transaction there, so
    /// every message is processed by one configuration, and moves the new runners'
    /// outputs into its transactions. An error from `switch` stops the input.
    pub fn between_batches_with(
        &self,
        runners: &mut Vec<RouteRunner>,
        mut switch: impl FnMut(&mut Vec<RouteRunner>) -> anyhow::Result<()>,
    ) -> anyhow::Result<bool> {
        settle_returns(runners);
        loop {
            match self.swaps.try_recv() {
                Ok(mut swap) => {
                    switch(&mut swap.runners)?;
                    *runners = swap.runners;
                    let _ = swap.done.send(());
                }
                Err(TryRecvError::Empty) => return Ok(true),
                Err(TryRecvError::Disconnected) => return Ok(false),
            }
        }
    }
}

/// Dead-letters what the runners' outputs refused after accepting it.
pub fn settle_returns(runners: &mut [RouteRunner]) {
    for runner in runners {
        runner.settle_returns();
    }
}

/// Runs a batch from input `name` through every route that reads it (the last may take
/// frames out of its messages, see [`RouteRunner::process`]). Generic over the
/// message type, so the route reads each field without a virtual call.
pub fn run_batch<M: Incoming>(name: &str, runners: &mut [RouteRunner], batch: &mut [M]) {
    let count = runners.len();
    for (i, runner) in runners.iter_mut().enumerate() {
        runner.process(name, batch, i + 1 == count);
    }
}
