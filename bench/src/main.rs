//! `switchyard-bench`: Switchyard measured side by side with what it is built from, in one
//! run, alternating the configurations A B A B so that a noisy machine moves them together.
//!
//! ```text
//! cargo run --release -p switchyard-bench            # full run, ~10 minutes on 2 cores
//! cargo run --release -p switchyard-bench -- --quick # 100-byte messages only, under 2 minutes
//! cargo run --release -p switchyard-bench -- --quick --only gateway  # one group
//! ```
//!
//! It builds the release `switchyard` binary and the example plugins, then measures:
//!
//! - ZeroMQ, PUSH in and PULL out (a sender and a sink in processes of their own, every
//!   socket with a high-water mark of 100 000): `zmq-direct` (no middle), `zmq-proxy` (libzmq's own
//!   forwarder in a process of its own), `router-native` (`switchyard run
//!   --native-identity`: the plugin stage replaced by a native identity), `router-wasm`
//!   (the `passthrough` plugin) and `router-json` (the `json_filter` plugin);
//! - Kafka on the embedded cluster (`switchyard kafka-dev`): `kafka-native` (a plain rdkafka
//!   consume → produce loop with the router's client settings, in a process of its own) and
//!   `router-kafka` (the router with `passthrough`);
//! - the same on Apache Kafka at 100 B and 1 KiB (`…@apache`), with `router-json` (the router
//!   with `json_filter`) and `python-json` (a confluent-kafka consume → filter → produce →
//!   commit loop in Python, `bench/python/`; `pip install -r bench/python/requirements.txt`);
//! - the ZeroMQ gateway on Apache Kafka at 100 B: one DEALER writing one-way
//!   (`gateway-oneway@apache`) against acknowledged with 8 000 requests in flight
//!   (`gateway-ack@apache`), and a REQ client's lock-step round trip (`gateway-req`);
//! - open-loop latency through `router-native` and `router-wasm` at 25 % and 50 % of
//!   `router-native`'s throughput;
//! - the plugin boundary: an empty component call against `process` per message.
//!
//! Results go to `bench/results/`: `report.md` (every ratio next to its target),
//! `results.json` (every raw figure, to compare two commits) and `throughput.svg`.

mod gateway;
mod kafka;
mod micro;
mod report;
mod results;
mod setup;
mod transactions;
mod zmq_runs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::setup::Setup;

/// Message sizes of the full run; 100 B is the headline.
const SIZES: [usize; 4] = [16, 100, 1024, 16384];

#[derive(Parser)]
#[command(
    name = "switchyard-bench",
    version,
    about = "Switchyard's benchmark harness"
)]
struct Args {
    /// 100-byte messages only, three alternations and smaller counts: under two minutes.
    #[arg(long)]
    quick: bool,
    /// Alternations of each configuration (default 5; 3 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Multiplies every message count (the CI smoke test uses a tiny scale).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Where the report, JSON and chart are written.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Measures one group only: `zmq`, `kafka` (the embedded cluster), `apache`, `gateway`
    /// or `boundary` (the report leaves the others empty).
    #[arg(long, value_enum)]
    only: Option<Group>,
    /// The `switchyard` binary to measure; by default the release build, built first.
    #[arg(long)]
    switchyard: Option<PathBuf>,
    #[command(subcommand)]
    role: Option<Role>,
}

/// Groups of measurements.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Group {
    /// ZeroMQ throughput and latency.
    Zmq,
    /// The embedded cluster.
    Kafka,
    /// Apache Kafka.
    Apache,
    /// The ZeroMQ gateway on Apache Kafka.
    Gateway,
    /// The plugin boundary.
    Boundary,
}

/// Roles the harness runs itself in, as child processes, so each has its own CPU account.
#[derive(Subcommand)]
enum Role {
    /// libzmq's forwarder: PULL bound on one port, PUSH bound on another.
    #[command(hide = true)]
    Proxy { pull: u16, push: u16 },
    /// A ZeroMQ PUSH connected to `port`, sending `count` messages of `size` bytes.
    #[command(hide = true)]
    Send {
        port: u16,
        count: usize,
        size: usize,
    },
    /// A ZeroMQ PULL on `port` (bound with `--bind`, else connected) that receives `count`
    /// messages and prints the seconds from the first to the last.
    #[command(hide = true)]
    Sink {
        port: u16,
        count: usize,
        #[arg(long)]
        bind: bool,
    },
    /// A plain rdkafka consume → produce loop.
    #[command(hide = true)]
    KafkaLoop {
        bootstrap: String,
        from: String,
        to: String,
        group: String,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.role {
        Some(Role::Proxy { pull, push }) => return zmq_runs::proxy(pull, push),
        Some(Role::Send { port, count, size }) => return zmq_runs::send(port, count, size),
        Some(Role::Sink { port, count, bind }) => return zmq_runs::sink(port, count, bind),
        Some(Role::KafkaLoop {
            bootstrap,
            from,
            to,
            group,
        }) => return kafka::native_loop(&bootstrap, &from, &to, &group),
        None => {}
    }
    let started = Instant::now();
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .canonicalize()
        .context("the harness needs the source tree it was built from")?;
    let switchyard = match args.switchyard {
        Some(path) => path,
        None => build_switchyard(&root)?,
    };
    build_plugins(&root)?;
    let scratch = std::env::temp_dir().join(format!("switchyard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let quick_scale = if args.quick { 0.25 } else { 1.0 };
    let setup = Setup {
        switchyard,
        harness: std::env::current_exe()?,
        root: root.clone(),
        rounds: args.rounds.unwrap_or(if args.quick { 3 } else { 5 }).max(1),
        scale: args.scale * quick_scale,
        sizes: if args.quick {
            vec![100]
        } else {
            SIZES.to_vec()
        },
        scratch: scratch.clone(),
    };
    let machine = results::Machine::read();
    eprintln!(
        "switchyard-bench: {} alternations, sizes {:?}, {} ({} cores)",
        setup.rounds, setup.sizes, machine.cpu, machine.cores
    );

    let runs = |group: Group| args.only.is_none_or(|only| only == group);
    if runs(Group::Apache) {
        // Found before the first run rather than after several minutes of them.
        kafka::check_python()?;
    }
    let (zmq, latency) = if runs(Group::Zmq) {
        let zmq = zmq_runs::throughput(&setup)?;
        let native_max = zmq
            .iter()
            .filter(|r| r.config == "router-native" && r.size == 100)
            .map(|r| r.msgs_per_s)
            .collect::<Vec<_>>();
        let latency = zmq_runs::latency(&setup, results::median(&native_max))?;
        (zmq, latency)
    } else {
        Default::default()
    };
    let mut kafka = Vec::new();
    if runs(Group::Kafka) {
        kafka.extend(kafka::throughput(&setup)?);
    }
    let mut transactions = Vec::new();
    if runs(Group::Apache) {
        let (throughput, latency) =
            kafka::throughput_apache(&setup, |kafka| transactions::latency(&setup, kafka))?;
        kafka.extend(throughput);
        transactions = latency;
    }
    let mut replies = Vec::new();
    if runs(Group::Gateway) {
        let (gateway, answers) = gateway::runs(&setup)?;
        kafka.extend(gateway);
        replies = answers;
    }
    let micro = if runs(Group::Boundary) {
        micro::boundary(&setup)?
    } else {
        Vec::new()
    };

    let results = results::Results {
        machine,
        quick: args.quick,
        rounds: setup.rounds,
        sizes: setup.sizes.clone(),
        throughput: zmq.into_iter().chain(kafka).collect(),
        latency,
        replies,
        transactions,
        micro,
        took_s: started.elapsed().as_secs_f64(),
    };
    std::fs::create_dir_all(&args.out)?;
    let markdown = report::markdown(&results);
    std::fs::write(args.out.join("report.md"), &markdown)?;
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&report::json(&results))?,
    )?;
    report::chart(&results, &args.out.join("throughput.svg"))?;
    println!("{markdown}");
    eprintln!(
        "switchyard-bench: done in {:.0} s; wrote {}/report.md, results.json and throughput.svg",
        results.took_s,
        args.out.display()
    );
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo build --release -p switchyard`; returns the binary.
/// Builds the plugins in `ROOT/plugins` for wasm32-wasip2.
fn build_plugins(root: &Path) -> anyhow::Result<()> {
    eprintln!(
        "switchyard-bench: building the plugins (cargo build --release --target wasm32-wasip2)"
    );
    let status = cargo()
        .current_dir(root.join("plugins"))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .status()
        .context("cannot run cargo to build the plugins")?;
    if !status.success() {
        bail!(
            "building the plugins failed (is the target installed? `rustup target add wasm32-wasip2`)"
        );
    }
    Ok(())
}

fn build_switchyard(root: &Path) -> anyhow::Result<PathBuf> {
    eprintln!(
        "switchyard-bench: building the release binary (cargo build --release -p switchyard)"
    );
    let status = cargo()
        .current_dir(root)
        .args(["build", "--release", "--quiet", "-p", "switchyard"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building switchyard failed");
    }
    Ok(root.join("target/release/switchyard"))
}
