//! The shared wasmtime engine, its epoch ticker, and loading plugins into pre-instantiated
//! components.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel, Strategy};

use super::bindings::PluginPre;
use super::host::PluginState;
use super::{PluginError, PluginLimits};

/// Engine-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeOptions {
    /// How often the epoch advances. A call is interrupted within its deadline plus one tick.
    pub epoch_tick: Duration,
    /// Whether calls have a deadline at all. Only benchmarks turn it off, to measure what
    /// the deadline checks cost; without it a plugin that loops never returns.
    pub epoch_interruption: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            epoch_tick: Duration::from_millis(10),
            epoch_interruption: true,
        }
    }
}

/// The import namespaces a plugin may use. WASI is linked with nothing granted.
const HOST_INTERFACE: &str = "switchyard:plugin/host@";
const WASI_PREFIX: &str = "wasi:";
/// The interface every plugin exports, up to its version.
const HANDLER_INTERFACE: &str = "switchyard:plugin/handler@";

/// How many distinct components the runtime keeps compiled for the next load.
const CACHED_COMPONENTS: usize = 64;

/// Compiled components by the SHA-256 of their bytes, most recently used last: a plugin
/// named by 2 000 routes, or loaded again by a reload, is compiled once.
#[derive(Default)]
struct ComponentCache {
    entries: Vec<([u8; 32], Component, Duration)>,
}

impl ComponentCache {
    fn get(&mut self, hash: &[u8; 32]) -> Option<(Component, Duration)> {
        let at = self.entries.iter().position(|(h, _, _)| h == hash)?;
        let entry = self.entries.remove(at);
        let found = (entry.1.clone(), entry.2);
        self.entries.push(entry);
        Some(found)
    }

    fn put(&mut self, hash: [u8; 32], component: Component, compile_time: Duration) {
        if self.entries.len() >= CACHED_COMPONENTS {
            self.entries.remove(0);
        }
        self.entries.push((hash, component, compile_time));
    }
}

/// One wasmtime engine for every plugin of the process, with its linker.
#[derive(Clone)]
pub struct PluginRuntime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    options: RuntimeOptions,
    cache: Arc<Mutex<ComponentCache>>,
}

impl PluginRuntime {
    /// Builds the engine (Cranelift, component model, epoch interruption) and starts the
    /// ticker thread that advances its epoch. The ticker stops when the last clone of the
    /// runtime and every plugin compiled by it are dropped.
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .strategy(Strategy::Cranelift)
            .cranelift_opt_level(OptLevel::Speed)
            .wasm_component_model(true)
            .epoch_interruption(options.epoch_interruption);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        super::host::add_to_linker(&mut linker)?;

        let weak = engine.weak();
        let tick = options.epoch_tick;
        std::thread::Builder::new()
            .name("switchyard-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;

        Ok(PluginRuntime {
            engine,
            linker: Arc::new(linker),
            options,
            cache: Arc::default(),
        })
    }

    /// The wasmtime engine, for embedding and benchmarks that need components of their own
    /// under exactly the plugins' engine settings.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine-wide options.
    pub fn options(&self) -> RuntimeOptions {
        self.options
    }

    /// Reads, checks, compiles and pre-instantiates the plugin at `path`.
    pub fn load(&self, path: &Path, limits: PluginLimits) -> Result<CompiledPlugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load_bytes(path, &bytes, limits)
    }

    /// Like [`PluginRuntime::load`], from bytes already in memory; `path` names the plugin in
    /// messages.
    pub fn load_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<CompiledPlugin, PluginError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&digest);
        let (component, compile_time) = match cached {
            Some(found) => found,
            None => {
                let started = Instant::now();
                let component =
                    Component::new(&self.engine, bytes).map_err(|e| PluginError::Compile {
                        path: path.to_owned(),
                        message: format!("{e:#}"),
                    })?;
                let compile_time = started.elapsed();
                self.cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .put(digest, component.clone(), compile_time);
                (component, compile_time)
            }
        };

        let component_type = component.component_type();
        for (name, _) in component_type.imports(&self.engine) {
            if !(name.starts_with(HOST_INTERFACE) || name.starts_with(WASI_PREFIX)) {
                return Err(PluginError::Import {
                    path: path.to_owned(),
                    import: name.to_owned(),
                });
            }
        }

        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Link {
                path: path.to_owned(),
                message: format!("{e:#}"),
            })?;
        let pre = PluginPre::new(pre).map_err(|e| PluginError::Link {
            path: path.to_owned(),
            message: format!(
                "it does not export `switchyard:plugin/handler@0.1` (0.1.0 or later): {e:#}"
            ),
        })?;

        let batch_version = batch_version(&component_type, &self.engine);
        let hash = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok(CompiledPlugin(Arc::new(Compiled {
            engine: self.engine.clone(),
            pre,
            path: path.to_owned(),
            name: plugin_name(path),
            hash,
            limits,
            epoch_tick: self.options.epoch_tick,
            compile_time,
            batch_version,
        })))
    }
}

/// The batch version a component reads, by the contract version in the name of the
/// handler it exports: version 1 up to contract 0.1.1, which knows no null values.
fn batch_version(component: &wasmtime::component::types::Component, engine: &Engine) -> u32 {
    let reads_nulls = component.exports(engine).any(|(name, _)| {
        name.strip_prefix(HANDLER_INTERFACE)
            .and_then(|version| version.strip_prefix("0.1."))
            .and_then(|patch| patch.parse::<u32>().ok())
            .is_some_and(|patch| patch >= 2)
    });
    if reads_nulls {
        switchyard_abi::BATCH_VERSION_NULLS
    } else {
        switchyard_abi::VERSION
    }
}

/// A plugin's display name: its file name without the `.wasm` extension.
fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub(super) struct Compiled {
    pub(super) engine: Engine,
    pub(super) pre: PluginPre<PluginState>,
    pub(super) path: PathBuf,
    pub(super) name: String,
    pub(super) hash: String,
    pub(super) limits: PluginLimits,
    pub(super) epoch_tick: Duration,
    pub(super) compile_time: Duration,
    /// The batch version it reads (see [`switchyard_abi::BatchWriter::of_version`]).
    pub(super) batch_version: u32,
}

/// A compiled, pre-instantiated plugin. Cloning shares the compiled code.
#[derive(Clone)]
pub struct CompiledPlugin(pub(super) Arc<Compiled>);

impl CompiledPlugin {
    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Its name: the file name without `.wasm`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// SHA-256 of the component's bytes, in hex: which version of a plugin ran.
    pub fn hash(&self) -> &str {
        &self.0.hash
    }

    /// Its limits.
    pub fn limits(&self) -> PluginLimits {
        self.0.limits
    }

    /// How long compiling the component took.
    pub fn compile_time(&self) -> Duration {
        self.0.compile_time
    }

    /// The batch version it reads: a plugin built for contract 0.1.1 or earlier is given
    /// null payloads and header values as empty ones.
    pub fn batch_version(&self) -> u32 {
        self.0.batch_version
    }

    /// The epoch deadline, in ticks, that enforces `timeout`: one tick more than the
    /// timeout spans, since the current tick may be nearly over when the call starts.
    pub(super) fn deadline_ticks(&self) -> u64 {
        let tick = self.0.epoch_tick.as_nanos().max(1);
        let ticks = self.0.limits.timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("path", &self.0.path)
            .field("hash", &self.0.hash)
            .field("limits", &self.0.limits)
            .finish()
    }
}
