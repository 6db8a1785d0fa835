//! ZeroMQ runs: PUSH → (nothing | libzmq's forwarder | the router) → PULL, for throughput
//! and for open-loop latency.

use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use crate::results::{LATENCY_CONFIGS, Latency, Throughput, ZMQ_CONFIGS};
use crate::setup::{Setup, cpu_seconds, free_port, json_payload, run_router};

/// Messages per run by size, before scaling: about a second each on 2 cores.
fn messages(size: usize) -> usize {
    match size {
        0..=128 => 1_000_000,
        129..=2048 => 400_000,
        _ => 50_000,
    }
}

/// libzmq's forwarder (`zmq_proxy`), as the harness's `proxy` role.
pub fn proxy(pull: u16, push: u16) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let frontend = ctx.socket(zmq::PULL)?;
    frontend.bind(&format!("tcp://127.0.0.1:{pull}"))?;
    let backend = ctx.socket(zmq::PUSH)?;
    backend.bind(&format!("tcp://127.0.0.1:{push}"))?;
    zmq::proxy(&frontend, &backend)?;
    Ok(())
}

/// A process between the sender and the sink, killed when dropped.
struct Middle {
    child: Child,
    /// The router's admin endpoint, if the middle is a router.
    admin: Option<u16>,
}

impl Middle {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The router's mean batch size so far, from its `/metrics`.
    fn mean_batch(&self) -> Option<f64> {
        crate::setup::mean_batch(self.admin?)
    }

    /// The p99 of the router's plugin stage time per batch so far, from its `/metrics`.
    fn stage_p99_us(&self) -> Option<f64> {
        crate::setup::stage_p99_us(self.admin?)
    }
}

impl Drop for Middle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `config`'s middle process between `in_port` and `out_port`, and waits until it
/// accepts connections.
fn start_middle(
    setup: &Setup,
    config: &str,
    in_port: u16,
    out_port: u16,
) -> anyhow::Result<Option<Middle>> {
    let mut admin = None;
    let child = match config {
        "zmq-direct" => return Ok(None),
        "zmq-proxy" => Command::new(&setup.harness)
            .args(["proxy", &in_port.to_string(), &out_port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .context("starting the forwarder")?,
        _ => {
            let (plugin, native) = match config {
                "router-native" => ("passthrough", true),
                "router-wasm" => ("passthrough", false),
                "router-json" => ("json_filter", false),
                other => bail!("unknown configuration {other}"),
            };
            let settings = if plugin == "json_filter" {
                r#", config = { field = "amount", op = "gte", value = "100" }"#
            } else {
                ""
            };
            let file = setup.scratch.join(format!("{config}-{in_port}.toml"));
            let admin_port = free_port();
            admin = Some(admin_port);
            let text = format!(
                r#"[admin]
listen = "127.0.0.1:{admin_port}"
[reload]
watch = "off"
[inputs.in]
zmq = {{ socket = "pull", bind = ["tcp://127.0.0.1:{in_port}"] }}
[outputs.out]
zmq = {{ socket = "push", bind = ["tcp://127.0.0.1:{out_port}"] }}
[[routes]]
name = "bench"
from = ["in"]
plugins = [{{ path = "{}"{settings} }}]
to = ["out"]
"#,
                setup.plugin(plugin).display()
            );
            let extra: &[&str] = if native { &["--native-identity"] } else { &[] };
            run_router(setup, &file, &text, extra)?
        }
    };
    let mut middle = Middle { child, admin };
    let deadline = Instant::now() + Duration::from_secs(60);
    // The input binds last: once it accepts a connection, the middle is ready.
    while std::net::TcpStream::connect(("127.0.0.1", in_port)).is_err() {
        if Instant::now() > deadline {
            bail!("{config} did not start within 60 s");
        }
        if let Ok(Some(status)) = middle.child.try_wait() {
            bail!("{config} exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Some(middle))
}

/// Sends `count` messages from `payloads`, in order, round robin.
fn spawn_sender(
    ctx: &zmq::Context,
    port: u16,
    payloads: Vec<Vec<u8>>,
    count: usize,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let push = ctx.socket(zmq::PUSH)?;
    push.connect(&format!("tcp://127.0.0.1:{port}"))?;
    Ok(std::thread::spawn(move || {
        for i in 0..count {
            push.send(&payloads[i % payloads.len()], 0)?;
        }
        Ok(())
    }))
}

/// One throughput measurement.
fn throughput_once(
    setup: &Setup,
    config: &str,
    size: usize,
    round: usize,
    payloads: &[Vec<u8>],
) -> anyhow::Result<Throughput> {
    let count = setup.count(messages(size));
    let (in_port, out_port) = (free_port(), free_port());
    let ctx = zmq::Context::new();
    let sink = ctx.socket(zmq::PULL)?;
    let middle = if config == "zmq-direct" {
        sink.bind(&format!("tcp://127.0.0.1:{in_port}"))?;
        None
    } else {
        let middle = start_middle(setup, config, in_port, out_port)?;
        sink.connect(&format!("tcp://127.0.0.1:{out_port}"))?;
        middle
    };
    sink.set_rcvtimeo(30_000)?;
    let cpu_before = middle.as_ref().and_then(|m| cpu_seconds(m.pid()));
    let sender = spawn_sender(&ctx, in_port, payloads.to_vec(), count)?;
    let mut msg = zmq::Message::new();
    sink.recv(&mut msg, 0)
        .with_context(|| format!("{config}: nothing arrived within 30 s"))?;
    let first = Instant::now();
    for received in 1..count {
        sink.recv(&mut msg, 0)
            .with_context(|| format!("{config}: stalled after {received} of {count} messages"))?;
    }
    let elapsed = first.elapsed();
    let cpu_after = middle.as_ref().and_then(|m| cpu_seconds(m.pid()));
    let mean_batch = middle.as_ref().and_then(Middle::mean_batch);
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))??;
    let cpu_ns_per_msg = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some((b - a) * 1e9 / count as f64),
        _ => None,
    };
    drop(middle);
    Ok(Throughput {
        transport: "zmq",
        config: config.to_owned(),
        size,
        round,
        messages: count,
        msgs_per_s: (count - 1) as f64 / elapsed.as_secs_f64(),
        cpu_ns_per_msg,
        mean_batch,
    })
}

/// Every ZeroMQ configuration at every size, alternating within each round.
pub fn throughput(setup: &Setup) -> anyhow::Result<Vec<Throughput>> {
    let mut results = Vec::new();
    for &size in &setup.sizes {
        let payloads: Vec<Vec<u8>> = (0..256).map(|seed| json_payload(size, seed)).collect();
        for round in 0..setup.rounds {
            for config in ZMQ_CONFIGS {
                let r = throughput_once(setup, config, size, round, &payloads)?;
                eprintln!("  {}", r.summary());
                results.push(r);
            }
        }
    }
    Ok(results)
}

/// Open-loop latency through the router with and without the sandbox, at 25 % and 50 %
/// of `native_max` msg/s, 100-byte messages.
pub fn latency(setup: &Setup, native_max: f64) -> anyhow::Result<Vec<Latency>> {
    let mut results = Vec::new();
    if !native_max.is_finite() || native_max <= 0.0 {
        return Ok(results);
    }
    let seconds = (2.0 * setup.scale).clamp(0.2, 2.0);
    for load in [25u32, 50] {
        let rate = native_max * f64::from(load) / 100.0;
        for round in 0..setup.rounds {
            for config in LATENCY_CONFIGS {
                let r = latency_once(setup, config, load, rate, seconds, round)?;
                eprintln!(
                    "  latency {load}% ({rate:.0} msg/s) round {round} {config:<14} p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs{}",
                    r.p50_us,
                    r.p99_us,
                    r.p999_us,
                    r.stage_p99_us
                        .map(|s| format!("  wasm stage p99 ≤ {s} µs per batch"))
                        .unwrap_or_default()
                );
                results.push(r);
            }
        }
    }
    Ok(results)
}

fn latency_once(
    setup: &Setup,
    config: &str,
    load: u32,
    rate: f64,
    seconds: f64,
    round: usize,
) -> anyhow::Result<Latency> {
    let (in_port, out_port) = (free_port(), free_port());
    let middle = start_middle(setup, config, in_port, out_port)?;
    let ctx = zmq::Context::new();
    let sink = ctx.socket(zmq::PULL)?;
    sink.connect(&format!("tcp://127.0.0.1:{out_port}"))?;
    sink.set_rcvtimeo(30_000)?;
    let push = ctx.socket(zmq::PUSH)?;
    push.connect(&format!("tcp://127.0.0.1:{in_port}"))?;
    let count = (rate * seconds) as usize;
    let epoch = Instant::now();
    let sender = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut payload = json_payload(100, 1);
        let start = Instant::now();
        let mut sent = 0usize;
        while sent < count {
            // Send whatever is due by now, then sleep: a fixed rate, whatever the sink does.
            let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(count);
            while sent < due {
                let stamp = epoch.elapsed().as_nanos() as u64;
                payload[..8].copy_from_slice(&stamp.to_le_bytes());
                push.send(&payload, 0)?;
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    });
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut msg = zmq::Message::new();
    // The first tenth warms up connections and caches; it is not recorded.
    let warmup = count / 10;
    for i in 0..count {
        sink.recv(&mut msg, 0)
            .with_context(|| format!("{config}: stalled after {i} of {count} messages"))?;
        let now = epoch.elapsed().as_nanos() as u64;
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&msg[..8]);
        if i >= warmup {
            histogram.record(now.saturating_sub(u64::from_le_bytes(stamp)).max(1))?;
        }
    }
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))??;
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let stage_p99_us = middle.as_ref().and_then(Middle::stage_p99_us);
    Ok(Latency {
        config: config.to_owned(),
        load_pct: load,
        rate,
        round,
        received: count,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        stage_p99_us,
    })
}
