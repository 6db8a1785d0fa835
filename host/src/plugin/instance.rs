//! A plugin instance in its own store: host imports, the memory limiter, calls under a
//! deadline, failure classification and rebuilding after a failure.

use std::collections::BTreeMap;
use std::time::Instant;

use switchyard_abi::{BatchWriter, Outcome, decode_result, is_all_pass};
use wasmtime::{Store, Trap};

use super::bindings::Plugin as Bindings;
use super::breaker::{Breaker, Change};
use super::host::PluginState;
use super::{CompiledPlugin, PluginError};

/// A live store and its bindings.
struct Live {
    store: Store<PluginState>,
    bindings: Bindings,
}

/// One instance of a plugin, used by one thread at a time.
pub struct PluginInstance {
    plugin: CompiledPlugin,
    config: Vec<(String, String)>,
    live: Option<Live>,
    /// Counters carried over from instances that were thrown away.
    counters: BTreeMap<String, u64>,
    rebuilds: u64,
    /// Peak linear memory of instances that were thrown away.
    peak_memory: usize,
    /// Stops calling (and rebuilding) a plugin that keeps failing.
    breaker: Breaker,
}

impl PluginInstance {
    /// Instantiates `plugin` and runs its `init` with `config`.
    pub fn new(plugin: CompiledPlugin, config: Vec<(String, String)>) -> Result<Self, PluginError> {
        let live = instantiate(&plugin, &config)?;
        Ok(PluginInstance {
            plugin,
            config,
            live: Some(live),
            counters: BTreeMap::new(),
            rebuilds: 0,
            peak_memory: 0,
            breaker: Breaker::default(),
        })
    }

    /// The plugin this is an instance of.
    pub fn plugin(&self) -> &CompiledPlugin {
        &self.plugin
    }

    /// How many times the instance was rebuilt after a failure.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// The most linear memory any instance of this plugin held, in bytes.
    pub fn peak_memory(&self) -> usize {
        let live = self.live.as_ref().map_or(0, |l| l.store.data().memory.peak);
        self.peak_memory.max(live)
    }

    /// Totals of the plugin-defined counters since the instance was created.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let mut totals = self.counters.clone();
        if let Some(live) = &self.live {
            for (name, value) in &live.store.data().counters {
                *totals.entry(name.clone()).or_default() += value;
            }
        }
        totals
    }

    /// Takes what the plugin added to its counters since the last take (across rebuilt
    /// instances), for the router's metrics. [`PluginInstance::counters`] then starts over.
    pub fn take_counters(&mut self) -> Vec<(String, u64)> {
        let mut taken: Vec<(String, u64)> =
            std::mem::take(&mut self.counters).into_iter().collect();
        if let Some(live) = &mut self.live {
            let fresh = std::mem::take(&mut live.store.data_mut().counters);
            for (name, value) in fresh {
                match taken.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, total)) => *total += value,
                    None => taken.push((name, value)),
                }
            }
        }
        taken
    }

    /// Calls `process` with an encoded batch and returns one outcome per message.
    ///
    /// On failure the instance is discarded and a fresh one is built (with `init`) before
    /// the next call, so state corrupted by a trap never leaks into later batches.
    pub fn process(&mut self, batch: &BatchWriter) -> Result<Vec<Outcome>, PluginError> {
        Ok(self
            .process_unless_all_pass(batch)?
            .unwrap_or_else(|| vec![Outcome::Pass; batch.len()]))
    }

    /// The batch version the plugin reads (see [`CompiledPlugin::batch_version`]).
    pub fn batch_version(&self) -> u32 {
        self.plugin.batch_version()
    }

    /// Like [`PluginInstance::process`], but answers `None` when every message passed, the
    /// common case, without building a list of outcomes.
    ///
    /// A plugin that failed every message of its last batches is not called for a while
    /// (see `plugin/breaker.rs`): the call fails at once with [`PluginError::Unavailable`].
    pub fn process_unless_all_pass(
        &mut self,
        batch: &BatchWriter,
    ) -> Result<Option<Vec<Outcome>>, PluginError> {
        if let Err(retry_in) = self.breaker.check(Instant::now()) {
            return Err(PluginError::Unavailable {
                failures: self.breaker.failures(),
                retry_in,
            });
        }
        self.call(batch)
    }

    /// Records how a batch fared through this plugin, for its circuit breaker: `ok` unless
    /// every message of it failed. (Calls that fail while a failed batch is split to find
    /// its culprits are not counted one by one.) The breaker's state change, if any.
    pub fn record_batch(&mut self, ok: bool) -> Option<Change> {
        self.breaker.record(ok, Instant::now())
    }

    /// Calls the live instance, building one first if the last was discarded.
    fn call(&mut self, batch: &BatchWriter) -> Result<Option<Vec<Outcome>>, PluginError> {
        let live = match &mut self.live {
            Some(live) => live,
            None => {
                self.rebuilds += 1;
                self.live.insert(instantiate(&self.plugin, &self.config)?)
            }
        };
        live.store.set_epoch_deadline(self.plugin.deadline_ticks());
        live.store.data_mut().last_error = None;
        let result = live
            .bindings
            .switchyard_plugin_handler()
            .call_process(&mut live.store, batch.as_bytes());
        let outcome = match result {
            Ok(bytes) if is_all_pass(&bytes, batch.len()) => Ok(None),
            Ok(bytes) => decode_result(&bytes, batch.len())
                .map(Some)
                .map_err(|e| PluginError::BadOutput(e.to_string())),
            Err(e) => Err(classify(&self.plugin, e, live.store.data())),
        };
        if outcome.is_err() {
            self.discard();
        }
        outcome
    }

    /// Drops the live store, keeping its counters.
    fn discard(&mut self) {
        if let Some(live) = self.live.take() {
            self.peak_memory = self.peak_memory.max(live.store.data().memory.peak);
            for (name, value) in live.store.into_data().counters {
                *self.counters.entry(name).or_default() += value;
            }
        }
    }
}

/// Builds a store, instantiates the pre-instantiated component in it and runs `init`.
fn instantiate(plugin: &CompiledPlugin, config: &[(String, String)]) -> Result<Live, PluginError> {
    let inner = &plugin.0;
    let state = PluginState::new(&inner.name, inner.limits.memory_bytes);
    let mut store = Store::new(&inner.engine, state);
    store.limiter(|s| &mut s.memory);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(plugin.deadline_ticks());

    let started = Instant::now();
    let bindings = inner
        .pre
        .instantiate(&mut store)
        .map_err(|e| PluginError::Init(classify(plugin, e, store.data()).to_string()))?;
    tracing::trace!(plugin = %inner.name, elapsed = ?started.elapsed(), "instantiated");

    store.set_epoch_deadline(plugin.deadline_ticks());
    match bindings
        .switchyard_plugin_handler()
        .call_init(&mut store, config)
    {
        Ok(Ok(())) => Ok(Live { store, bindings }),
        Ok(Err(message)) => Err(PluginError::Init(message)),
        Err(e) => Err(PluginError::Init(
            classify(plugin, e, store.data()).to_string(),
        )),
    }
}

/// Turns a wasmtime error from a call into a classified [`PluginError`].
fn classify(plugin: &CompiledPlugin, error: wasmtime::Error, state: &PluginState) -> PluginError {
    let limits = plugin.limits();
    if state.memory.exceeded {
        return PluginError::Memory {
            limit: limits.memory_bytes,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout(limits.timeout),
        Some(Trap::StackOverflow) => PluginError::Stack,
        Some(trap) => PluginError::Trap(match &state.last_error {
            Some(last) => format!("{trap} ({last})"),
            None => trap.to_string(),
        }),
        None => PluginError::Trap(format!("{error:#}")),
    }
}
