//! The router owns the running set and replaces it while it runs.
//!
//! A [`Router`] holds what is running: the embedded clusters, one sink per output, one
//! thread per input running its routes. A reload builds a complete new set beside it (a
//! plan, in [`plan`]: parsed, validated, plugins compiled and instantiated, every `init`
//! run, new outputs opened) and only then applies it ([`apply`]):
//!
//! 1. inputs that were removed, or whose definition changed, stop: they finish their batch,
//!    wait for its deliveries and commit;
//! 2. every unchanged input is handed its new route runners and switches between two
//!    batches, so a batch is processed entirely by one version; its consumer, group
//!    membership and assignment stay as they are;
//! 3. added and changed inputs start;
//! 4. outputs no route uses any more are flushed and closed.
//!
//! Each input thread is steered through a channel ([`input`]): new runners are sent on
//! it, and dropping it asks the thread to stop; every thread says on the router's exit
//! channel when it ends, so [`Router::serve`] learns of a failed input without polling.
//!
//! Must stay on the thread that built it: the embedded cluster is not `Send`.

mod apply;
mod input;
mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, never, select, unbounded};

use self::input::RunningInput;
use self::plan::OpenOutput;
use crate::config::{self, ConfigFile};
use crate::control::{ReloadError, ReloadReport, Request};
use crate::kafka::EmbeddedCluster;
use crate::metrics::Metrics;
use crate::pipeline::DRAIN_TIMEOUT;
use crate::plugin::{PluginRuntime, RuntimeOptions};
use crate::shutdown::Shutdown;
use crate::state::{Published, RouterHandle};

/// Every problem of a configuration that `run` would meet before it connects anywhere: the
/// file's own checks ([`config::validate`], plugins loaded and initialised when `runtime` is
/// given) and librdkafka's refusals of each cluster's options. `validate` and every start
/// and reload go through this one check, so they agree.
pub fn check(
    config: &ConfigFile,
    base_dir: &Path,
    runtime: Option<&PluginRuntime>,
) -> Vec<config::Located> {
    let mut problems = config::validate(config, base_dir, runtime);
    problems.extend(crate::kafka::check_clusters(config));
    problems
}

/// How a router runs, beyond its file.
#[derive(Debug, Clone, Default)]
pub struct RouterOptions {
    /// Values of `${VAR}` that take precedence over the environment.
    pub variables: BTreeMap<String, String>,
    /// Benchmarking only: every plugin chain is replaced by a native identity (every
    /// message passes, nothing is encoded), on the same threads with the same batching.
    pub native_identity: bool,
}

/// A running configuration, and the means to replace it.
pub struct Router {
    /// The configuration file, read again on every reload.
    path: PathBuf,
    options: RouterOptions,
    /// Compiles plugins, caching by content, for every plan.
    runtime: PluginRuntime,
    /// The context every ZeroMQ socket belongs to.
    zmq: zmq::Context,
    /// Every counter; shared with handles, kept across reloads.
    metrics: Arc<Metrics>,
    /// The running set as handles see it; replaced by [`apply`]'s last step.
    running: Published,
    /// Counts applied sets.
    generation: u64,
    /// The file of the running set.
    config: Option<ConfigFile>,
    /// Running input threads, by input name. An input leaves this map when it is stopped
    /// (by a reload or [`Router::stop`]) or found ended by itself.
    inputs: BTreeMap<String, RunningInput>,
    /// The last id given to an input thread.
    next_input_id: u64,
    /// Every input thread holds a clone of the sender and sends its id when it ends.
    exits: (Sender<u64>, Receiver<u64>),
    /// Open outputs, by name; their sinks are shared with the input threads' runners.
    outputs: BTreeMap<String, OpenOutput>,
    /// Embedded clusters by name; declared last so they are dropped after the producers
    /// and consumers that talk to them.
    embedded: BTreeMap<String, EmbeddedCluster>,
}

impl Router {
    /// A router with nothing running yet; `path` is the configuration file, whose relative
    /// plugin paths are resolved against its directory.
    pub fn new(path: &Path) -> anyhow::Result<Self> {
        Ok(Router {
            path: path.to_owned(),
            options: RouterOptions::default(),
            runtime: PluginRuntime::new(RuntimeOptions::default())?,
            zmq: zmq::Context::new(),
            metrics: Arc::default(),
            running: Arc::default(),
            generation: 0,
            config: None,
            inputs: BTreeMap::new(),
            next_input_id: 0,
            exits: unbounded(),
            outputs: BTreeMap::new(),
            embedded: BTreeMap::new(),
        })
    }

    /// Builds and starts `config` (already read from the router's file as `text`, with
    /// `options.variables` taking precedence over the environment, as they will on every
    /// reload).
    pub fn start(
        path: &Path,
        options: RouterOptions,
        config: ConfigFile,
        text: &str,
    ) -> anyhow::Result<Self> {
        let mut router = Router::new(path)?;
        router.options = options;
        let plan = router.plan(config, text)?;
        let report = router.apply(plan, Instant::now());
        router.metrics.record_load(true);
        tracing::info!(
            inputs = router.inputs.len(),
            routes = router.config.as_ref().map_or(0, |c| c.routes.len()),
            version = %report.version,
            "switchyard running"
        );
        Ok(router)
    }

    /// The running configuration.
    pub fn config(&self) -> Option<&ConfigFile> {
        self.config.as_ref()
    }

    /// Counters, state and addresses of the router.
    pub fn handle(&self) -> RouterHandle {
        RouterHandle {
            metrics: Arc::clone(&self.metrics),
            embedded: self
                .embedded
                .iter()
                .map(|(name, c)| (name.clone(), c.bootstrap()))
                .collect(),
            running: Arc::clone(&self.running),
        }
    }

    /// Reads the file again and, if the whole new set is good, swaps it in. On error the
    /// running set is untouched; the error names the problem and its place.
    pub fn reload(&mut self, trigger: &str) -> Result<ReloadReport, ReloadError> {
        let started = Instant::now();
        let variables = &self.options.variables;
        let lookup = |name: &str| {
            variables
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        };
        let result = config::load_with(&self.path, lookup)
            .map_err(|e| ReloadError::Invalid(e.to_string()))
            .and_then(|(config, text)| self.plan(config, &text));
        let running = self
            .running
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match result {
            Ok(plan) if running.as_ref().is_some_and(|r| r.version == plan.version) => {
                // The same file and plugins: the new set would be the running one.
                drop(plan);
                self.metrics.record_reload(true);
                tracing::info!(
                    trigger,
                    "configuration and plugins unchanged; nothing to reload"
                );
                Ok(ReloadReport {
                    unchanged: true,
                    generation: self.generation,
                    version: running.map(|r| r.version.clone()).unwrap_or_default(),
                    took: started.elapsed(),
                    ..ReloadReport::default()
                })
            }
            Ok(plan) => {
                let report = self.apply(plan, started);
                self.metrics.record_reload(true);
                tracing::info!(
                    trigger,
                    generation = report.generation,
                    version = %report.version,
                    took_ms = report.took.as_millis() as u64,
                    inputs_kept = ?report.inputs.kept,
                    inputs_started = ?report.inputs.started,
                    inputs_stopped = ?report.inputs.stopped,
                    outputs_opened = ?report.outputs.opened,
                    outputs_closed = ?report.outputs.closed,
                    "configuration reloaded"
                );
                Ok(report)
            }
            Err(e) => {
                self.metrics.record_reload(false);
                tracing::error!(
                    trigger,
                    kind = e.kind(),
                    "reload refused; the running configuration stays:\n{e}"
                );
                Err(e)
            }
        }
    }

    /// An input thread with this id ended. If it is a running input the router did not
    /// ask to stop, it failed by itself: it is removed and its error returned.
    fn input_ended(&mut self, id: u64) -> Option<anyhow::Error> {
        let name = self
            .inputs
            .iter()
            .find(|(_, input)| input.id == id)
            .map(|(name, _)| name.clone())?;
        let input = self.inputs.remove(&name)?;
        Some(match input.result(&name) {
            Ok(()) => anyhow::anyhow!("input `{name}` stopped"),
            Err(e) => e,
        })
    }

    /// Drains and stops everything: inputs stop fetching and finish their batch, sinks
    /// flush, offsets are committed.
    pub fn stop(&mut self) {
        for input in self.inputs.values_mut() {
            input.ask_to_stop();
        }
        let mut pending: BTreeSet<u64> = self
            .inputs
            .values()
            .filter(|input| !input.is_finished())
            .map(|input| input.id)
            .collect();
        // An input blocked on an output that has no room (a PUSH with no peer) gets
        // DRAIN_TIMEOUT; then blocked sends give up and their records fail, uncommitted.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !pending.is_empty() {
            match self.exits.1.recv_deadline(deadline) {
                Ok(id) => {
                    pending.remove(&id);
                }
                Err(_) => break,
            }
        }
        if !pending.is_empty() {
            tracing::warn!(
                "outputs still full after {DRAIN_TIMEOUT:?}; giving up on blocked records"
            );
            for open in self.outputs.values() {
                open.sink.abort_blocked();
            }
        }
        for (name, input) in std::mem::take(&mut self.inputs) {
            input.join(&name);
        }
        for (name, open) in &self.outputs {
            if let Err(e) = open.sink.flush(DRAIN_TIMEOUT) {
                tracing::error!(output = %name, "{e:#}");
            }
        }
        self.outputs.clear();
        *self.running.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Runs until `shutdown`, applying reloads as they are asked for on `requests`; then
    /// drains. Fails if an input fails by itself. Blocks on all three at once: nothing
    /// here wakes up to check.
    pub fn serve(
        &mut self,
        shutdown: &Shutdown,
        requests: &Receiver<Request>,
    ) -> anyhow::Result<()> {
        let mut requests = requests.clone();
        let exits = self.exits.1.clone();
        let stop = shutdown.channel().clone();
        let mut result = Ok(());
        loop {
            select! {
                recv(stop) -> _ => break,
                recv(requests) -> request => match request {
                    Ok(request) => {
                        // Requests that arrived meanwhile join this one: one reload reads
                        // the files as they are now, for all of them.
                        let mut waiting = vec![request];
                        waiting.extend(requests.try_iter());
                        let outcome = self.reload(waiting[0].trigger);
                        for request in waiting {
                            if let Some(reply) = request.reply {
                                let _ = reply.send(outcome.clone());
                            }
                        }
                    }
                    // Nothing can ask for a reload any more: wait for the rest.
                    Err(_) => requests = never(),
                },
                recv(exits) -> id => {
                    if let Ok(id) = id
                        && let Some(e) = self.input_ended(id)
                    {
                        tracing::error!("{e:#}; stopping");
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        self.stop();
        result
    }
}
