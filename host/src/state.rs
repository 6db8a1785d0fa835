//! What the rest of the process may see of a running router: the set that runs now (its
//! version, routes and inputs) and a cheap, `Send` handle to it and to the counters. The
//! admin endpoint, `switchyard top`'s source and the CLI read this; only the router writes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use crate::metrics::{InputStats, Loaded, Metrics, RouteStats};

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

/// The set that is running. Immutable: a reload publishes a new one.
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

impl Running {
    /// Its version, as the metrics render it.
    pub fn loaded(&self) -> Loaded<'_> {
        Loaded {
            generation: self.generation,
            version: &self.version,
            at: self.loaded_at,
        }
    }
}

/// Where the router publishes the running set: written by the router when a set is swapped
/// in (and cleared when it stops), read by every [`RouterHandle`].
pub type Published = Arc<RwLock<Option<Arc<Running>>>>;

/// What the admin endpoint and the CLI see of a router; cheap to clone and `Send`.
#[derive(Clone)]
pub struct RouterHandle {
    /// Every counter.
    pub metrics: Arc<Metrics>,
    /// Bootstrap addresses of embedded clusters, by cluster name.
    pub embedded: BTreeMap<String, String>,
    /// The router's publication of the running set.
    pub(crate) running: Published,
}

impl RouterHandle {
    /// The running set, once there is one.
    pub fn running(&self) -> Option<Arc<Running>> {
        self.running
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The counters of every route of the set running now, in file order (empty when
    /// nothing runs).
    pub fn routes(&self) -> Vec<(String, Arc<RouteStats>)> {
        self.running()
            .iter()
            .flat_map(|r| &r.routes)
            .map(|r| (r.name.clone(), self.metrics.route(&r.name)))
            .collect()
    }

    /// Ready: a set is running and every input is connected (outputs are open before a
    /// set is swapped in).
    pub fn is_ready(&self) -> bool {
        self.running()
            .is_some_and(|r| r.inputs.iter().all(|(_, stats)| stats.is_ready()))
    }
}
