//! Assembling and running a configuration, and replacing it while it runs.
//!
//! A [`Router`] holds what is running: the embedded clusters, one sink per output, one
//! thread per input running its routes. A reload builds a complete new set beside it (a
//! [`Plan`]: parsed, validated, plugins compiled and instantiated, every `init` run, new
//! outputs opened) and only then applies it:
//!
//! 1. inputs that were removed, or whose definition changed, stop: they finish their batch,
//!    wait for its deliveries and commit;
//! 2. every unchanged input is handed its new route runners and switches between two
//!    batches, so a batch is processed entirely by one version; its consumer, group
//!    membership and assignment stay as they are;
//! 3. added and changed inputs start;
//! 4. outputs no route uses any more are flushed and closed.
//!
//! Must stay on the thread that built it: the embedded cluster is not `Send`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use sha2::{Digest, Sha256};

use crate::config::{self, ConfigFile, InputConfig, KafkaCluster, OutputConfig, validate::limits};
use crate::kafka::{EmbeddedCluster, KafkaSink, KafkaSource};
use crate::metrics::{InputStats, Metrics};
use crate::pipeline::{Incoming, RouteRunner, RouteSpec, RouteStats, Sink};
use crate::plugin::{PluginInstance, PluginRuntime, RuntimeOptions};
use crate::zmq::{ZmqSink, ZmqSource};

/// Most messages taken into one batch.
pub const MAX_BATCH: usize = 256;
/// How long an idle input waits for a first message before checking for a new version or
/// a stop.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How long shutdown waits for in-flight messages and producer queues.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Partitions of topics the embedded cluster creates when the file does not say.
const DEFAULT_PARTITIONS: u32 = 4;

/// A flag that asks a running router to drain and stop.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A flag that is not set.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Asks the router to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Triggers on SIGINT and SIGTERM; a second signal exits at once, for an operator who
    /// will not wait for the drain.
    pub fn on_signals(&self) -> anyhow::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&self.0))?;
            signal_hook::flag::register(signal, Arc::clone(&self.0))?;
        }
        Ok(())
    }

    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A plugin of the running set, as `/routes` shows it.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The plugin's name (its file name without extension).
    pub name: String,
    /// The path as the file gives it, resolved against the file's directory.
    pub path: PathBuf,
    /// SHA-256 of the component's bytes.
    pub hash: String,
}

/// A route of the running set.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    /// The route's name.
    pub name: String,
    /// Its inputs.
    pub from: Vec<String>,
    /// Its outputs.
    pub to: Vec<String>,
    /// Its plugin chain.
    pub plugins: Vec<PluginInfo>,
}

/// The set that is running.
#[derive(Debug)]
pub struct Running {
    /// Counts up from 1 with every applied reload.
    pub generation: u64,
    /// A hash of the configuration text and every plugin's bytes.
    pub version: String,
    /// When it was swapped in.
    pub loaded_at: SystemTime,
    /// The configuration file.
    pub path: PathBuf,
    /// The routes, in file order.
    pub routes: Vec<RouteInfo>,
    /// The running inputs with their state.
    pub inputs: Vec<(String, Arc<InputStats>)>,
}

/// What the admin endpoint and the CLI see of a router; cheap to clone and `Send`.
#[derive(Clone)]
pub struct RouterHandle {
    /// Every counter.
    pub metrics: Arc<Metrics>,
    /// Per-route counters of the first configuration, in file order.
    pub routes: Vec<(String, Arc<RouteStats>)>,
    /// Bootstrap addresses of embedded clusters, by cluster name.
    pub embedded: BTreeMap<String, String>,
    running: Arc<RwLock<Option<Arc<Running>>>>,
}

impl RouterHandle {
    /// The running set, once there is one.
    pub fn running(&self) -> Option<Arc<Running>> {
        self.running
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ready: a set is running and every input is connected (outputs are open before a
    /// set is swapped in).
    pub fn is_ready(&self) -> bool {
        self.running()
            .is_some_and(|r| r.inputs.iter().all(|(_, stats)| stats.is_ready()))
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// The new generation.
    pub generation: u64,
    /// The new version.
    pub version: String,
    /// Inputs that kept running and switched to the new routes.
    pub inputs_kept: Vec<String>,
    /// Inputs started (new, or changed).
    pub inputs_started: Vec<String>,
    /// Inputs drained and stopped (removed, or changed).
    pub inputs_stopped: Vec<String>,
    /// Outputs opened.
    pub outputs_opened: Vec<String>,
    /// Outputs flushed and closed.
    pub outputs_closed: Vec<String>,
    /// From reading the file to the last input switching over.
    pub took: Duration,
}

/// What a running input is, for deciding whether a reload changes it.
#[derive(Debug, Clone, PartialEq)]
struct InputKey {
    input: InputConfig,
    cluster: Option<(String, KafkaCluster)>,
}

/// What an open output is, for deciding whether a reload changes it.
#[derive(Debug, Clone, PartialEq)]
struct OutputKey {
    output: OutputConfig,
    cluster: Option<(String, KafkaCluster)>,
}

/// New route runners for a running input, and where to say they are in use.
struct Swap {
    runners: Vec<RouteRunner>,
    done: Sender<()>,
}

struct RunningInput {
    key: InputKey,
    stats: Arc<InputStats>,
    stop: Arc<AtomicBool>,
    swaps: Sender<Swap>,
    thread: JoinHandle<anyhow::Result<()>>,
}

impl RunningInput {
    /// Asks the input to stop and waits until it has drained and committed.
    fn stop(self, name: &str) {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(input = %name, "{e:#}"),
            Err(_) => tracing::error!(input = %name, "the input thread panicked"),
        }
    }
}

struct OpenOutput {
    key: OutputKey,
    sink: Arc<dyn Sink>,
}

/// A complete new set, built beside the running one.
pub struct Plan {
    config: ConfigFile,
    version: String,
    clusters: BTreeMap<String, (String, KafkaCluster)>,
    new_embedded: Vec<(String, EmbeddedCluster)>,
    outputs: BTreeMap<String, OpenOutput>,
    opened: Vec<String>,
    runners: BTreeMap<String, (InputKey, Vec<RouteRunner>)>,
    routes: Vec<RouteInfo>,
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
    path: PathBuf,
    options: RouterOptions,
    runtime: PluginRuntime,
    zmq: zmq::Context,
    metrics: Arc<Metrics>,
    running: Arc<RwLock<Option<Arc<Running>>>>,
    generation: u64,
    config: Option<ConfigFile>,
    inputs: BTreeMap<String, RunningInput>,
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
        let routes = self
            .config
            .iter()
            .flat_map(|c| &c.routes)
            .map(|r| {
                let name = r.get_ref().name.get_ref().clone();
                let stats = self.metrics.route(&name);
                (name, stats)
            })
            .collect();
        RouterHandle {
            metrics: Arc::clone(&self.metrics),
            routes,
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
    pub fn reload(&mut self, trigger: &str) -> Result<ReloadReport, String> {
        let started = Instant::now();
        let variables = &self.options.variables;
        let lookup = |name: &str| {
            variables
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        };
        let result = config::load_with(&self.path, lookup)
            .map_err(|e| e.to_string())
            .and_then(|(config, text)| self.plan(config, &text).map_err(|e| format!("{e:#}")));
        match result {
            Ok(plan) => {
                let report = self.apply(plan, started);
                self.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    trigger,
                    generation = report.generation,
                    version = %report.version,
                    took_ms = report.took.as_millis() as u64,
                    inputs_kept = ?report.inputs_kept,
                    inputs_started = ?report.inputs_started,
                    inputs_stopped = ?report.inputs_stopped,
                    outputs_opened = ?report.outputs_opened,
                    outputs_closed = ?report.outputs_closed,
                    "configuration reloaded"
                );
                Ok(report)
            }
            Err(e) => {
                self.metrics.reloads_error.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    trigger,
                    "reload refused; the running configuration stays:\n{e}"
                );
                Err(e)
            }
        }
    }

    /// Builds a complete set for `config` beside the running one: validation, clusters,
    /// outputs, compiled plugins and one instance per input thread, every `init` run.
    pub fn plan(&mut self, config: ConfigFile, text: &str) -> anyhow::Result<Plan> {
        let base_dir = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        let problems = config::validate(&config, &base_dir, None);
        if !problems.is_empty() {
            bail!("{}", config::error(&self.path, text, problems));
        }
        if let Some(running) = &self.config {
            if running.admin != config.admin {
                tracing::warn!("a change to [admin] takes effect at the next start");
            }
            if running.reload != config.reload {
                tracing::warn!("a change to [reload] takes effect at the next start");
            }
        }

        let mut clusters = BTreeMap::new();
        let mut new_embedded = Vec::new();
        for (name, cluster) in &config.kafka {
            let cluster = cluster.get_ref();
            let address = cluster.bootstrap.get_ref();
            let bootstrap = if address == "embedded" {
                let create_topics = |mock: &EmbeddedCluster| -> anyhow::Result<String> {
                    for (topic, partitions) in topics_of(&config, name) {
                        let partitions = cluster.topics.get(&topic).copied().unwrap_or(partitions);
                        mock.create_topic(&topic, partitions)?;
                    }
                    Ok(mock.bootstrap())
                };
                match self.embedded.get(name) {
                    Some(mock) => create_topics(mock)?,
                    None => {
                        let mock = EmbeddedCluster::start(1)?;
                        tracing::info!(cluster = %name, bootstrap = %mock.bootstrap(), "embedded Kafka cluster started (for development and tests)");
                        let bootstrap = create_topics(&mock)?;
                        new_embedded.push((name.clone(), mock));
                        bootstrap
                    }
                }
            } else {
                address.clone()
            };
            clusters.insert(name.clone(), (bootstrap, cluster.clone()));
        }

        let mut outputs = BTreeMap::new();
        let mut opened = Vec::new();
        for (name, output) in &config.outputs {
            let output = output.get_ref();
            let cluster = output
                .kafka
                .as_ref()
                .map(|k| clusters[k.get_ref().cluster.get_ref()].clone());
            let key = OutputKey {
                output: output.clone(),
                cluster,
            };
            if let Some(open) = self.outputs.get(name)
                && open.key == key
            {
                outputs.insert(
                    name.clone(),
                    OpenOutput {
                        key,
                        sink: Arc::clone(&open.sink),
                    },
                );
                continue;
            }
            let sink: Arc<dyn Sink> = match (&output.kafka, &output.zmq, &key.cluster) {
                (Some(k), _, Some((bootstrap, cluster))) => Arc::new(KafkaSink::new(
                    name,
                    bootstrap,
                    &options(cluster),
                    k.get_ref().topic.get_ref(),
                )?),
                (None, Some(z), _) => {
                    let sink =
                        ZmqSink::start(&self.zmq, name, z.get_ref(), self.metrics.output(name));
                    Arc::new(if self.outputs.contains_key(name) {
                        sink.context(format!(
                            "output `{name}` changed: its new socket is opened while the old \
                             one still runs, so it cannot bind the same endpoint (rename the \
                             output or restart)"
                        ))?
                    } else {
                        sink?
                    })
                }
                _ => bail!("output `{name}` has no kind"),
            };
            opened.push(name.clone());
            outputs.insert(name.clone(), OpenOutput { key, sink });
        }

        let mut compiled = HashMap::new();
        let mut routes = Vec::new();
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());
        for (r, route) in config.routes.iter().enumerate() {
            let route = route.get_ref();
            let mut plugins = Vec::new();
            for (p, plugin) in route.plugins.iter().enumerate() {
                let plugin = plugin.get_ref();
                let file = base_dir.join(plugin.path.get_ref());
                let loaded = self
                    .runtime
                    .load(&file, limits(plugin))
                    .with_context(|| format!("route `{}`", route.name.get_ref()))?;
                hasher.update(loaded.hash().as_bytes());
                plugins.push(PluginInfo {
                    name: loaded.name().to_owned(),
                    path: file,
                    hash: loaded.hash().to_owned(),
                });
                compiled.insert((r, p), loaded);
            }
            routes.push(RouteInfo {
                name: route.name.get_ref().clone(),
                from: route.from.iter().map(|f| f.get_ref().clone()).collect(),
                to: route.to.iter().map(|t| t.get_ref().clone()).collect(),
                plugins,
            });
        }
        let version = hasher
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();

        let mut runners = BTreeMap::new();
        for (name, input) in &config.inputs {
            let input = input.get_ref();
            let key = InputKey {
                input: input.clone(),
                cluster: input
                    .kafka
                    .as_ref()
                    .map(|k| clusters[k.get_ref().cluster.get_ref()].clone()),
            };
            let mut list = Vec::new();
            for (r, route) in config.routes.iter().enumerate() {
                let route = route.get_ref();
                if !route.from.iter().any(|f| f.get_ref() == name) {
                    continue;
                }
                let sink = |o: &str| Arc::clone(&outputs[o].sink);
                let spec = RouteSpec {
                    name: route.name.get_ref().clone(),
                    when: route.when.clone(),
                    to: route.to.iter().map(|o| sink(o.get_ref())).collect(),
                    destinations: route
                        .destinations
                        .iter()
                        .map(|(d, o)| (d.clone(), sink(o.get_ref())))
                        .collect(),
                    dead_letter: route.dead_letter.as_ref().map(|o| sink(o.get_ref())),
                    stats: self.metrics.route(route.name.get_ref()),
                };
                let mut instances = Vec::new();
                let chain = if self.options.native_identity {
                    &[][..]
                } else {
                    &route.plugins[..]
                };
                for (p, plugin) in chain.iter().enumerate() {
                    let plugin = plugin.get_ref();
                    let loaded = compiled[&(r, p)].clone();
                    let stats = self.metrics.plugin(route.name.get_ref(), loaded.name());
                    let instance =
                        PluginInstance::new(loaded, plugin.settings()).with_context(|| {
                            format!(
                                "route `{}`: plugin {}",
                                route.name.get_ref(),
                                base_dir.join(plugin.path.get_ref()).display()
                            )
                        })?;
                    instances.push((instance, stats));
                }
                list.push(RouteRunner::new(spec, instances));
            }
            if list.is_empty() {
                tracing::warn!(input = %name, "no route reads this input; it is not started");
                continue;
            }
            runners.insert(name.clone(), (key, list));
        }

        Ok(Plan {
            config,
            version,
            clusters,
            new_embedded,
            outputs,
            opened,
            runners,
            routes,
        })
    }

    /// Swaps `plan` in, in the order the module documentation gives.
    pub fn apply(&mut self, plan: Plan, started: Instant) -> ReloadReport {
        let Plan {
            config,
            version,
            clusters,
            new_embedded,
            outputs,
            opened,
            runners,
            routes,
        } = plan;
        self.embedded.extend(new_embedded);
        let mut report = ReloadReport {
            outputs_opened: opened,
            ..ReloadReport::default()
        };

        // 1. Removed and changed inputs drain and commit.
        let stopping: Vec<String> = self
            .inputs
            .iter()
            .filter(|(name, input)| runners.get(*name).is_none_or(|(key, _)| *key != input.key))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stopping {
            if let Some(input) = self.inputs.remove(&name) {
                input.stop(&name);
                report.inputs_stopped.push(name);
            }
        }

        // 2. Unchanged inputs switch between two batches; 3. the others start.
        let mut switching = Vec::new();
        for (name, (key, list)) in runners {
            match self.inputs.get(&name) {
                Some(input) => {
                    let (done, switched) = bounded(1);
                    if input
                        .swaps
                        .send(Swap {
                            runners: list,
                            done,
                        })
                        .is_ok()
                    {
                        switching.push((name.clone(), switched));
                    }
                    report.inputs_kept.push(name);
                }
                None => match self.start_input(&name, key, &clusters, list) {
                    Ok(input) => {
                        self.inputs.insert(name.clone(), input);
                        report.inputs_started.push(name);
                    }
                    Err(e) => tracing::error!(input = %name, "cannot start: {e:#}"),
                },
            }
        }
        for (name, switched) in switching {
            let waiting = Instant::now();
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                switched.recv_timeout(Duration::from_secs(5))
            {
                tracing::warn!(input = %name, waited_s = waiting.elapsed().as_secs(), "still finishing a batch on the previous version");
            }
        }

        // 4. Outputs nothing uses any more are flushed and closed.
        let old = std::mem::replace(&mut self.outputs, outputs);
        for (name, open) in old {
            let replaced = self
                .outputs
                .get(&name)
                .is_none_or(|new| !Arc::ptr_eq(&new.sink, &open.sink));
            if replaced {
                if let Err(e) = open.sink.flush(DRAIN_TIMEOUT) {
                    tracing::error!(output = %name, "{e:#}");
                }
                drop(open);
                report.outputs_closed.push(name);
            }
        }
        self.embedded.retain(|name, _| {
            config
                .kafka
                .get(name)
                .is_some_and(|c| c.get_ref().bootstrap.get_ref() == "embedded")
        });

        self.generation += 1;
        let loaded_at = SystemTime::now();
        let inputs = self
            .inputs
            .iter()
            .map(|(name, input)| (name.clone(), Arc::clone(&input.stats)))
            .collect();
        *self.running.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Running {
            generation: self.generation,
            version: version.clone(),
            loaded_at,
            path: self.path.clone(),
            routes,
            inputs,
        }));
        self.config = Some(config);
        report.generation = self.generation;
        report.version = version;
        report.took = started.elapsed();
        report
    }

    fn start_input(
        &self,
        name: &str,
        key: InputKey,
        clusters: &BTreeMap<String, (String, KafkaCluster)>,
        runners: Vec<RouteRunner>,
    ) -> anyhow::Result<RunningInput> {
        let stats = self.metrics.input(name);
        stats.ready.store(false, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let (swaps, swapped) = unbounded();
        let kafka = key.input.kafka.as_ref().map(|k| {
            let (bootstrap, cluster) = &clusters[k.get_ref().cluster.get_ref()];
            (bootstrap.clone(), options(cluster))
        });
        let context = InputContext {
            name: name.to_owned(),
            input: key.input.clone(),
            kafka,
            zmq: self.zmq.clone(),
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
            swaps: swapped,
        };
        let thread = std::thread::Builder::new()
            .name(format!("input-{name}"))
            .spawn(move || context.run(runners))?;
        Ok(RunningInput {
            key,
            stats,
            stop,
            swaps,
            thread,
        })
    }

    /// Whether an input thread ended by itself (its source failed); returns its error.
    pub fn failed_input(&mut self) -> Option<anyhow::Error> {
        let name = self
            .inputs
            .iter()
            .find(|(_, input)| input.thread.is_finished())
            .map(|(name, _)| name.clone())?;
        let input = self.inputs.remove(&name)?;
        Some(match input.thread.join() {
            Ok(Ok(())) => anyhow::anyhow!("input `{name}` stopped"),
            Ok(Err(e)) => e.context(format!("input `{name}`")),
            Err(_) => anyhow::anyhow!("input `{name}`: its thread panicked"),
        })
    }

    /// Drains and stops everything: inputs stop fetching and finish their batch, sinks
    /// flush, offsets are committed.
    pub fn stop(&mut self) {
        for input in self.inputs.values() {
            input.stop.store(true, Ordering::SeqCst);
        }
        // An input blocked on an output that has no room (a PUSH with no peer) gets
        // DRAIN_TIMEOUT; then blocked sends give up and their records fail, uncommitted.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.inputs.values().any(|i| !i.thread.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.inputs.values().any(|i| !i.thread.is_finished()) {
            tracing::warn!(
                "outputs still full after {DRAIN_TIMEOUT:?}; giving up on blocked records"
            );
            for open in self.outputs.values() {
                open.sink.abort_blocked();
            }
        }
        for (name, input) in std::mem::take(&mut self.inputs) {
            input.stop(&name);
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
    /// drains. Fails if an input fails by itself.
    pub fn serve(
        &mut self,
        shutdown: &Shutdown,
        requests: &Receiver<crate::reload::Request>,
    ) -> anyhow::Result<()> {
        let mut result = Ok(());
        while !shutdown.is_triggered() {
            match requests.recv_timeout(IDLE_WAIT) {
                Ok(request) => {
                    let outcome = self.reload(request.trigger);
                    if let Some(reply) = request.reply {
                        let _ = reply.send(outcome);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(IDLE_WAIT);
                }
            }
            if let Some(e) = self.failed_input() {
                tracing::error!("{e:#}; stopping");
                result = Err(e);
                break;
            }
        }
        self.stop();
        result
    }
}

/// What an input thread needs.
struct InputContext {
    name: String,
    input: InputConfig,
    kafka: Option<(String, BTreeMap<String, String>)>,
    zmq: zmq::Context,
    stats: Arc<InputStats>,
    stop: Arc<AtomicBool>,
    swaps: Receiver<Swap>,
}

impl InputContext {
    /// Takes the newest runners handed over, if any, and says so once the old ones are
    /// gone (which closes nothing: sinks are shared and closed by the router).
    fn switch(&self, runners: &mut Vec<RouteRunner>) {
        while let Ok(swap) = self.swaps.try_recv() {
            *runners = swap.runners;
            let _ = swap.done.send(());
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// One input's thread: fetch a batch, run it through every route, store progress;
    /// between two batches, switch to new runners if a reload handed some over.
    fn run(self, mut runners: Vec<RouteRunner>) -> anyhow::Result<()> {
        let name = self.name.as_str();
        match (&self.input.kafka, &self.input.zmq, &self.kafka) {
            (Some(k), _, Some((bootstrap, options))) => {
                let k = k.get_ref();
                let source = KafkaSource::new(
                    name,
                    bootstrap,
                    options,
                    k.topics.get_ref(),
                    k.group.get_ref(),
                    Arc::clone(&self.stats),
                )?;
                while !self.stopping() {
                    self.switch(&mut runners);
                    let batch = source.poll_batch(MAX_BATCH, IDLE_WAIT);
                    if !batch.is_empty() {
                        run_batch(name, &mut runners, &batch);
                    }
                    drop(batch);
                    source.store_progress();
                }
                source.close(DRAIN_TIMEOUT);
            }
            (None, Some(z), _) => {
                let mut source = ZmqSource::start(&self.zmq, name, z.get_ref())?;
                self.stats.ready.store(true, Ordering::Relaxed);
                let mut stopped = false;
                loop {
                    self.switch(&mut runners);
                    if !stopped && self.stopping() {
                        // Close the socket, then finish what it already received.
                        source.stop_receiving();
                        stopped = true;
                    }
                    let wait = if stopped { Duration::ZERO } else { IDLE_WAIT };
                    let batch = source.recv_batch(MAX_BATCH, wait);
                    if batch.is_empty() {
                        if stopped {
                            break;
                        }
                        continue;
                    }
                    run_batch(name, &mut runners, &batch);
                }
            }
            _ => bail!("input `{name}` has no kind"),
        }
        tracing::info!(input = %name, "input drained");
        Ok(())
    }
}

/// Runs a batch from input `name` through every route that reads it. Generic over the
/// message type, so the route reads each field without a virtual call.
fn run_batch<M: Incoming>(name: &str, runners: &mut [RouteRunner], batch: &[M]) {
    for runner in runners {
        runner.process(name, batch);
    }
}

/// Every topic a cluster's inputs and outputs use, with the default partition count.
fn topics_of(config: &ConfigFile, cluster: &str) -> BTreeMap<String, u32> {
    let mut topics = BTreeMap::new();
    for input in config.inputs.values() {
        if let Some(k) = &input.get_ref().kafka
            && k.get_ref().cluster.get_ref() == cluster
        {
            for t in k.get_ref().topics.get_ref() {
                topics.insert(t.clone(), DEFAULT_PARTITIONS);
            }
        }
    }
    for output in config.outputs.values() {
        if let Some(k) = &output.get_ref().kafka
            && k.get_ref().cluster.get_ref() == cluster
        {
            topics.insert(k.get_ref().topic.get_ref().clone(), DEFAULT_PARTITIONS);
        }
    }
    topics
}

/// A cluster's pass-through librdkafka options.
fn options(cluster: &KafkaCluster) -> BTreeMap<String, String> {
    cluster
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.get_ref().clone()))
        .collect()
}
