//! Hot reload as operators do it: files changed under a running `switchyard run`, with
//! traffic flowing, watched through the admin endpoint and read back from Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use switchyard_tests::admin::{get, metric, post, sample};
use switchyard_tests::broker::{Broker, BrokerKind};
use switchyard_tests::kafka::{Input, Record, produce, read_topic};
use switchyard_tests::procs::{Proc, Scratch, router_env};
use switchyard_tests::versions::{sha256, tag_build, version_of, write_by_rename};
use switchyard_tests::{free_port, plugins, wait_until};

const READ: Duration = Duration::from_secs(90);

/// A router running `config` in `scratch`, its admin endpoint on a free port.
struct Running {
    proc: Proc,
    admin: String,
    log: PathBuf,
}

impl Running {
    fn start(config: &Path, log: PathBuf, admin: String) -> Self {
        let env = [("SWITCHYARD_ADMIN_LISTEN".to_owned(), admin.clone())];
        let proc = router_env(config, &log, &env);
        let mut running = Running { proc, admin, log };
        let ready = wait_until(Duration::from_secs(60), || {
            get(&running.admin, "/health/ready").0 == 200
        });
        assert!(ready, "router not ready:\n{}", running.log_text());
        assert!(running.proc.is_running());
        running
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metric(&self, series: &str) -> f64 {
        metric(&self.admin, series)
    }

    /// The sha256 of the first plugin of the first route, as `/routes` reports it.
    fn plugin_hash(&self) -> String {
        let (_, body) = get(&self.admin, "/routes");
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["routes"][0]["plugins"][0]["sha256"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }

    fn wait_reloads(&self, result: &str, count: f64) -> bool {
        let series = format!("switchyard_reloads_total{{result=\"{result}\"}}");
        wait_until(Duration::from_secs(60), || self.metric(&series) >= count)
    }

    fn stop(mut self) {
        self.proc.signal("TERM");
        let status = self.proc.wait_for_exit(Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "router did not drain:\n{}",
            self.log_text()
        );
    }
}

/// Produces `seq`-numbered records over 32 keys at about `per_second` until stopped;
/// returns how many were produced.
fn steady_producer(
    bootstrap: &str,
    topic: &'static str,
    per_second: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("test producer");
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = start.elapsed().as_millis() as u64 * per_second / 1000;
            while n < due {
                let key = format!("k-{}", n % 32);
                let payload = format!("{n}");
                let headers = OwnedHeaders::new().insert(Header {
                    key: "seq",
                    value: Some(payload.as_bytes()),
                });
                let mut record = BaseRecord::<[u8], [u8]>::to(topic)
                    .key(key.as_bytes())
                    .payload(payload.as_bytes())
                    .headers(headers);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(5));
                        }
                    }
                }
                n += 1;
            }
            producer.poll(Duration::from_millis(5));
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
        n
    })
}

fn tag_config(bootstrap: &str, extra: &str) -> String {
    format!(
        r#"
[kafka.main]
bootstrap = "{bootstrap}"

[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "reload-test" }}

[outputs.out]
kafka = {{ cluster = "main", topic = "out" }}
[outputs.dead]
kafka = {{ cluster = "main", topic = "dead" }}
{extra}
[[routes]]
name = "tagged"
from = ["in"]
plugins = [{{ path = "tag.wasm" }}]
to = ["out"]
dead_letter = "dead"
"#
    )
}

fn plugin_swapped_twenty_times_under_load_loses_nothing_and_never_mixes_versions(kind: BrokerKind) {
    let broker = Broker::start(kind, &["in:4", "out:4", "dead:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("reload-swap");
    let plugin = scratch.path("tag.wasm");
    std::fs::write(&plugin, tag_build(1)).expect("write v1");
    let config = scratch.write("router.toml", &tag_config(&bootstrap, ""));
    let admin = format!("127.0.0.1:{}", free_port());
    let router = Running::start(&config, scratch.path("router.log"), admin);

    let stop = Arc::new(AtomicBool::new(false));
    let producer = steady_producer(&bootstrap, "in", 1000, Arc::clone(&stop));
    let mut latencies = Vec::new();
    for version in 2..=21u32 {
        // Each version serves for about a second of the steady flow.
        std::thread::sleep(Duration::from_secs(1));
        let bytes = tag_build(version);
        let hash = sha256(&bytes);
        let changed = Instant::now();
        if version % 2 == 0 {
            write_by_rename(&plugin, &bytes);
        } else {
            // `cp` over the file: truncated and rewritten in place.
            std::fs::write(&plugin, &bytes).expect("overwrite");
        }
        let serving = wait_until(Duration::from_secs(30), || router.plugin_hash() == hash);
        assert!(serving, "v{version} never served:\n{}", router.log_text());
        latencies.push(changed.elapsed());
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let produced = producer.join().expect("producer") as usize;

    let out = read_topic(&bootstrap, "out", produced, READ);
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &out {
        *seen
            .entry(r.payload.parse().expect("seq payload"))
            .or_default() += 1;
    }
    let missing: Vec<u64> = (0..produced as u64)
        .filter(|s| !seen.contains_key(s))
        .collect();
    let doubled: Vec<(&u64, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} of {produced} lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        doubled.is_empty(),
        "duplicates: {:?}",
        &doubled[..doubled.len().min(10)]
    );
    assert_eq!(out.len(), produced);

    // Per output partition, in offset order, versions never go back.
    let mut versions = BTreeSet::new();
    let mut by_partition: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for r in &out {
        by_partition.entry(r.partition).or_default().push(r);
    }
    for (partition, records) in &by_partition {
        let mut last = 0;
        for r in records {
            let v = version_of(r);
            assert!(
                v >= last,
                "partition {partition}: v{v} after v{last} at offset {}",
                r.offset
            );
            last = v;
            versions.insert(v);
        }
    }
    assert_eq!(
        versions,
        (1..=21).collect(),
        "every version served part of the flow"
    );
    assert_eq!(
        router.metric("switchyard_reloads_total{result=\"ok\"}"),
        20.0
    );
    assert_eq!(
        router.metric("switchyard_reloads_total{result=\"error\"}"),
        0.0
    );
    // One assignment: the group never rebalanced for a plugin swap.
    assert_eq!(
        router.metric("switchyard_kafka_assignments_total{input=\"in\"}"),
        1.0
    );

    latencies.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    // How much of that the reload itself took (parse, compile, init, switch), from the log.
    let mut took: Vec<u64> = router
        .log_text()
        .lines()
        .filter_map(|l| l.split("took_ms=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect();
    took.sort_unstable();
    assert_eq!(took.len(), 20, "one applied reload per swap");
    println!(
        "reload work (validate, compile, init, switch): min {} ms, median {} ms, max {} ms",
        took[0],
        took[took.len() / 2],
        took[took.len() - 1]
    );
    println!(
        "file change to new version serving, {} swaps: min {:.0} ms, median {:.0} ms, max {:.0} ms; {produced} messages",
        latencies.len(),
        ms(&latencies[0]),
        ms(&latencies[latencies.len() / 2]),
        ms(&latencies[latencies.len() - 1]),
    );
    router.stop();
}

/// Produces `n` records numbered from `from` and checks they all arrive in `out` tagged v1.
fn flows_on_v1(bootstrap: &str, from: u64, n: u64, delivered_before: usize) -> usize {
    let records: Vec<Input> = (from..from + n)
        .map(|i| (Some(format!("k-{}", i % 8)), format!("{i}"), vec![]))
        .collect();
    produce(bootstrap, "in", &records);
    let expected = delivered_before + n as usize;
    let out = read_topic(bootstrap, "out", expected, READ);
    assert_eq!(
        out.len(),
        expected,
        "records produced while a bad change sits were lost"
    );
    assert!(out.iter().all(|r| version_of(r) == 1));
    expected
}

fn invalid_changes_leave_the_running_set_and_are_reported_three_ways(kind: BrokerKind) {
    let broker = Broker::start(kind, &["in:4", "out:4", "dead:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("reload-invalid");
    let plugin = scratch.path("tag.wasm");
    let good_wasm = tag_build(1);
    std::fs::write(&plugin, &good_wasm).expect("write v1");
    let good = tag_config(&bootstrap, "");
    let config = scratch.write("router.toml", &good);
    let admin = format!("127.0.0.1:{}", free_port());
    let mut router = Running::start(&config, scratch.path("router.log"), admin);
    let mut delivered = flows_on_v1(&bootstrap, 0, 200, 0);

    let truncated = &tag_build(2)[..good_wasm.len() / 2];
    // A new route and output whose plugin refuses to start: nothing of them may stay.
    let failing_init = format!(
        "{good}\n[outputs.ghost]\nkafka = {{ cluster = \"main\", topic = \"ghost\" }}\n\
         [[routes]]\nname = \"ghost\"\nfrom = [\"in\"]\nplugins = [{{ path = \"{}\" }}]\n\
         to = [\"ghost\"]\n",
        plugins::FAULT_INIT
    );
    // (what changes, the config text, the plugin bytes, what the report must say)
    let cases: Vec<(&str, String, &[u8], String)> = vec![
        (
            "syntax error",
            good.replace("[[routes]]", "[[routes]"),
            &good_wasm,
            "router.toml:".into(),
        ),
        (
            "unknown field",
            good.replace("to = [\"out\"]", "to = [\"out\"]\ncolour = \"red\""),
            &good_wasm,
            "unknown field `colour`".into(),
        ),
        (
            "dangling output",
            good.replace("to = [\"out\"]", "to = [\"nowhere\"]"),
            &good_wasm,
            "nowhere".into(),
        ),
        (
            "missing variable",
            good.replace("topic = \"out\"", "topic = \"${RELOAD_TEST_UNSET}\""),
            &good_wasm,
            "RELOAD_TEST_UNSET".into(),
        ),
        (
            "truncated .wasm",
            good.clone(),
            truncated,
            "tag.wasm".into(),
        ),
        (
            "failing init",
            failing_init,
            &good_wasm,
            "fault_init refuses every configuration".into(),
        ),
    ];
    let mut errors = 0.0;
    let mut oks = 0.0;
    for (i, (what, text, wasm, expect)) in cases.iter().enumerate() {
        write_by_rename(&plugin, wasm);
        write_by_rename(&config, text.as_bytes());
        // 1. The watcher's reload is refused, counted, and logged with the problem.
        errors += 1.0;
        assert!(
            router.wait_reloads("error", errors),
            "{what}: no refused reload counted:\n{}",
            router.log_text()
        );
        let log = router.log_text();
        assert!(
            log.contains("reload refused; the running configuration stays")
                && log.contains(expect.as_str()),
            "{what}: the log does not say `{expect}`:\n{log}"
        );
        // 2. POST /reload answers with the same problem.
        let (status, body) = post(&router.admin, "/reload");
        errors += 1.0;
        assert_eq!(status, 422, "{what}: {body}");
        assert!(
            body.contains(expect.as_str()),
            "{what}: the response does not say `{expect}`: {body}"
        );
        assert_eq!(
            router.metric("switchyard_reloads_total{result=\"error\"}"),
            errors
        );
        // 3. The running set still runs, unchanged, and the refused plan left no series.
        assert!(router.proc.is_running());
        let metrics = get(&router.admin, "/metrics").1;
        assert!(
            !metrics.contains("\"ghost\""),
            "{what}: a refused reload left series behind:\n{metrics}"
        );
        delivered = flows_on_v1(&bootstrap, 1000 * (i as u64 + 1), 100, delivered);
        // Put the good files back: that is a change too, and it applies.
        write_by_rename(&plugin, &good_wasm);
        write_by_rename(&config, good.as_bytes());
        oks += 1.0;
        assert!(
            router.wait_reloads("ok", oks),
            "{what}: restoring did not reload:\n{}",
            router.log_text()
        );
    }
    assert_eq!(
        router.metric("switchyard_kafka_assignments_total{input=\"in\"}"),
        1.0
    );
    router.stop();
}

fn when_config(bootstrap: &str, region: &str) -> String {
    format!(
        r#"
[kafka.main]
bootstrap = "{bootstrap}"

[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "reload-when" }}

[outputs.out]
kafka = {{ cluster = "main", topic = "out" }}

[[routes]]
name = "regional"
from = ["in"]
when = {{ header = {{ region = "{region}" }} }}
plugins = [{{ path = "{passthrough}" }}]
to = ["out"]
"#,
        passthrough = plugins::PASSTHROUGH
    )
}

fn regional(from: u64) -> Vec<Input> {
    (from..from + 100)
        .map(|i| {
            let region = if i % 2 == 0 { "eu" } else { "us" };
            (
                Some(format!("k-{}", i % 8)),
                format!("{i}"),
                vec![("region".to_owned(), region.to_owned())],
            )
        })
        .collect()
}

fn editing_a_when_predicate_through_a_configmap_swap_applies_without_a_rebalance(kind: BrokerKind) {
    let broker = Broker::start(kind, &["in:4", "out:4"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("reload-when");
    // The layout Kubernetes gives a mounted ConfigMap: the file is a symlink through
    // `..data`, itself a symlink to a timestamped directory swapped by a rename.
    let first = scratch.path("..2026_11_24_1");
    std::fs::create_dir(&first).expect("mkdir");
    std::fs::write(first.join("router.toml"), when_config(&bootstrap, "eu")).expect("write");
    std::os::unix::fs::symlink("..2026_11_24_1", scratch.path("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/router.toml", scratch.path("router.toml")).expect("symlink");
    let admin = format!("127.0.0.1:{}", free_port());
    let router = Running::start(
        &scratch.path("router.toml"),
        scratch.path("router.log"),
        admin,
    );

    produce(&bootstrap, "in", &regional(0));
    let out = read_topic(&bootstrap, "out", 50, READ);
    assert_eq!(out.len(), 50);
    assert!(out.iter().all(|r| r.header("region") == Some("eu")));

    let second = scratch.path("..2026_11_24_2");
    std::fs::create_dir(&second).expect("mkdir");
    std::fs::write(second.join("router.toml"), when_config(&bootstrap, "us")).expect("write");
    std::os::unix::fs::symlink("..2026_11_24_2", scratch.path("..data_tmp")).expect("symlink");
    std::fs::rename(scratch.path("..data_tmp"), scratch.path("..data")).expect("swap");
    assert!(
        router.wait_reloads("ok", 1.0),
        "the swap was not seen:\n{}",
        router.log_text()
    );

    produce(&bootstrap, "in", &regional(100));
    let out = read_topic(&bootstrap, "out", 100, READ);
    assert_eq!(out.len(), 100);
    let after: Vec<&Record> = out
        .iter()
        .filter(|r| r.payload.parse::<u64>().is_ok_and(|n| n >= 100))
        .collect();
    assert_eq!(after.len(), 50);
    assert!(after.iter().all(|r| r.header("region") == Some("us")));
    assert_eq!(
        router.metric("switchyard_kafka_assignments_total{input=\"in\"}"),
        1.0
    );
    let log = router.log_text();
    assert!(
        !log.contains("partitions revoked"),
        "the group rebalanced:\n{log}"
    );
    assert!(log.contains("inputs_kept=[\"in\"]"), "{log}");
    router.stop();
}

fn metrics_routes_and_health_report_what_happened(kind: BrokerKind) {
    let broker = Broker::start(kind, &["orders:4", "valid:4", "dead:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("reload-metrics");
    let text = format!(
        r#"
[kafka.main]
bootstrap = "{bootstrap}"

[inputs.orders]
kafka = {{ cluster = "main", topics = ["orders"], group = "metrics-test" }}

[outputs.valid]
kafka = {{ cluster = "main", topic = "valid" }}
[outputs.dead]
kafka = {{ cluster = "main", topic = "dead" }}

[[routes]]
name = "big-orders"
from = ["orders"]
plugins = [{{ path = "{filter}", config = {{ field = "amount", op = "gte", value = "100" }} }}]
to = ["valid"]
dead_letter = "dead"
"#,
        filter = plugins::JSON_FILTER
    );
    let config = scratch.write("router.toml", &text);
    let admin = format!("127.0.0.1:{}", free_port());
    let router = Running::start(&config, scratch.path("router.log"), admin.clone());
    assert_eq!(get(&admin, "/health/live").0, 200);

    // 500 orders: every 10th is not JSON (rejected), amounts cycle 50 / 150 / 250.
    let mut expect_out = 0;
    let mut expect_dropped = 0;
    let mut expect_rejected = 0;
    let records: Vec<Input> = (0..500u64)
        .map(|i| {
            let payload = if i % 10 == 9 {
                expect_rejected += 1;
                format!("not json {i}")
            } else {
                let amount = [50, 150, 250][(i % 3) as usize];
                if amount >= 100 {
                    expect_out += 1;
                } else {
                    expect_dropped += 1;
                }
                format!(r#"{{"amount": {amount}}}"#)
            };
            (Some(format!("c-{}", i % 16)), payload, vec![])
        })
        .collect();
    produce(&bootstrap, "orders", &records);
    assert_eq!(
        read_topic(&bootstrap, "valid", expect_out, READ).len(),
        expect_out
    );
    assert_eq!(
        read_topic(&bootstrap, "dead", expect_rejected, READ).len(),
        expect_rejected
    );

    let route = |name: &str| format!("switchyard_route_{name}{{route=\"big-orders\"}}");
    let settled = wait_until(Duration::from_secs(30), || {
        router.metric(&route("dead_letters_total")) == expect_rejected as f64
    });
    assert!(settled);
    let m = get(&admin, "/metrics").1;
    let value = |series: &str| sample(&m, series).unwrap_or_else(|| panic!("no {series} in\n{m}"));
    assert_eq!(value(&route("messages_in_total")), 500.0);
    assert_eq!(value(&route("messages_out_total")), expect_out as f64);
    assert_eq!(
        value(&route("messages_dropped_total")),
        expect_dropped as f64
    );
    assert_eq!(
        value(&route("messages_rejected_total")),
        expect_rejected as f64
    );
    assert_eq!(value(&route("messages_failed_total")), 0.0);
    assert_eq!(value(&route("dead_letters_total")), expect_rejected as f64);
    // The plugin's own counter: json_filter counts what it filters out.
    assert_eq!(
        value(
            "switchyard_plugin_counter_total{route=\"big-orders\",plugin=\"json_filter\",name=\"filtered_out\"}"
        ),
        expect_dropped as f64
    );
    // Every message is in exactly one batch.
    assert_eq!(value(&route("batch_size_sum")), 500.0);
    let calls = value(
        "switchyard_plugin_call_duration_seconds_count{route=\"big-orders\",plugin=\"json_filter\"}",
    );
    assert_eq!(calls, value(&route("batch_size_count")));
    assert!(calls >= 1.0);
    assert_eq!(value("switchyard_input_ready{input=\"orders\"}"), 1.0);
    assert!(m.contains("switchyard_config_info{version=\""), "{m}");

    // Lag comes from librdkafka's statistics (every second): all four partitions, caught up.
    let caught_up = wait_until(Duration::from_secs(30), || {
        let m = get(&admin, "/metrics").1;
        (0..4).all(|p| {
            sample(&m, &format!("switchyard_kafka_consumer_lag{{input=\"orders\",topic=\"orders\",partition=\"{p}\"}}")) == Some(0.0)
        })
    });
    assert!(caught_up, "{}", get(&admin, "/metrics").1);

    let (status, body) = get(&admin, "/routes");
    assert_eq!(status, 200);
    let routes: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(routes["generation"], 1);
    assert_eq!(routes["routes"][0]["name"], "big-orders");
    let expected_hash = sha256(&std::fs::read(plugins::JSON_FILTER).expect("read plugin"));
    assert_eq!(
        routes["routes"][0]["plugins"][0]["sha256"],
        expected_hash.as_str()
    );
    // Relative to the configuration's directory, never where it lies on the machine.
    let shown = routes["routes"][0]["plugins"][0]["path"]
        .as_str()
        .unwrap_or_default();
    assert!(!shown.starts_with('/'), "an absolute path: {shown}");
    assert_eq!(
        std::fs::canonicalize(scratch.path("").join(shown)).ok(),
        std::fs::canonicalize(plugins::JSON_FILTER).ok(),
        "{shown} is not the plugin"
    );
    assert!(
        routes["loaded_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    // A reload that changes nothing says so and keeps the generation.
    let (status, body) = post(&admin, "/reload");
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["result"], "unchanged");
    assert_eq!(report["generation"], 1);
    assert_eq!(report["inputs"]["kept"].as_array().map(Vec::len), Some(0));

    // Requests that arrive while one is being handled join it: every one is answered, and
    // fewer reloads run than were asked for.
    let series = "switchyard_reloads_total{result=\"ok\"}";
    let before = sample(&get(&admin, "/metrics").1, series).unwrap_or(0.0);
    let asking: Vec<_> = (0..20)
        .map(|_| {
            let admin = admin.clone();
            std::thread::spawn(move || post(&admin, "/reload").0)
        })
        .collect();
    for asked in asking {
        assert_eq!(asked.join().expect("a request"), 200);
    }
    let reloads = sample(&get(&admin, "/metrics").1, series).unwrap_or(0.0) - before;
    eprintln!("20 concurrent reload requests: {reloads} reloads");
    assert!(
        (1.0..20.0).contains(&reloads),
        "{reloads} reloads for 20 requests"
    );
    assert_eq!(
        routes["version"], report["version"],
        "same files, same version"
    );
    router.stop();
}

fn memory_stays_flat_over_two_hundred_reloads(kind: BrokerKind) {
    let broker = Broker::start(kind, &["in:4", "out:4", "dead:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("reload-memory");
    let plugin = scratch.path("tag.wasm");
    let builds = [tag_build(1), tag_build(2)];
    std::fs::write(&plugin, &builds[0]).expect("write v1");
    let config = scratch.write(
        "router.toml",
        &tag_config(&bootstrap, "[reload]\nwatch = \"off\"\n"),
    );
    let admin = format!("127.0.0.1:{}", free_port());
    let router = Running::start(&config, scratch.path("router.log"), admin.clone());
    let delivered = Arc::new(AtomicU64::new(0));

    // SIGHUP reloads too.
    router.proc.signal("HUP");
    assert!(
        router.wait_reloads("ok", 1.0),
        "SIGHUP did not reload:\n{}",
        router.log_text()
    );

    let mut rss_at_10 = 0;
    for i in 2..=200u32 {
        std::fs::write(&plugin, &builds[(i % 2) as usize]).expect("swap build");
        let (status, body) = post(&admin, "/reload");
        assert_eq!(status, 200, "reload {i}: {body}");
        if i % 20 == 0 {
            let records: Vec<Input> = (0..10)
                .map(|n| (None, format!("{i}-{n}"), vec![]))
                .collect();
            produce(&bootstrap, "in", &records);
            delivered.fetch_add(10, Ordering::Relaxed);
        }
        if i == 10 {
            rss_at_10 = switchyard_tests::chaos::rss_kib(router.proc.pid());
        }
    }
    let rss_at_200 = switchyard_tests::chaos::rss_kib(router.proc.pid());
    let n = delivered.load(Ordering::Relaxed) as usize;
    assert_eq!(read_topic(&bootstrap, "out", n, READ).len(), n);
    println!("resident memory: {rss_at_10} KiB after 10 reloads, {rss_at_200} KiB after 200");
    assert!(
        rss_at_200 <= rss_at_10 + 32 * 1024,
        "memory grew from {rss_at_10} KiB after 10 reloads to {rss_at_200} KiB after 200"
    );
    router.stop();
}

switchyard_tests::on_both_brokers!(
    plugin_swapped_twenty_times_under_load_loses_nothing_and_never_mixes_versions,
    invalid_changes_leave_the_running_set_and_are_reported_three_ways,
    editing_a_when_predicate_through_a_configmap_swap_applies_without_a_rebalance,
    metrics_routes_and_health_report_what_happened,
    memory_stays_flat_over_two_hundred_reloads,
);

/// The topics of a running embedded cluster.
fn embedded_topics(bootstrap: &str) -> BTreeSet<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client");
    client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata")
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect()
}

#[test]
fn a_refused_reload_creates_no_topic_in_the_embedded_cluster() {
    let scratch = Scratch::new("reload-topics");
    let base = format!(
        r#"
[reload]
watch = "off"
[kafka.main]
bootstrap = "embedded"
[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "g" }}
[outputs.out]
kafka = {{ cluster = "main", topic = "out" }}
[[routes]]
name = "copy"
from = ["in"]
plugins = [{{ path = "{passthrough}" }}]
to = ["out"]
"#,
        passthrough = plugins::PASSTHROUGH
    );
    let config = scratch.write("router.toml", &base);
    let admin = format!("127.0.0.1:{}", free_port());
    let router = Running::start(&config, scratch.path("router.log"), admin.clone());
    let log = router.log_text();
    let bootstrap = log
        .lines()
        .find(|l| l.contains("embedded Kafka cluster started"))
        .and_then(|l| l.split("bootstrap=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no embedded bootstrap in the log:\n{log}"))
        .to_owned();
    assert!(embedded_topics(&bootstrap).contains("out"));

    let adding = |route: &str, topic: &str, plugin: &str| {
        format!(
            "{base}\n[outputs.{route}]\nkafka = {{ cluster = \"main\", topic = \"{topic}\" }}\n\
             [[routes]]\nname = \"{route}\"\nfrom = [\"in\"]\nplugins = [{{ path = \"{plugin}\" }}]\n\
             to = [\"{route}\"]\n"
        )
    };
    // Refused (the new plugin's init fails): its topic is not created.
    std::fs::write(&config, adding("ghost", "ghost-topic", plugins::FAULT_INIT)).expect("write");
    let (status, body) = post(&admin, "/reload");
    assert_eq!(status, 422, "{body}");
    assert!(
        !embedded_topics(&bootstrap).contains("ghost-topic"),
        "a refused reload created its topic"
    );
    // Applied: its topic is created.
    std::fs::write(
        &config,
        adding("later", "later-topic", plugins::PASSTHROUGH),
    )
    .expect("write");
    let (status, body) = post(&admin, "/reload");
    assert_eq!(status, 200, "{body}");
    assert!(embedded_topics(&bootstrap).contains("later-topic"));
    router.stop();
}

#[test]
fn polling_notices_a_changed_file() {
    let scratch = Scratch::new("reload-poll");
    let (port, out) = (free_port(), free_port());
    let text = |region: &str| {
        format!(
            r#"
[reload]
watch = "poll"
poll_interval_ms = 200
debounce_ms = 50
[inputs.feed]
zmq = {{ socket = "pull", bind = "tcp://127.0.0.1:{port}" }}
[outputs.out]
zmq = {{ socket = "push", bind = "tcp://127.0.0.1:{out}" }}
[[routes]]
name = "relay"
from = ["feed"]
when = {{ header = {{ region = "{region}" }} }}
plugins = [{{ path = "{passthrough}" }}]
to = ["out"]
"#,
            passthrough = plugins::PASSTHROUGH
        )
    };
    let config = scratch.write("router.toml", &text("eu"));
    let admin = format!("127.0.0.1:{}", free_port());
    let router = Running::start(&config, scratch.path("router.log"), admin);
    write_by_rename(&config, text("us").as_bytes());
    assert!(
        router.wait_reloads("ok", 1.0),
        "polling did not notice the change:\n{}",
        router.log_text()
    );
    router.stop();
}
