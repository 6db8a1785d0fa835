//! Helpers shared by Switchyard's integration tests: the plugins built for them, the real
//! `switchyard` binary, and waiting on conditions with deadlines.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switchyard::plugin::{
    CompiledPlugin, PluginInstance, PluginLimits, PluginRuntime, RuntimeOptions,
};
use switchyard_abi::{BatchWriter, Origin, Outcome};

pub mod admin;
pub mod broker;
pub mod chaos;
pub mod kafka;
pub mod memory;
pub mod procs;
pub mod stream;
pub mod versions;

/// Paths of the plugins in `plugins/`, built for wasm32-wasip2 by this crate's build script.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

/// The sample messages shipped with a plugin: `plugins/NAME/testdata/messages.jsonl`.
pub fn testdata(plugin: &str) -> PathBuf {
    repo_root()
        .join("plugins")
        .join(plugin)
        .join("testdata/messages.jsonl")
}

/// The `switchyard` binary of this build. `cargo test --workspace` builds it because the
/// `switchyard` package has integration tests of its own (cargo builds a package's
/// binaries for them); the tests of this package then find it beside their own executable.
pub fn switchyard_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/switchyard
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .join(format!("switchyard{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, or build it first with \
         `cargo build -p switchyard`",
        bin.display()
    );
    bin
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A router configuration with one route, `relay`: a PULL input `feed` bound on
/// `input_port`, through `passthrough`, to output `out`, whose `zmq` table holds `output`
/// (for example `socket = "push", bind = "tcp://127.0.0.1:5000"`).
pub fn zmq_relay_config(input_port: u16, output: &str) -> String {
    zmq_relay_config_with(
        &format!(r#"socket = "pull", bind = "tcp://127.0.0.1:{input_port}""#),
        output,
    )
}

/// [`zmq_relay_config`] with the input's `zmq` table given too.
pub fn zmq_relay_config_with(input: &str, output: &str) -> String {
    format!(
        r#"
[inputs.feed]
zmq = {{ {input} }}
[outputs.out]
zmq = {{ {output} }}
[[routes]]
name = "relay"
from = ["feed"]
plugins = [{{ path = "{passthrough}" }}]
to = ["out"]
"#,
        passthrough = plugins::PASSTHROUGH
    )
}

/// A ZeroMQ socket of `kind` connected to `tcp://127.0.0.1:PORT`.
pub fn zmq_connect(ctx: &zmq::Context, kind: zmq::SocketType, port: u16) -> zmq::Socket {
    let socket = ctx.socket(kind).expect("create a socket");
    socket
        .connect(&format!("tcp://127.0.0.1:{port}"))
        .expect("connect");
    socket
}

/// The next message on `socket` within `within`, as its frames.
pub fn zmq_recv(socket: &zmq::Socket, within: Duration) -> Option<Vec<Vec<u8>>> {
    let ms = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
    if socket.poll(zmq::POLLIN, ms).ok()? == 0 {
        return None;
    }
    socket.recv_multipart(0).ok()
}

/// Polls `condition` until it holds or `deadline` passes; returns whether it held.
pub fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A runtime with the default options, shared by a test.
pub fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeOptions::default()).expect("plugin runtime")
}

/// Loads a plugin with the given limits.
pub fn load(runtime: &PluginRuntime, path: &str, limits: PluginLimits) -> CompiledPlugin {
    runtime
        .load(Path::new(path), limits)
        .unwrap_or_else(|e| panic!("load {path}: {e}"))
}

/// Loads a plugin with default limits and instantiates it with `config`.
pub fn instance(path: &str, config: &[(&str, &str)]) -> PluginInstance {
    let runtime = runtime();
    let plugin = load(&runtime, path, PluginLimits::default());
    PluginInstance::new(plugin, owned(config)).unwrap_or_else(|e| panic!("init {path}: {e}"))
}

/// Key/value pairs as owned strings.
pub fn owned(config: &[(&str, &str)]) -> Vec<(String, String)> {
    config
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A message for [`batch`]: key, payload and headers.
pub type Msg<'a> = (Option<&'a str>, &'a str, &'a [(&'a str, &'a str)]);

/// Encodes messages as one batch from the input `test`, each from Kafka topic `in`,
/// partition 0, at offsets 0, 1, 2, ...
pub fn batch(messages: &[Msg<'_>]) -> BatchWriter {
    let mut w = BatchWriter::new();
    w.start("test");
    for (offset, (key, payload, headers)) in messages.iter().enumerate() {
        w.push(
            &Origin::Kafka {
                topic: "in",
                partition: 0,
                offset: offset as i64,
            },
            key.map(str::as_bytes),
            Some(1_700_000_000_000),
            headers.iter().map(|(n, v)| (*n, Some(v.as_bytes()))),
            Some(payload.as_bytes()),
        );
    }
    w
}

/// Runs `messages` through `instance` and returns the outcomes, panicking on a failure.
pub fn process(instance: &mut PluginInstance, messages: &[Msg<'_>]) -> Vec<Outcome> {
    instance
        .process(&batch(messages))
        .unwrap_or_else(|e| panic!("process: {e}"))
}
