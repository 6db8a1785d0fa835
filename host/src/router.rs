//! Assembling and running a configuration: the embedded cluster if asked for, one sink per
//! output, one thread per input running its routes, and an orderly drain on shutdown.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::{self, ConfigFile, InputConfig, validate::limits};
use crate::kafka::{EmbeddedCluster, KafkaSink, KafkaSource};
use crate::pipeline::{Incoming, RouteRunner, RouteSpec, RouteStats, Sink};
use crate::plugin::{CompiledPlugin, PluginInstance, PluginRuntime, RuntimeOptions};
use crate::zmq::{ZmqSink, ZmqSource};

/// Most messages taken into one batch.
pub const MAX_BATCH: usize = 256;
/// How long an idle input waits for a first message before checking for shutdown.
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

/// What a running router shows of itself.
#[derive(Clone, Default)]
pub struct RouterHandle {
    /// Per-route counters by route name, in file order.
    pub routes: Vec<(String, Arc<RouteStats>)>,
    /// Bootstrap addresses of embedded clusters, by cluster name.
    pub embedded: BTreeMap<String, String>,
}

/// A configuration ready to run: the embedded clusters started, plugins compiled, sinks
/// open.
pub struct Router {
    config: ConfigFile,
    bootstrap: HashMap<String, String>,
    sinks: HashMap<String, Arc<dyn Sink>>,
    plugins: HashMap<(usize, usize), CompiledPlugin>,
    zmq: zmq::Context,
    handle: RouterHandle,
    /// Kept alive for as long as the router runs; declared last so it is dropped after
    /// the producers and consumers that talk to it.
    _embedded: Vec<EmbeddedCluster>,
}

impl Router {
    /// Validates and prepares `config`, whose relative plugin paths are resolved against
    /// `base_dir`. Must stay on the thread that calls it (the embedded cluster is not `Send`).
    pub fn prepare(config: ConfigFile, text: &str, path: &Path) -> anyhow::Result<Self> {
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let problems = config::validate(&config, base_dir, None);
        if !problems.is_empty() {
            bail!("{}", config::error(path, text, problems));
        }
        let runtime = PluginRuntime::new(RuntimeOptions::default())?;

        let mut handle = RouterHandle::default();
        let mut embedded = Vec::new();
        let mut bootstrap = HashMap::new();
        for (name, cluster) in &config.kafka {
            let cluster = cluster.get_ref();
            let address = cluster.bootstrap.get_ref();
            if address == "embedded" {
                let mock = EmbeddedCluster::start(1)?;
                for (topic, partitions) in topics_of(&config, name) {
                    let partitions = cluster.topics.get(&topic).copied().unwrap_or(partitions);
                    mock.create_topic(&topic, partitions)?;
                }
                tracing::info!(cluster = %name, bootstrap = %mock.bootstrap(), "embedded Kafka cluster started (for development and tests)");
                handle.embedded.insert(name.clone(), mock.bootstrap());
                bootstrap.insert(name.clone(), mock.bootstrap());
                embedded.push(mock);
            } else {
                bootstrap.insert(name.clone(), address.clone());
            }
        }

        let zmq = zmq::Context::new();
        let mut sinks: HashMap<String, Arc<dyn Sink>> = HashMap::new();
        for (name, output) in &config.outputs {
            let output = output.get_ref();
            let sink: Arc<dyn Sink> = match (&output.kafka, &output.zmq) {
                (Some(k), _) => {
                    let k = k.get_ref();
                    let cluster = k.cluster.get_ref();
                    Arc::new(KafkaSink::new(
                        name,
                        &bootstrap[cluster],
                        &options_of(&config, cluster),
                        k.topic.get_ref(),
                    )?)
                }
                (None, Some(z)) => Arc::new(ZmqSink::start(&zmq, name, z.get_ref())?),
                (None, None) => bail!("output `{name}` has no kind"),
            };
            sinks.insert(name.clone(), sink);
        }

        let mut plugins = HashMap::new();
        for (r, route) in config.routes.iter().enumerate() {
            for (p, plugin) in route.get_ref().plugins.iter().enumerate() {
                let plugin = plugin.get_ref();
                let file = base_dir.join(plugin.path.get_ref());
                let compiled = runtime
                    .load(&file, limits(plugin))
                    .with_context(|| format!("route `{}`", route.get_ref().name.get_ref()))?;
                // Fail now, not on the first message, if the settings are refused.
                PluginInstance::new(compiled.clone(), plugin.settings()).with_context(|| {
                    format!(
                        "route `{}`: plugin {}",
                        route.get_ref().name.get_ref(),
                        file.display()
                    )
                })?;
                plugins.insert((r, p), compiled);
            }
            handle
                .routes
                .push((route.get_ref().name.get_ref().clone(), Arc::default()));
        }

        Ok(Router {
            config,
            bootstrap,
            sinks,
            plugins,
            zmq,
            handle,
            _embedded: embedded,
        })
    }

    /// Counters and addresses of the running router.
    pub fn handle(&self) -> RouterHandle {
        self.handle.clone()
    }

    /// Runs every input on its own thread until `shutdown` is triggered, then drains:
    /// inputs stop fetching and finish their batch, sinks flush, offsets are committed.
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let mut threads = Vec::new();
        for (name, input) in &self.config.inputs {
            let runners = self.runners_for(name)?;
            if runners.is_empty() {
                tracing::warn!(input = %name, "no route reads this input; it is not started");
                continue;
            }
            let input = input.get_ref().clone();
            let name = name.clone();
            let shutdown = shutdown.clone();
            let kafka = input.kafka.as_ref().map(|k| {
                let cluster = k.get_ref().cluster.get_ref();
                (
                    self.bootstrap[cluster].clone(),
                    options_of(&self.config, cluster),
                )
            });
            let zmq = self.zmq.clone();
            let thread = std::thread::Builder::new()
                .name(format!("input-{name}"))
                .spawn(move || run_input(&name, &input, kafka, &zmq, runners, &shutdown))?;
            threads.push(thread);
        }
        tracing::info!(
            inputs = threads.len(),
            routes = self.config.routes.len(),
            "switchyard running"
        );
        let mut result = Ok(());
        for thread in threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(anyhow::anyhow!("an input thread panicked")),
            }
        }
        for sink in self.sinks.values() {
            if let Err(e) = sink.flush(DRAIN_TIMEOUT) {
                tracing::error!("{e:#}");
            }
        }
        result
    }

    /// Route runners, with fresh plugin instances, for the routes that read `input`.
    fn runners_for(&self, input: &str) -> anyhow::Result<Vec<RouteRunner>> {
        let mut runners = Vec::new();
        for (r, route) in self.config.routes.iter().enumerate() {
            let route = route.get_ref();
            if !route.from.iter().any(|f| f.get_ref() == input) {
                continue;
            }
            let sink = |name: &str| Arc::clone(&self.sinks[name]);
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
                stats: Arc::clone(&self.handle.routes[r].1),
            };
            let mut instances = Vec::new();
            for (p, plugin) in route.plugins.iter().enumerate() {
                instances.push(PluginInstance::new(
                    self.plugins[&(r, p)].clone(),
                    plugin.get_ref().settings(),
                )?);
            }
            runners.push(RouteRunner::new(spec, instances));
        }
        Ok(runners)
    }
}

/// One input's thread: fetch a batch, run it through every route, store progress.
fn run_input(
    name: &str,
    input: &InputConfig,
    kafka: Option<(String, BTreeMap<String, String>)>,
    zmq: &zmq::Context,
    mut runners: Vec<RouteRunner>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut run_batch = |batch: &[&dyn Incoming]| {
        for runner in &mut runners {
            runner.process(name, batch);
        }
    };
    match (&input.kafka, &input.zmq, kafka) {
        (Some(k), _, Some((bootstrap, options))) => {
            let k = k.get_ref();
            let source = KafkaSource::new(
                name,
                &bootstrap,
                &options,
                k.topics.get_ref(),
                k.group.get_ref(),
            )?;
            while !shutdown.is_triggered() {
                let batch = source.poll_batch(MAX_BATCH, IDLE_WAIT);
                if !batch.is_empty() {
                    let refs: Vec<&dyn Incoming> =
                        batch.iter().map(|m| m as &dyn Incoming).collect();
                    run_batch(&refs);
                }
                drop(batch);
                source.store_progress();
            }
            source.close(DRAIN_TIMEOUT);
        }
        (None, Some(z), _) => {
            let source = ZmqSource::start(zmq, name, z.get_ref())?;
            while !shutdown.is_triggered() {
                let batch = source.recv_batch(MAX_BATCH, IDLE_WAIT);
                if !batch.is_empty() {
                    let refs: Vec<&dyn Incoming> =
                        batch.iter().map(|m| m as &dyn Incoming).collect();
                    run_batch(&refs);
                }
            }
        }
        _ => bail!("input `{name}` has no kind"),
    }
    tracing::info!(input = %name, "input drained");
    Ok(())
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
fn options_of(config: &ConfigFile, cluster: &str) -> BTreeMap<String, String> {
    config.kafka[cluster]
        .get_ref()
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.get_ref().clone()))
        .collect()
}
