//! The host interface a plugin imports, `switchyard:plugin/host` (see `wit/plugin.wit`),
//! and the state of a plugin's store: what each import does, the memory cap, and what the
//! runtime adds to its linker. One file, so what a plugin can reach is read in one place:
//! logging, plugin-defined counters, and WASI 0.2 with nothing granted.

use std::collections::BTreeMap;

use wasmtime::ResourceLimiter;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::switchyard::plugin::host::{self, Level};

/// Caps linear memory and remembers that the cap was hit, so the trap that follows a
/// refused `memory.grow` (Rust's allocator aborts) is reported as `memory`.
pub(super) struct MemoryCap {
    limit: usize,
    /// Set when a `memory.grow` beyond the limit was refused.
    pub(super) exceeded: bool,
    /// Largest memory size granted so far.
    pub(super) peak: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a plugin needs a few thousand at most.
        Ok(desired <= 1 << 20)
    }
}

/// Everything a plugin's store holds.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The memory cap, and whether a call hit it.
    pub(super) memory: MemoryCap,
    /// The plugin's name, for its log lines.
    plugin: String,
    /// The last error-level log line of the current call (a panic message, usually).
    pub(super) last_error: Option<String>,
    /// What `counter-add` added since the store was built, by counter name.
    pub(super) counters: BTreeMap<String, u64>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let plugin = self.plugin.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => {
                tracing::error!(plugin, "{message}");
                self.last_error = Some(message);
            }
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        *self.counters.entry(name).or_default() += delta;
    }
}

impl PluginState {
    /// The state of a new store for plugin `name`, whose memory may grow to `memory_bytes`.
    pub(super) fn new(name: &str, memory_bytes: usize) -> Self {
        PluginState {
            // Nothing granted: no arguments, environment, preopened directories or network.
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit: memory_bytes,
                exceeded: false,
                peak: 0,
            },
            plugin: name.to_owned(),
            last_error: None,
            counters: BTreeMap::new(),
        }
    }
}

/// Adds everything a plugin may import to `linker`: WASI 0.2 and `switchyard:plugin/host`.
pub(super) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    super::bindings::Plugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}
