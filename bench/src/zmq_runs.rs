//! ZeroMQ runs: PUSH → (nothing | libzmq's forwarder | the router) → PULL, for throughput
//! and for open-loop latency.

use std::process::{Child, Command, Stdio};
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

/// The high-water mark of every socket of a ZeroMQ run: the sender's, the sink's, the
/// forwarder's and the router's (`hwm` in its configuration), as a user tuning for
/// throughput would set them all.
pub const HWM: i32 = 100_000;

/// The linger of the router's sockets (its default), given to the forwarder's too.
const LINGER_MS: i32 = 1_000;

/// A socket of `kind` with the run's high-water marks.
fn socket(ctx: &zmq::Context, kind: zmq::SocketType) -> anyhow::Result<zmq::Socket> {
    let socket = ctx.socket(kind)?;
    socket.set_sndhwm(HWM)?;
    socket.set_rcvhwm(HWM)?;
    Ok(socket)
}

/// libzmq's forwarder (`zmq_proxy`), as the harness's `proxy` role, with the router's
/// socket options.
pub fn proxy(pull: u16, push: u16) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let frontend = socket(&ctx, zmq::PULL)?;
    frontend.set_linger(LINGER_MS)?;
    frontend.bind(&format!("tcp://127.0.0.1:{pull}"))?;
    let backend = socket(&ctx, zmq::PUSH)?;
    backend.set_linger(LINGER_MS)?;
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
zmq = {{ socket = "pull", bind = ["tcp://127.0.0.1:{in_port}"], hwm = {HWM} }}
[outputs.out]
zmq = {{ socket = "push", bind = ["tcp://127.0.0.1:{out_port}"], hwm = {HWM} }}
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

/// The harness's `send` role: `count` messages of `size` bytes to `port`, then waits until
/// they have left.
pub fn send(port: u16, count: usize, size: usize) -> anyhow::Result<()> {
    let payloads: Vec<Vec<u8>> = (0..256).map(|seed| json_payload(size, seed)).collect();
    let ctx = zmq::Context::new();
    let push = socket(&ctx, zmq::PUSH)?;
    push.set_linger(-1)?;
    push.connect(&format!("tcp://127.0.0.1:{port}"))?;
    for i in 0..count {
        push.send(&payloads[i % payloads.len()], 0)?;
    }
    Ok(())
}

/// The harness's `sink` role: receives `count` messages on `port` and prints the seconds
/// from the first to the last.
pub fn sink(port: u16, count: usize, bind: bool) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let pull = socket(&ctx, zmq::PULL)?;
    let endpoint = format!("tcp://127.0.0.1:{port}");
    if bind {
        pull.bind(&endpoint)?;
    } else {
        pull.connect(&endpoint)?;
    }
    pull.set_rcvtimeo(30_000)?;
    let mut msg = zmq::Message::new();
    pull.recv(&mut msg, 0)
        .context("nothing arrived within 30 s")?;
    let first = Instant::now();
    for received in 1..count {
        pull.recv(&mut msg, 0)
            .with_context(|| format!("stalled after {received} of {count} messages"))?;
    }
    println!("{}", first.elapsed().as_secs_f64());
    Ok(())
}

/// One throughput measurement: a sender and a sink, each a process of its own (its own
/// libzmq context and I/O thread), with `config`'s middle between them.
fn throughput_once(
    setup: &Setup,
    config: &str,
    size: usize,
    round: usize,
) -> anyhow::Result<Throughput> {
    let count = setup.count(messages(size));
    let (in_port, out_port) = (free_port(), free_port());
    let role = |args: &[String]| {
        Command::new(&setup.harness)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a sender or sink")
    };
    let direct = config == "zmq-direct";
    let middle = if direct {
        None
    } else {
        start_middle(setup, config, in_port, out_port)?
    };
    let mut sink_args = vec![
        "sink".to_owned(),
        (if direct { in_port } else { out_port }).to_string(),
        count.to_string(),
    ];
    if direct {
        sink_args.push("--bind".to_owned());
    }
    let sink = role(&sink_args)?;
    let cpu_before = middle.as_ref().and_then(|m| cpu_seconds(m.pid()));
    let mut sender = role(&[
        "send".into(),
        in_port.to_string(),
        count.to_string(),
        size.to_string(),
    ])?;
    let out = sink.wait_with_output().context("waiting for the sink")?;
    let cpu_after = middle.as_ref().and_then(|m| cpu_seconds(m.pid()));
    let mean_batch = middle.as_ref().and_then(Middle::mean_batch);
    let _ = sender.wait();
    if !out.status.success() {
        bail!("{config}: the sink failed ({})", out.status);
    }
    let seconds: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("{config}: the sink's time"))?;
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
        msgs_per_s: (count - 1) as f64 / seconds,
        cpu_ns_per_msg,
        mean_batch,
        client_cpu_ns_per_msg: None,
        broker_cpu_ns_per_msg: None,
    })
}

/// Every ZeroMQ configuration at every size, alternating within each round.
pub fn throughput(setup: &Setup) -> anyhow::Result<Vec<Throughput>> {
    let mut results = Vec::new();
    for &size in &setup.sizes {
        for round in 0..setup.rounds {
            for config in ZMQ_CONFIGS {
                let r = throughput_once(setup, config, size, round)?;
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
    let sink = socket(&ctx, zmq::PULL)?;
    sink.connect(&format!("tcp://127.0.0.1:{out_port}"))?;
    sink.set_rcvtimeo(30_000)?;
    let push = socket(&ctx, zmq::PUSH)?;
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
