//! The router's side of one input's thread: starting it, handing it new route runners,
//! asking it to stop, and learning that it ended. The thread's side is
//! [`crate::pipeline::input`]; the body of its loop belongs to its transport.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::config::resolved::InputKind;
use crate::metrics::InputStats;
use crate::pipeline::{InputControl, RouteRunner, Swap};
use crate::{kafka, zmq};

/// An input thread that runs, as the router holds it.
pub(super) struct RunningInput {
    /// What the input is; a reload that resolves it to anything else restarts it.
    pub kind: InputKind,
    /// Readiness, lag and problems: written by the thread, read by the admin endpoint.
    pub stats: Arc<InputStats>,
    /// Numbers this start of the input, so that the exit notice of a thread a reload
    /// replaced is not taken for the new thread's.
    pub id: u64,
    /// The router's end of the thread's control channel. The router sends [`Swap`]s on
    /// it; dropping it (setting `None`) asks the thread to drain and stop.
    swaps: Option<Sender<Swap>>,
    /// The thread; its result says why it ended.
    thread: JoinHandle<anyhow::Result<()>>,
}

/// Sends its input's id on the router's exit channel when the thread ends, however it
/// ends (return, error or panic).
struct ExitNotice {
    exits: Sender<u64>,
    id: u64,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.exits.send(self.id);
    }
}

/// What every input thread needs from the router besides its own definition.
pub(super) struct Spawn<'a> {
    /// The ZeroMQ context all sockets share.
    pub zmq: &'a ::zmq::Context,
    /// Where a thread says that it ended.
    pub exits: &'a Sender<u64>,
}

impl Spawn<'_> {
    /// Starts input `name`'s thread with `runners`.
    pub fn start(
        &self,
        name: &str,
        id: u64,
        kind: InputKind,
        stats: Arc<InputStats>,
        runners: Vec<RouteRunner>,
    ) -> anyhow::Result<RunningInput> {
        stats
            .ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let (swaps, control) = unbounded();
        let notice = ExitNotice {
            exits: self.exits.clone(),
            id,
        };
        let thread = {
            let (name, kind, stats, ctx) = (
                name.to_owned(),
                kind.clone(),
                Arc::clone(&stats),
                self.zmq.clone(),
            );
            std::thread::Builder::new()
                .name(format!("input-{name}"))
                .spawn(move || {
                    let _notice = notice;
                    // Every line the thread logs (its source's included) names the input.
                    let _span = tracing::info_span!("input", input = %name).entered();
                    let control = InputControl::new(control);
                    let result = match &kind {
                        InputKind::Kafka {
                            client,
                            topics,
                            group,
                            member,
                            exactly_once,
                        } => kafka::run_input(
                            &name,
                            client,
                            (group, member.as_deref(), exactly_once.as_ref()),
                            topics,
                            stats,
                            &control,
                            runners,
                        ),
                        InputKind::Zmq(endpoint) => {
                            zmq::run_input(&ctx, &name, endpoint, &stats, &control, runners)
                        }
                    };
                    if result.is_ok() {
                        tracing::info!("input drained");
                    }
                    result
                })?
        };
        Ok(RunningInput {
            kind,
            stats,
            id,
            swaps: Some(swaps),
            thread,
        })
    }
}

impl RunningInput {
    /// Hands `runners` over; the receiver hears (or disconnects) once the thread has let
    /// its old runners go. `None` if the thread is gone.
    pub fn swap(&self, runners: Vec<RouteRunner>) -> Option<Receiver<()>> {
        let (done, switched) = bounded(1);
        self.swaps
            .as_ref()?
            .send(Swap { runners, done })
            .ok()
            .map(|()| switched)
    }

    /// Asks the thread to finish its batch, drain and stop, without waiting.
    pub fn ask_to_stop(&mut self) {
        self.swaps = None;
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread to end and logs how it ended.
    pub fn join(self, name: &str) {
        if let Err(e) = self.result(name) {
            tracing::error!("{e:#}");
        }
    }

    /// Asks the input to stop and waits until it has drained and committed.
    pub fn stop(mut self, name: &str) {
        self.ask_to_stop();
        self.join(name);
    }

    /// Waits for the thread to end; its error, if it failed, names the input.
    pub fn result(self, name: &str) -> anyhow::Result<()> {
        match self.thread.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.context(format!("input `{name}`"))),
            Err(_) => Err(anyhow::anyhow!("input `{name}`: its thread panicked")),
        }
    }
}
