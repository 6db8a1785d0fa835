//! The plugin runtime: compiles WebAssembly components once, pre-instantiates them and
//! calls them under an epoch deadline and a memory cap, classifying every failure.
//!
//! A plugin goes through three stages:
//!
//! 1. [`PluginRuntime::load`] reads and compiles the component, refuses it if it imports
//!    anything but `switchyard:plugin/host` and WASI 0.2, and pre-instantiates it
//!    ([`CompiledPlugin`], cheap to clone and share between threads).
//! 2. [`PluginInstance::new`] instantiates it in a store of its own and runs `init`.
//! 3. [`PluginInstance::process`] calls it with a batch. A trap, timeout, exhausted memory,
//!    stack overflow or malformed result fails that call only, with a [`PluginError`]
//!    whose [`ErrorKind`] says which; the instance is then thrown away and rebuilt before
//!    the next call.

mod breaker;
mod error;
mod host;
mod instance;
mod runtime;

use std::time::Duration;

pub use breaker::Change as BreakerChange;
pub use error::{ErrorKind, PluginError};
pub use instance::PluginInstance;
pub use runtime::{CompiledPlugin, PluginRuntime, RuntimeOptions};

/// Per-plugin resource limits, configurable per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Longest a single `init` or `process` call may run.
    pub timeout: Duration,
    /// Most linear memory the plugin may hold, in bytes.
    pub memory_bytes: usize,
}

impl PluginLimits {
    /// Default call deadline: generous for a batch of a few hundred messages, short enough
    /// that a stuck plugin is noticed at once.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
    /// Default memory cap: 64 MiB.
    pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            timeout: Self::DEFAULT_TIMEOUT,
            memory_bytes: Self::DEFAULT_MEMORY_BYTES,
        }
    }
}

/// Host-side bindings generated from `wit/plugin.wit`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
    });
}
