//! The ZeroMQ gateway on Apache Kafka, at 100 B: one DEALER client writing to a topic
//! through a router's ROUTER input, one-way (`gateway-oneway`, no answers: counted at the
//! topic) against acknowledged (`gateway-ack`, `reply = "ack"`: each request answered once
//! the broker has it, [`GATEWAY_WINDOW`] in flight, counted at the client), alternating;
//! then a REQ client in lock-step, one request at a time, for the round trip a simple
//! client sees.
//!
//! The client runs on a thread of the harness with libzmq's default socket options; the
//! router is the process measured (its CPU time per message). Both routes are the same:
//! `passthrough`, one Kafka output with the router's producer settings.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use switchyard::kafka::{ApacheKafka, ApacheKafkaOptions};

use crate::kafka::{PARTITIONS, written};
use crate::results::{GATEWAY_CONFIGS, GATEWAY_WINDOW as WINDOW, Reply, Throughput};
use crate::setup::{Proc, Setup, cpu_seconds, free_port, json_payload, run_router};

/// The payload size measured.
const SIZE: usize = 100;
/// Requests per throughput run, before scaling: a run of a second or more. Runs of 200 000
/// (under half a second) measured the one-way route at 370–440 k/s, mostly its ramp; a
/// million, at 670–740 k/s.
const MESSAGES: usize = 1_000_000;
/// Lock-step round trips per run, before scaling.
const ROUND_TRIPS: usize = 2_000;

/// Every gateway run: throughput of both configurations alternating, then the lock-step
/// round trip, once per round.
pub fn runs(setup: &Setup) -> anyhow::Result<(Vec<Throughput>, Vec<Reply>)> {
    if !setup.sizes.contains(&SIZE) {
        return Ok((Vec::new(), Vec::new()));
    }
    let options = ApacheKafkaOptions {
        heap_mb: 1024,
        ..ApacheKafkaOptions::default()
    };
    let kafka = ApacheKafka::start(&options).context("starting Apache Kafka")?;
    eprintln!("  Apache Kafka at {} (gateway)", kafka.bootstrap());
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()?;
    // The broker's first minute is slower (its JIT warms up): a run nobody counts takes it.
    let warm_up = "gw-warm-up";
    kafka.create_topic(warm_up, PARTITIONS)?;
    let broker = kafka.pid();
    run_once(
        setup,
        (&client, broker),
        kafka.bootstrap(),
        (GATEWAY_CONFIGS[0], warm_up),
        0,
        setup.count(MESSAGES / 2),
    )?;
    let mut throughput = Vec::new();
    let mut replies = Vec::new();
    for round in 0..setup.rounds {
        for config in GATEWAY_CONFIGS {
            let topic = format!("gw-{}-{round}", config.replace('@', "-"));
            kafka.create_topic(&topic, PARTITIONS)?;
            let n = setup.count(MESSAGES);
            let (t, reply) = run_once(
                setup,
                (&client, broker),
                kafka.bootstrap(),
                (config, &topic),
                round,
                n,
            )?;
            eprintln!("  {}", t.summary());
            throughput.push(t);
            replies.extend(reply);
        }
        let topic = format!("gw-req-{round}");
        kafka.create_topic(&topic, PARTITIONS)?;
        let reply = lock_step(setup, kafka.bootstrap(), &topic, round)?;
        eprintln!(
            "  apache   100 B  round {round}  gateway-req    p50 {:.0} µs  p99 {:.0} µs",
            reply.p50_us, reply.p99_us
        );
        replies.push(reply);
    }
    Ok((throughput, replies))
}

/// Starts a router whose ROUTER input on `port` writes to `topic`, answering if `reply`, its
/// admin endpoint (the mean batch it took) on `admin` (0: any free port).
fn router(
    setup: &Setup,
    bootstrap: &str,
    topic: &str,
    (port, admin): (u16, u16),
    reply: bool,
) -> anyhow::Result<Proc> {
    let file = setup.scratch.join(format!("{topic}.toml"));
    let reply = if reply {
        format!(r#", reply = "ack", max_in_flight = {WINDOW}"#)
    } else {
        String::new()
    };
    let config = format!(
        r#"[admin]
listen = "127.0.0.1:{admin}"
[reload]
watch = "off"
[kafka.main]
bootstrap = "{bootstrap}"
[inputs.in]
zmq = {{ socket = "router", bind = "tcp://127.0.0.1:{port}"{reply} }}
[outputs.out]
kafka = {{ cluster = "main", topic = "{topic}" }}
[[routes]]
name = "bench"
from = ["in"]
plugins = [{{ path = "{}" }}]
to = ["out"]
"#,
        setup.plugin("passthrough").display()
    );
    Ok(Proc::from(run_router(setup, &file, &config, &[])?))
}

/// A client socket of `kind` connected to the router on `port`, once a first request has
/// been answered (acknowledged routes) or after the router had time to bind.
fn connect(ctx: &zmq::Context, kind: zmq::SocketType, port: u16) -> anyhow::Result<zmq::Socket> {
    let socket = ctx.socket(kind)?;
    socket.connect(&format!("tcp://127.0.0.1:{port}"))?;
    Ok(socket)
}

/// Waits until the router on `port` takes requests: a probe DEALER is answered, or for a
/// one-way router, a probe lands in `topic`.
fn wait_ready(
    ctx: &zmq::Context,
    client: &BaseConsumer,
    port: u16,
    topic: &str,
    reply: bool,
) -> anyhow::Result<i64> {
    let probe = connect(ctx, zmq::DEALER, port)?;
    probe.send(&b"{\"probe\": true}"[..], 0)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reply {
            if probe.poll(zmq::POLLIN, 100)? > 0 {
                probe.recv_bytes(0)?;
                return Ok(1);
            }
        } else {
            let n = written(client, topic);
            if n > 0 {
                return Ok(n);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if Instant::now() > deadline {
            bail!("the router on port {port} did not take a first request");
        }
    }
}

/// One run of `config` writing `n` requests to `topic`.
fn run_once(
    setup: &Setup,
    (client, broker): (&BaseConsumer, Option<u32>),
    bootstrap: &str,
    (config, topic): (&str, &str),
    round: usize,
    n: usize,
) -> anyhow::Result<(Throughput, Option<Reply>)> {
    let acked = config.starts_with("gateway-ack");
    let port = free_port();
    let admin = free_port();
    let child = router(setup, bootstrap, topic, (port, admin), acked)?;
    let pid = child.pid();
    let ctx = zmq::Context::new();
    let before = wait_ready(&ctx, client, port, topic, acked)?;
    let payloads: Vec<Vec<u8>> = (0..256).map(|seed| json_payload(SIZE, seed)).collect();
    let dealer = connect(&ctx, zmq::DEALER, port)?;
    let cpu_before = cpu_seconds(pid);
    let client_before = cpu_seconds(std::process::id());
    let broker_before = broker.and_then(cpu_seconds);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let elapsed = if acked {
        // Answers come in request order: the send times queue up beside them.
        let mut sent: VecDeque<Instant> = VecDeque::with_capacity(WINDOW);
        latencies.reserve(n);
        let mut next = 0;
        // One message received into again and again: no allocation per answer.
        let mut body = zmq::Message::new();
        while latencies.len() < n {
            while next < n && sent.len() < WINDOW {
                dealer.send(&payloads[next % payloads.len()][..], 0)?;
                sent.push_back(Instant::now());
                next += 1;
            }
            if dealer.poll(zmq::POLLIN, 10_000)? == 0 {
                bail!("{config}: no answer within 10 s");
            }
            while latencies.len() < n {
                match dealer.recv(&mut body, zmq::DONTWAIT) {
                    Ok(()) => {
                        if !body.starts_with(br#"{"status":"ok""#) {
                            bail!("{config}: answer {}", String::from_utf8_lossy(&body));
                        }
                        let at = sent.pop_front().context("an answer to nothing")?;
                        latencies.push(at.elapsed());
                    }
                    Err(zmq::Error::EAGAIN) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        started.elapsed()
    } else {
        for i in 0..n {
            dealer.send(&payloads[i % payloads.len()][..], 0)?;
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while written(client, topic) < before + n as i64 {
            if Instant::now() > deadline {
                bail!("{config}: not every record arrived");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        started.elapsed()
    };
    let cpu_after = cpu_seconds(pid);
    let per_message = |before: Option<f64>, after: Option<f64>| {
        before.zip(after).map(|(a, b)| (b - a) * 1e9 / n as f64)
    };
    // The client's share of the machine (the harness process: the client thread and the
    // topic watcher), shown beside the router's so it is seen not to be the limit, and the
    // broker's: with the router's, what the machine spends per message.
    let client_cpu = per_message(client_before, cpu_seconds(std::process::id()));
    let broker_cpu = per_message(broker_before, broker.and_then(cpu_seconds));
    if let (Some(client), Some(broker)) = (client_cpu, broker_cpu) {
        eprintln!(
            "  {config}: client {client:.0} ns CPU/msg ({:.0} % of a core), broker {broker:.0} ns",
            client * n as f64 / 1e7 / elapsed.as_secs_f64()
        );
    }
    let mean_batch = crate::setup::mean_batch(admin);
    drop(child);
    let throughput = Throughput {
        transport: "apache",
        config: config.to_owned(),
        size: SIZE,
        round,
        messages: n,
        msgs_per_s: n as f64 / elapsed.as_secs_f64(),
        cpu_ns_per_msg: per_message(cpu_before, cpu_after),
        mean_batch,
        client_cpu_ns_per_msg: client_cpu,
        broker_cpu_ns_per_msg: broker_cpu,
    };
    let reply = acked.then(|| Reply::from_latencies("gateway-ack", round, &mut latencies));
    Ok((throughput, reply))
}

/// A REQ client sends one request at a time and waits for its answer.
fn lock_step(setup: &Setup, bootstrap: &str, topic: &str, round: usize) -> anyhow::Result<Reply> {
    let port = free_port();
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let _router = router(setup, bootstrap, topic, (port, 0), true)?;
    let ctx = zmq::Context::new();
    wait_ready(&ctx, &client, port, topic, true)?;
    let req = connect(&ctx, zmq::REQ, port)?;
    let payload = json_payload(SIZE, 0);
    let n = setup.count(ROUND_TRIPS);
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let at = Instant::now();
        req.send(&payload[..], 0)?;
        if req.poll(zmq::POLLIN, 10_000)? == 0 {
            bail!("gateway-req: no answer within 10 s");
        }
        req.recv_bytes(0)?;
        latencies.push(at.elapsed());
    }
    Ok(Reply::from_latencies("gateway-req", round, &mut latencies))
}
