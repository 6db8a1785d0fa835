//! The command line: argument parsing and dispatch to each subcommand.

mod admin_client;
mod demo;
mod kafka_dev;
mod plugin_new;
mod plugin_test;
mod run;
mod top;
mod validate;

pub(crate) use plugin_test::parse_line as parse_test_line;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Switchyard routes messages between Kafka and ZeroMQ through sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the quickstart with live traffic: embedded Kafka, a ZeroMQ feed, an order
    /// generator, the example plugins, and per-route counts every second.
    Demo {
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
    },
    /// Runs the router on a configuration file until SIGINT or SIGTERM, then drains: stops
    /// fetching, finishes in-flight batches, flushes outputs, commits offsets.
    Run {
        /// The configuration file.
        file: PathBuf,
        /// Benchmarking only: replace every plugin with a native identity (every message
        /// passes), same threads and batching, to measure what the sandbox costs.
        #[arg(long, hide = true)]
        native_identity: bool,
    },
    /// Runs a development Kafka as a process of its own and prints its bootstrap address on
    /// the first line of stdout: the embedded cluster (librdkafka's mock, no setup), or with
    /// `--apache` a real single-node Apache Kafka (needs Java 17 and Maven; the jars are
    /// fetched from Maven Central once). Stops on Ctrl-C or SIGTERM and removes everything.
    KafkaDev {
        /// A topic to create, NAME:PARTITIONS (partitions default to 4); repeat for several.
        #[arg(long = "topic", value_name = "NAME[:PARTITIONS]")]
        topics: Vec<String>,
        /// Number of brokers (embedded cluster only).
        #[arg(long, default_value_t = 1, conflicts_with = "apache")]
        brokers: i32,
        /// Start Apache Kafka (KRaft, combined broker and controller) instead of the
        /// embedded cluster.
        #[arg(long)]
        apache: bool,
        /// With --apache: the broker's maximum heap in MiB.
        #[arg(long, default_value_t = 512, requires = "apache", value_name = "MIB")]
        heap_mb: u32,
        /// With --apache: fetch the broker's jars into the cache and exit.
        #[arg(long, requires = "apache")]
        fetch_only: bool,
    },
    /// Shows a running router live from its admin endpoint: per route, messages in, out,
    /// dropped, rejected and dead-lettered per second and the plugin stage's p99; per input,
    /// readiness and consumer lag; reloads; ZeroMQ drops. Redraws in place on a terminal
    /// (q quits); prints one plain-text frame per interval otherwise.
    Top {
        /// The admin endpoint, HOST:PORT (default: `[admin] listen` of --config, else
        /// SWITCHYARD_ADMIN_LISTEN, else 127.0.0.1:9464).
        #[arg(long, value_name = "HOST:PORT")]
        admin: Option<String>,
        /// Read the admin address from this configuration file.
        #[arg(long, value_name = "FILE", conflicts_with = "admin")]
        config: Option<PathBuf>,
        /// Time between two frames, in milliseconds.
        #[arg(long, default_value_t = 1000, value_name = "MS",
              value_parser = clap::value_parser!(u64).range(50..))]
        interval_ms: u64,
        /// Stop after this many frames (default: until q, Ctrl-C or SIGTERM).
        #[arg(long, value_name = "N")]
        frames: Option<u64>,
    },
    /// Checks a configuration file as a run would: syntax, names, sockets, loops, and every
    /// plugin loaded and initialised. Prints each problem as FILE:LINE:COLUMN: message.
    Validate {
        /// The configuration file.
        file: PathBuf,
    },
    /// Work with plugins: run one against sample messages, or start a new one.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Runs a plugin over messages from a JSONL file (or stdin) and prints each outcome.
    ///
    /// Each input line is a JSON object: {"key": "...", "payload": "text", "headers":
    /// {"name": "value"}}. `payload_base64` / `key_base64` may replace `payload` / `key`;
    /// `headers` may also be a list of [name, value] pairs (names may repeat); `topic`,
    /// `partition`, `offset` and `timestamp` are optional. One JSON line is printed per
    /// message, then a summary line. Exit status: 0 when every message got an outcome, 1
    /// when any failed or an input line was malformed, 2 when the plugin cannot be loaded
    /// or its `init` fails.
    Test(PluginTestArgs),
    /// Writes a ready-to-build plugin project in a new directory NAME.
    New(PluginNewArgs),
}

#[derive(Debug, Args)]
struct PluginTestArgs {
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// JSONL file of input messages; stdin when absent.
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// A plugin setting, KEY=VALUE; repeat for several.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// A destination the plugin may emit to, as a route would declare it; repeat for several.
    #[arg(long = "destination", short = 'd', value_name = "NAME")]
    destinations: Vec<String>,
    /// Messages per `process` call. 1 attributes every failure to its own line.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    batch: u32,
    /// Deadline of one call, in milliseconds.
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
    /// Memory cap of the plugin, in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mb: usize,
    /// Name of the input the messages appear to come from.
    #[arg(long, default_value = "test")]
    input_name: String,
}

#[derive(Debug, Args)]
struct PluginNewArgs {
    /// Name of the plugin; also the directory to create.
    name: String,
    /// Path to the `switchyard-plugin-sdk` crate (`plugin-sdk/` of a Switchyard checkout);
    /// defaults to `SWITCHYARD_PLUGIN_SDK`, else the one in the source tree this binary was
    /// built from, if it is still there.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Demo { duration } => demo::run(duration),
        Command::Run {
            file,
            native_identity,
        } => run::run(&file, native_identity),
        Command::KafkaDev {
            topics,
            brokers,
            apache,
            heap_mb,
            fetch_only,
        } => {
            if fetch_only {
                kafka_dev::fetch().map(|()| ExitCode::SUCCESS)
            } else if apache {
                kafka_dev::run_apache(&topics, heap_mb)
            } else {
                kafka_dev::run(&topics, brokers)
            }
        }
        Command::Validate { file } => validate::run(&file),
        Command::Top {
            admin,
            config,
            interval_ms,
            frames,
        } => admin_client::admin_address(admin, config.as_deref()).and_then(|admin| {
            top::run(&top::TopOptions {
                admin,
                token: admin_client::admin_token(config.as_deref()),
                interval: std::time::Duration::from_millis(interval_ms),
                frames,
            })
        }),
        Command::Plugin(PluginCommand::Test(args)) => plugin_test::run(args),
        Command::Plugin(PluginCommand::New(args)) => {
            plugin_new::run(args).map(|()| ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("switchyard: {e:#}");
        ExitCode::from(2)
    })
}

/// Loads a configuration file, printing its problems to stderr; `None` when it has any.
fn load_config(file: &std::path::Path) -> Option<(crate::config::ConfigFile, String)> {
    crate::config::load(file).map_err(|e| eprintln!("{e}")).ok()
}

/// Logs to stderr, filtered by `SWITCHYARD_LOG` (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
