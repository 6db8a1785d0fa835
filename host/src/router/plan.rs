//! Building a complete new set beside the running one, without touching it: the planner
//! borrows the router read-only, so a plan that fails leaves the running set as it was.
//!
//! Four phases, in order, each a function of its own: [`Planner::clusters`] (every Kafka
//! cluster resolved, embedded ones started), [`Planner::outputs`] (unchanged outputs
//! shared, new or changed ones opened), [`Planner::compile`] (every plugin compiled, the
//! set's version hashed) and [`Planner::runners`] (one route runner per input and route,
//! its plugins instantiated and their `init` run).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::Router;
use crate::config::resolved::{InputKind, KafkaClient, OutputKind};
use crate::config::{self, ConfigFile, validate::limits};
use crate::control::ReloadError;
use crate::kafka::{self, EmbeddedCluster};
use crate::metrics::Staged;
use crate::pipeline::{RouteRunner, RouteSpec, Sink};
use crate::plugin::{CompiledPlugin, PluginInstance};
use crate::state::{PluginInfo, RouteInfo};
use crate::zmq;

/// Partitions of topics the embedded cluster creates when the file does not say.
const DEFAULT_PARTITIONS: u32 = 4;

/// An output of a plan: the sink the running set already has, or one opened for the plan.
pub(super) struct OpenOutput {
    /// What the output is; a reload that resolves it to anything else reopens it.
    pub kind: OutputKind,
    /// Shared by every route runner that writes to it.
    pub sink: Arc<dyn Sink>,
}

/// A complete new set, built beside the running one and applied by
/// [`Router::apply`](super::Router).
pub(super) struct Plan {
    /// The file it was built from.
    pub config: ConfigFile,
    /// A hash of the file's text and every plugin's bytes.
    pub version: String,
    /// Embedded clusters the plan started (their topics created); the router owns them
    /// once it is applied.
    pub new_embedded: Vec<(String, EmbeddedCluster)>,
    /// Topics to create in embedded clusters that run already, when the plan is applied:
    /// (cluster, topic, partitions).
    pub topics: Vec<(String, String, u32)>,
    /// The counters the plan uses that are not registered yet.
    pub staged: Staged,
    /// Every output, by name.
    pub outputs: BTreeMap<String, OpenOutput>,
    /// The outputs the plan opened (the others it shares with the running set).
    pub opened: Vec<String>,
    /// Each input that some route reads, with its route runners.
    pub inputs: Inputs,
    /// The routes, for `/routes`.
    pub routes: Vec<RouteInfo>,
}

/// Every cluster with its clients' settings, the embedded clusters a plan started, and the
/// topics to create in running ones.
type Clusters = (
    BTreeMap<String, KafkaClient>,
    Vec<(String, EmbeddedCluster)>,
    Vec<(String, String, u32)>,
);

/// The inputs of a plan, by name: what each is, and its route runners.
pub(super) type Inputs = BTreeMap<String, (InputKind, Vec<RouteRunner>)>;

/// Plugins compiled for a plan, by (route index, plugin index).
type Compiled = HashMap<(usize, usize), CompiledPlugin>;

/// Builds a plan for one configuration; borrows the router, changes nothing of it.
pub(super) struct Planner<'a> {
    router: &'a Router,
    config: &'a ConfigFile,
    /// The directory plugin paths are relative to.
    base_dir: PathBuf,
    /// The counters the plan uses, registered only if it is applied.
    staged: Staged,
}

impl Router {
    /// Builds a complete set for `config` (read from the router's file as `text`) beside
    /// the running one: validation, clusters, outputs, compiled plugins and one instance
    /// per input thread, every `init` run.
    pub(super) fn plan(&self, config: ConfigFile, text: &str) -> Result<Plan, ReloadError> {
        let base_dir = config.plugin_base(&self.path);
        let problems = super::check(&config, &base_dir, None);
        if !problems.is_empty() {
            return Err(ReloadError::Invalid(
                config::error(&self.path, text, problems).to_string(),
            ));
        }
        if let Some(running) = &self.config {
            if running.admin != config.admin {
                tracing::warn!("a change to [admin] takes effect at the next start");
            }
            if running.reload != config.reload {
                tracing::warn!("a change to [reload] takes effect at the next start");
            }
        }
        let planner = Planner {
            router: self,
            config: &config,
            base_dir,
            staged: Staged::default(),
        };
        let build = || -> anyhow::Result<_> {
            let (clusters, new_embedded, topics) = planner.clusters()?;
            let (outputs, opened) = planner.outputs(&clusters)?;
            let (compiled, routes, version) = planner.compile(text)?;
            let inputs = planner.runners(&clusters, &outputs, &compiled)?;
            Ok((
                new_embedded,
                topics,
                outputs,
                opened,
                routes,
                version,
                inputs,
            ))
        };
        let (new_embedded, topics, outputs, opened, routes, version, inputs) =
            build().map_err(|e| ReloadError::Build(format!("{e:#}")))?;
        let staged = planner.staged;
        Ok(Plan {
            config,
            version,
            new_embedded,
            topics,
            staged,
            outputs,
            opened,
            inputs,
            routes,
        })
    }
}

impl Planner<'_> {
    /// Phase 1: every `[kafka.NAME]` with the address its clients use. An embedded cluster
    /// the router does not run yet is started (and owned by the plan) with the topics the
    /// file uses; for one that runs, the topics are listed for [`Router::apply`] to create.
    fn clusters(&self) -> anyhow::Result<Clusters> {
        let mut clusters = BTreeMap::new();
        let mut new_embedded = Vec::new();
        let mut to_create = Vec::new();
        for (name, cluster) in &self.config.kafka {
            let cluster = cluster.get_ref();
            let address = cluster.bootstrap.get_ref();
            let bootstrap = if address == "embedded" {
                let topics = topics_of(self.config, name)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let partitions = cluster.topics.get(&topic).copied().unwrap_or(partitions);
                        (topic, partitions)
                    });
                match self.router.embedded.get(name) {
                    Some(mock) => {
                        to_create.extend(topics.map(|(t, p)| (name.clone(), t, p)));
                        mock.bootstrap()
                    }
                    None => {
                        let mock = EmbeddedCluster::start(1)?;
                        tracing::info!(cluster = %name, bootstrap = %mock.bootstrap(), "embedded Kafka cluster started (for development and tests)");
                        for (topic, partitions) in topics {
                            mock.create_topic(&topic, partitions)?;
                        }
                        let bootstrap = mock.bootstrap();
                        new_embedded.push((name.clone(), mock));
                        bootstrap
                    }
                }
            } else {
                address.clone()
            };
            let options = cluster
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                .collect();
            clusters.insert(
                name.clone(),
                KafkaClient {
                    cluster: name.clone(),
                    bootstrap,
                    options,
                },
            );
        }
        Ok((clusters, new_embedded, to_create))
    }

    /// Phase 2: every output. One the running set has with the same resolved kind is
    /// shared; the others are opened now, so a refused plan never half-opens the set.
    fn outputs(
        &self,
        clusters: &BTreeMap<String, KafkaClient>,
    ) -> anyhow::Result<(BTreeMap<String, OpenOutput>, Vec<String>)> {
        let mut outputs = BTreeMap::new();
        let mut opened = Vec::new();
        for (name, output) in &self.config.outputs {
            let kind = OutputKind::resolve(name, output.get_ref(), clusters)?;
            if let Some(open) = self.router.outputs.get(name)
                && open.kind == kind
            {
                let sink = Arc::clone(&open.sink);
                outputs.insert(name.clone(), OpenOutput { kind, sink });
                continue;
            }
            let sink = match &kind {
                OutputKind::Kafka { client, topic } => {
                    let stats = self.staged.output(&self.router.metrics, name);
                    kafka::open_sink(name, client, topic, stats)?
                }
                OutputKind::Zmq(endpoint) => {
                    let stats = self.staged.output(&self.router.metrics, name);
                    let sink = zmq::open_sink(&self.router.zmq, name, endpoint, stats);
                    if self.router.outputs.contains_key(name) {
                        sink.context(format!(
                            "output `{name}` changed: its new socket is opened while the old \
                             one still runs, so it cannot bind the same endpoint (rename the \
                             output or restart)"
                        ))?
                    } else {
                        sink?
                    }
                }
            };
            opened.push(name.clone());
            outputs.insert(name.clone(), OpenOutput { kind, sink });
        }
        Ok((outputs, opened))
    }

    /// Phase 3: every plugin compiled (the runtime caches by content), and the set's
    /// version: a hash of the file's text and every plugin's bytes.
    fn compile(&self, text: &str) -> anyhow::Result<(Compiled, Vec<RouteInfo>, String)> {
        let mut compiled = HashMap::new();
        let mut routes = Vec::new();
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());
        for (r, route) in self.config.routes.iter().enumerate() {
            let route = route.get_ref();
            let mut plugins = Vec::new();
            for (p, plugin) in route.plugins.iter().enumerate() {
                let plugin = plugin.get_ref();
                let file = self.base_dir.join(plugin.path.get_ref());
                let loaded = self
                    .router
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
        Ok((compiled, routes, version))
    }

    /// Phase 4: for each input, one runner per route that reads it, each with its own
    /// plugin instances (an input's thread owns them), every `init` run. An input no route
    /// reads is left out, with a warning.
    fn runners(
        &self,
        clusters: &BTreeMap<String, KafkaClient>,
        outputs: &BTreeMap<String, OpenOutput>,
        compiled: &Compiled,
    ) -> anyhow::Result<Inputs> {
        let metrics = &self.router.metrics;
        let mut inputs = BTreeMap::new();
        for (name, input) in &self.config.inputs {
            let instance = self
                .config
                .instance_id
                .as_ref()
                .map(|i| i.get_ref().as_str());
            let kind = InputKind::resolve(name, input.get_ref(), clusters, instance)?;
            let mut list = Vec::new();
            for (r, route) in self.config.routes.iter().enumerate() {
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
                    stats: self.staged.route(metrics, route.name.get_ref()),
                    reply_now: route
                        .reply_when
                        .as_ref()
                        .is_some_and(|w| *w.get_ref() == crate::config::ReplyWhen::Immediate),
                    drop_refused: route.on_produce_error == crate::config::OnProduceError::Drop,
                    pause_on_plugin_error: route
                        .on_plugin_error
                        .as_ref()
                        .is_some_and(|o| *o.get_ref() == crate::config::OnPluginError::Pause),
                };
                let chain = if self.router.options.native_identity {
                    &[][..]
                } else {
                    &route.plugins[..]
                };
                let mut instances = Vec::new();
                for (p, plugin) in chain.iter().enumerate() {
                    let plugin = plugin.get_ref();
                    let loaded = compiled[&(r, p)].clone();
                    let stats = self
                        .staged
                        .plugin(metrics, route.name.get_ref(), loaded.name());
                    let instance =
                        PluginInstance::new(loaded, plugin.settings()).with_context(|| {
                            format!(
                                "route `{}`: plugin {}",
                                route.name.get_ref(),
                                self.base_dir.join(plugin.path.get_ref()).display()
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
            inputs.insert(name.clone(), (kind, list));
        }
        Ok(inputs)
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
