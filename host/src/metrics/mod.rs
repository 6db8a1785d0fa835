//! Counters the router keeps about itself ([`stats`]), their registry, and their
//! Prometheus text rendering ([`render`]).
//!
//! Counters are keyed by name (route, plugin, input, output), not by configuration version,
//! so they keep counting across reloads: a route that is still there after a reload goes on
//! with the same counters, as Prometheus expects of a `_total`.

mod render;
mod stats;

pub use stats::{Histogram, InputStats, OutputStats, PluginStats, RouteStats};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// The running configuration's version, as `switchyard_config_info` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Loaded<'a> {
    /// Counts up from 1 with every applied reload.
    pub generation: u64,
    /// A hash of the configuration text and every plugin's bytes.
    pub version: &'a str,
    /// When it was swapped in.
    pub at: SystemTime,
}

/// Every counter of the router.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    plugins: Mutex<BTreeMap<(String, String), Arc<PluginStats>>>,
    inputs: Mutex<BTreeMap<String, Arc<InputStats>>>,
    outputs: Mutex<BTreeMap<String, Arc<OutputStats>>>,
    /// Reloads applied.
    pub reloads_ok: AtomicU64,
    /// Reloads refused (the running set stayed).
    pub reloads_error: AtomicU64,
    /// Whether the last load (the start, or a reload) succeeded, and when it happened.
    last_load: Mutex<Option<(bool, SystemTime)>>,
}

/// A copy of a map of counters, so rendering holds no lock while it formats.
fn snapshot<K: Clone, V>(map: &Mutex<BTreeMap<K, Arc<V>>>) -> BTreeMap<K, Arc<V>> {
    map.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

fn get_or_default<K: Ord + Clone, V: Default>(map: &Mutex<BTreeMap<K, Arc<V>>>, key: &K) -> Arc<V> {
    Arc::clone(
        map.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default(),
    )
}

/// Counters a plan will use: the registered ones where they exist, new ones otherwise, which
/// are registered only when the plan is applied ([`Metrics::register`]). A refused plan
/// leaves no series behind.
#[derive(Debug, Default)]
pub struct Staged {
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    plugins: Mutex<BTreeMap<(String, String), Arc<PluginStats>>>,
    outputs: Mutex<BTreeMap<String, Arc<OutputStats>>>,
}

/// The registered value under `key`, else the staged one (made on first use).
fn staged<K: Ord + Clone, V: Default>(
    registered: &Mutex<BTreeMap<K, Arc<V>>>,
    staged: &Mutex<BTreeMap<K, Arc<V>>>,
    key: K,
) -> Arc<V> {
    if let Some(v) = registered
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Arc::clone(v);
    }
    get_or_default(staged, &key)
}

/// Adds the staged values whose keys are not registered yet.
fn adopt<K: Ord, V>(registered: &Mutex<BTreeMap<K, Arc<V>>>, staged: Mutex<BTreeMap<K, Arc<V>>>) {
    let mut registered = registered.lock().unwrap_or_else(PoisonError::into_inner);
    for (key, value) in staged.into_inner().unwrap_or_else(PoisonError::into_inner) {
        registered.entry(key).or_insert(value);
    }
}

impl Staged {
    /// The counters route `name` will use.
    pub fn route(&self, metrics: &Metrics, name: &str) -> Arc<RouteStats> {
        staged(&metrics.routes, &self.routes, name.to_owned())
    }

    /// The counters `plugin` of route `route` will use.
    pub fn plugin(&self, metrics: &Metrics, route: &str, plugin: &str) -> Arc<PluginStats> {
        staged(
            &metrics.plugins,
            &self.plugins,
            (route.to_owned(), plugin.to_owned()),
        )
    }

    /// The counters output `name` will use.
    pub fn output(&self, metrics: &Metrics, name: &str) -> Arc<OutputStats> {
        staged(&metrics.outputs, &self.outputs, name.to_owned())
    }
}

impl Metrics {
    /// Registers what a plan staged, now that it runs.
    pub fn register(&self, staged: Staged) {
        adopt(&self.routes, staged.routes);
        adopt(&self.plugins, staged.plugins);
        adopt(&self.outputs, staged.outputs);
    }

    /// The counters of route `name`.
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        get_or_default(&self.routes, &name.to_owned())
    }

    /// The counters of `plugin` in route `route`.
    pub fn plugin(&self, route: &str, plugin: &str) -> Arc<PluginStats> {
        get_or_default(&self.plugins, &(route.to_owned(), plugin.to_owned()))
    }

    /// The state of input `name`.
    pub fn input(&self, name: &str) -> Arc<InputStats> {
        get_or_default(&self.inputs, &name.to_owned())
    }

    /// Counts a reload by its result, and remembers it as the last one.
    pub fn record_reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.record_load(ok);
    }

    /// Remembers the result of a load (the start counts, but is not a reload).
    pub fn record_load(&self, ok: bool) {
        *self
            .last_load
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((ok, SystemTime::now()));
    }

    /// The counters of output `name`.
    pub fn output(&self, name: &str) -> Arc<OutputStats> {
        get_or_default(&self.outputs, &name.to_owned())
    }
}
