//! `switchyard demo`: the quickstart configuration with live traffic, with no other step
//! and from anywhere: the configuration and the example plugins are built into the binary
//! (`build.rs`) and written to a temporary directory. Starts the embedded Kafka cluster, a
//! ZeroMQ price feed and an order generator, and shows per-route counts every second.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::config;
use crate::router::{Router, RouterOptions};
use crate::shutdown::Shutdown;
use crate::state::RouterHandle;

/// The quickstart configuration, as in `examples/`.
const QUICKSTART: &str = include_str!("../../../examples/quickstart.toml");

/// Where the quickstart's `plugin_dir` leads, from the directory above `examples/`.
const PLUGIN_DIR: &str = "plugins/target/wasm32-wasip2/release";

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/demo_plugins.rs"));
}

/// Orders produced per second by the generator.
const ORDERS_PER_SECOND: u64 = 500;
/// Prices published per second by the feed.
const TICKS_PER_SECOND: u64 = 100;

pub(super) fn run(duration: Option<u64>) -> anyhow::Result<ExitCode> {
    let scratch = unpack()?;
    let file = scratch.path().join("examples/quickstart.toml");
    eprintln!(
        "switchyard demo: the configuration is {} (edit it and save: the router reloads it)",
        file.display()
    );

    let feed_port = free_port()?;
    let alerts_port = free_port()?;
    let variables = BTreeMap::from([
        ("FEED_PORT".to_owned(), feed_port.to_string()),
        ("ALERTS_PORT".to_owned(), alerts_port.to_string()),
        ("KAFKA_BOOTSTRAP".to_owned(), "embedded".to_owned()),
    ]);
    let (parsed, text) = config::load_with(&file, |name| {
        variables
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let options = RouterOptions {
        variables,
        native_identity: false,
    };
    let mut router = Router::start(&file, options, parsed, &text)?;
    let requests = super::run::serve_control(&router, &file, &shutdown, false)?;
    let handle = router.handle();
    let bootstrap = handle
        .embedded
        .get("main")
        .cloned()
        .context("the quickstart has no embedded cluster `main`")?;

    let produced = Arc::new(AtomicU64::new(0));
    let ticks = Arc::new(AtomicU64::new(0));
    let alerts = Arc::new(AtomicU64::new(0));
    let mut threads = vec![
        spawn_generator(&bootstrap, Arc::clone(&produced), shutdown.clone())?,
        spawn_feed(feed_port, Arc::clone(&ticks), shutdown.clone())?,
        spawn_alert_listener(alerts_port, Arc::clone(&alerts), shutdown.clone())?,
    ];
    let counters = [
        ("orders produced", produced),
        ("prices published", ticks),
        ("alerts received (ZeroMQ SUB)", alerts),
    ];
    threads.push(spawn_display(handle, counters, duration, shutdown.clone()));

    eprintln!(
        "switchyard demo: embedded Kafka at {bootstrap}; Ctrl-C stops (the drain takes a moment)"
    );
    router.serve(&shutdown, &requests)?;
    shutdown.trigger();
    for t in threads {
        let _ = t.join();
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the quickstart configuration and the plugins it names, as the binary holds them,
/// into a temporary directory laid out as the source tree is; removed when dropped.
fn unpack() -> anyhow::Result<tempfile::TempDir> {
    if embedded::PLUGINS.is_empty() {
        bail!(
            "this switchyard was built without the demo's plugins (the wasm32-wasip2 target \
             was missing): `rustup target add wasm32-wasip2`, then build or install it again"
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("switchyard-demo-")
        .tempdir()
        .context("cannot create a directory for the demo")?;
    let examples = scratch.path().join("examples");
    let plugins = scratch.path().join(PLUGIN_DIR);
    std::fs::create_dir_all(&examples)?;
    std::fs::create_dir_all(&plugins)?;
    std::fs::write(examples.join("quickstart.toml"), QUICKSTART)?;
    for (name, bytes) in embedded::PLUGINS {
        std::fs::write(plugins.join(name), bytes)
            .with_context(|| format!("cannot write {name} for the demo"))?;
    }
    Ok(scratch)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs `body` every `1/per_second` s until shutdown.
fn paced(per_second: u64, shutdown: &Shutdown, mut body: impl FnMut(u64)) {
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        let due = start.elapsed().as_micros() as u64 * per_second / 1_000_000;
        while n < due {
            body(n);
            n += 1;
        }
        if shutdown.wait_timeout(Duration::from_millis(10)) {
            return;
        }
    }
}

/// Produces orders to `orders`: keys by region, amounts from 5 to 2000, a card number to
/// redact, and one in twenty not JSON at all.
fn spawn_generator(
    bootstrap: &str,
    produced: Arc<AtomicU64>,
    shutdown: Shutdown,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()?;
    Ok(std::thread::spawn(move || {
        let regions = ["eu", "us", "ap"];
        paced(ORDERS_PER_SECOND, &shutdown, |i| {
            let key = format!("{}-{}", regions[(i % 3) as usize], i % 97);
            let amount = (i * 7919) % 2000 + 5;
            let payload = if i % 20 == 19 {
                format!("<order id={i}>")
            } else {
                format!(
                    r#"{{"id":{i},"amount":{amount},"card":{{"number":"4111-1111-1111-{:04}"}}}}"#,
                    i % 10000
                )
            };
            let record = BaseRecord::<'_, [u8], [u8]>::to("orders")
                .key(key.as_bytes())
                .payload(payload.as_bytes());
            if producer.send(record).is_ok() {
                produced.fetch_add(1, Ordering::Relaxed);
            }
            producer.poll(Duration::ZERO);
        });
        let _ = producer.flush(Duration::from_secs(5));
    }))
}

/// Publishes prices on a PUB socket the quickstart's `prices` input subscribes to.
fn spawn_feed(
    port: u16,
    sent: Arc<AtomicU64>,
    shutdown: Shutdown,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::PUB)?;
    socket.set_linger(0)?;
    socket.bind(&format!("tcp://127.0.0.1:{port}"))?;
    Ok(std::thread::spawn(move || {
        let pairs = ["EURUSD", "GBPUSD", "USDJPY"];
        paced(TICKS_PER_SECOND, &shutdown, |i| {
            let pair = pairs[(i % 3) as usize];
            let price = format!(
                r#"{{"pair":"{pair}","bid":{:.4}}}"#,
                1.0 + (i % 500) as f64 / 10_000.0
            );
            if socket
                .send_multipart([pair.as_bytes(), price.as_bytes()], 0)
                .is_ok()
            {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }))
}

/// Subscribes to the quickstart's `alerts` PUB output and counts what arrives.
fn spawn_alert_listener(
    port: u16,
    received: Arc<AtomicU64>,
    shutdown: Shutdown,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::SUB)?;
    socket.set_subscribe(b"")?;
    socket.set_rcvtimeo(100)?;
    socket.set_linger(0)?;
    socket.connect(&format!("tcp://127.0.0.1:{port}"))?;
    Ok(std::thread::spawn(move || {
        while !shutdown.is_triggered() {
            if socket.recv_multipart(0).is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
    }))
}

/// Prints per-route counts and rates every second; stops the demo after `duration`.
fn spawn_display(
    handle: RouterHandle,
    counters: [(&'static str, Arc<AtomicU64>); 3],
    duration: Option<u64>,
    shutdown: Shutdown,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let tty = std::io::stdout().is_terminal();
        // Last second's counts, by route: the routes are read from the set running now,
        // so the table follows reloads.
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut printed = 0;
        while !shutdown.wait_timeout(Duration::from_secs(1)) {
            let routes = handle.routes();
            let mut out = String::new();
            if tty && printed > 0 {
                // Back to the table's first line, and clear what was below it.
                out += &format!("\x1b[{printed}A\x1b[J");
            }
            out += &format!(
                "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}   after {}s\n",
                "route",
                "received",
                "sent",
                "dropped",
                "rejected",
                "dead",
                "msg/s",
                start.elapsed().as_secs()
            );
            for (name, s) in &routes {
                let received = s.received.load(Ordering::Relaxed);
                let before = last.insert(name.clone(), received).unwrap_or(0);
                out += &format!(
                    "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
                    name,
                    received,
                    s.sent.load(Ordering::Relaxed),
                    s.dropped.load(Ordering::Relaxed),
                    s.rejected.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed),
                    s.dead_lettered.load(Ordering::Relaxed),
                    received.saturating_sub(before),
                );
            }
            for (label, c) in &counters {
                out += &format!("{label}: {}\n", c.load(Ordering::Relaxed));
            }
            printed = routes.len() + 1 + counters.len();
            print!("{out}");
            let _ = std::io::stdout().flush();
            if duration.is_some_and(|d| start.elapsed() >= Duration::from_secs(d)) {
                shutdown.trigger();
            }
        }
    })
}
