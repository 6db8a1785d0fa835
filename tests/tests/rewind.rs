//! A partition stopped at a record that could not be written is read again from there by
//! itself, after a pause that grows: it never commits past the record, and needs no restart
//! once the cause is mended — a reload that adds a dead-letter output, a plugin put right,
//! or a broker that answers again after deliveries timed out.

use std::path::Path;
use std::time::{Duration, Instant};

use switchyard_tests::admin::{get, metric, post};
use switchyard_tests::broker::{Broker, BrokerKind};
use switchyard_tests::kafka::{Input, committed, produce, read_all};
use switchyard_tests::procs::{Scratch, router_with_admin};
use switchyard_tests::stream::{PacedProducer, audit, seq, stream};
use switchyard_tests::{plugins, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);

/// A `passthrough` route from `in` to `out` in group `group`; `out` is written through a
/// cluster entry of its own with `out_options`, and `route_extra` goes into the route.
fn config(bootstrap: &str, group: &str, out_options: &str, route_extra: &str) -> String {
    format!(
        r#"
[kafka.main]
bootstrap = "{bootstrap}"
options = {{ "auto.commit.interval.ms" = "200" }}
[kafka.out]
bootstrap = "{bootstrap}"
options = {{ {out_options} }}
[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "{group}" }}
[outputs.out]
kafka = {{ cluster = "out", topic = "out" }}
[outputs.dead]
kafka = {{ cluster = "main", topic = "dlq" }}
[[routes]]
name = "copy"
from = ["in"]
plugins = [{{ path = "{passthrough}" }}]
to = ["out"]
{route_extra}
"#,
        passthrough = plugins::PASSTHROUGH
    )
}

fn log_count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// One record of 300 too large for the output, on a route without a dead-letter output
/// (`on_produce_error = "pause"`, the default): its partition stops there and is read again
/// and again, never committed past; a reload that adds `dead_letter` lets it go on, the
/// record in the dead-letter topic once and every other one delivered.
fn a_refused_record_stops_its_partition_until_a_reload_mends_it(kind: BrokerKind) {
    const N: u64 = 300;
    const BAD: u64 = 150;
    let broker = Broker::start(kind, &["in:1", "out:1", "dlq:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("rewind-refused");
    let limit = r#""message.max.bytes" = "100000""#;
    let cfg = scratch.write("router.toml", &config(&bootstrap, "stops", limit, ""));
    let records: Vec<Input> = stream(N)
        .into_iter()
        .enumerate()
        .map(|(i, (key, mut payload, headers))| {
            if i as u64 == BAD {
                payload.extend(std::iter::repeat_n('x', 150_000));
            }
            (key, payload, headers)
        })
        .collect();
    produce(&bootstrap, "in", &records);
    let log = scratch.path("router.log");
    let (mut proc, admin) = router_with_admin(&cfg, &log);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();

    let again = format!("is read again from offset {BAD}");
    assert!(
        wait_until(DEADLINE, || log_count(&log, &again) >= 3),
        "the stopped partition was not read again three times:\n{}",
        text()
    );
    let (status, body) = get(&admin, "/health/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("in/0 at offset {BAD}")),
        "/health/ready: {body}"
    );
    assert_eq!(
        committed(&bootstrap, "stops", "in"),
        BAD as i64,
        "committed past the record that was not written"
    );
    let paused = metric(
        &admin,
        "switchyard_route_messages_paused_total{route=\"copy\"}",
    );
    assert!(paused >= 3.0, "paused {paused}");

    std::fs::write(
        &cfg,
        config(&bootstrap, "stops", limit, r#"dead_letter = "dead""#),
    )
    .expect("write the mended configuration");
    let (status, body) = post(&admin, "/reload");
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_until(DEADLINE, || committed(&bootstrap, "stops", "in")
            == N as i64),
        "the stream was not committed after the reload:\n{}",
        text()
    );
    let dead: Vec<u64> = read_all(&bootstrap, "dlq", Duration::from_secs(3))
        .iter()
        .map(seq)
        .collect();
    let out = read_all(&bootstrap, "out", Duration::from_secs(3));
    let delivered: std::collections::BTreeSet<u64> = out.iter().map(seq).collect();
    eprintln!(
        "{kind:?}: record {BAD} read again {} times before the reload; {} records out ({} \
         distinct), dead letters {dead:?}",
        log_count(&log, &again),
        out.len(),
        delivered.len()
    );
    assert_eq!(dead, [BAD], "the refused record dead-lettered once");
    let expected: std::collections::BTreeSet<u64> = (0..N).filter(|&s| s != BAD).collect();
    assert_eq!(delivered, expected, "every other record delivered");
    // The partition stops at once: nothing after the record is written ahead of it, so
    // nothing is written twice when it is read again.
    assert_eq!(out.len(), delivered.len(), "records written twice");
    assert!(
        wait_until(DEADLINE, || get(&admin, "/health/ready").0 == 200),
        "not ready once the partition went on"
    );
    assert!(proc.is_running(), "the router died");
    proc.signal("TERM");
    assert!(proc.wait_for_exit(Duration::from_secs(30)).is_some());
}

switchyard_tests::on_both_brokers!(a_refused_record_stops_its_partition_until_a_reload_mends_it);

/// Deliveries that time out (`message.timeout.ms` = 3 s, the broker frozen for 8 s under
/// load) stop their partitions; once the broker answers, the router reads them again from
/// there by itself: the whole stream committed without a restart, nothing lost.
#[test]
fn deliveries_that_time_out_are_produced_again_without_a_restart() {
    const N: u64 = 20_000;
    let broker = Broker::start(BrokerKind::Apache, &["in:2", "out:2", "dlq:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("rewind-timeout");
    // A static member: the freeze stays inside its session, so no rebalance reads the
    // partitions again in the router's place. Records linger 500 ms in the router's
    // producer, so some are waiting whenever the broker freezes, and time out in it.
    let cfg = scratch.write(
        "router.toml",
        &format!(
            "instance_id = \"rewind-0\"\n{}",
            config(
                &bootstrap,
                "timeouts",
                r#""message.timeout.ms" = "3000", "linger.ms" = "500""#,
                ""
            )
        ),
    );
    let log = scratch.path("router.log");
    let (mut proc, admin) = router_with_admin(&cfg, &log);
    assert!(
        wait_until(DEADLINE, || get(&admin, "/health/ready").0 == 200),
        "the router did not become ready"
    );
    let producer = PacedProducer::start(&bootstrap, "in", N, 2_000);
    assert!(
        wait_until(DEADLINE, || committed(&bootstrap, "timeouts", "in")
            >= N as i64 / 8),
        "the stream did not start"
    );
    broker.pause();
    std::thread::sleep(Duration::from_secs(8));
    broker.resume();
    let thawed = Instant::now();
    producer.finish();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(DEADLINE, || committed(&bootstrap, "timeouts", "in")
            == N as i64),
        "the stream was not committed after the thaw (committed {}):\n{}",
        committed(&bootstrap, "timeouts", "in"),
        text()
    );
    let done = thawed.elapsed();
    let audit = audit(&read_all(&bootstrap, "out", Duration::from_secs(3)), N);
    let timed_out = log_count(&log, "delivery failed");
    let again = log_count(&log, "is read again from offset");
    eprintln!(
        "broker frozen 8 s with message.timeout.ms = 3000: {timed_out} delivery failures \
         logged, partitions read again {again} times, the stream committed {:.1} s after \
         the thaw; lost={} duplicates={} out-of-order={}",
        done.as_secs_f64(),
        audit.lost,
        audit.duplicates,
        audit.out_of_order
    );
    assert!(
        timed_out > 0,
        "no delivery timed out: the test shows nothing"
    );
    assert!(again > 0, "no partition was read again:\n{}", text());
    assert_eq!(audit.lost, 0, "records lost");
    assert!(proc.is_running(), "the router died");
    proc.signal("TERM");
    assert!(proc.wait_for_exit(Duration::from_secs(30)).is_some());
}

/// A plugin that traps on one message of 300, on a route with `on_plugin_error = "pause"`:
/// the partition stops at that message (read again and again, nothing dead-lettered,
/// nothing after it written); a reload that mends the plugin lets it go on, every message
/// delivered once and in order.
fn a_failing_plugin_pauses_its_partition_until_a_reload_mends_it(kind: BrokerKind) {
    const N: u64 = 300;
    const BAD: u64 = 150;
    let broker = Broker::start(kind, &["in:1", "out:1", "dlq:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("rewind-plugin");
    let route = |plugin: &str| {
        config(
            &bootstrap,
            "plugin-stops",
            "",
            "dead_letter = \"dead\"\non_plugin_error = \"pause\"",
        )
        .replace(plugins::PASSTHROUGH, plugin)
    };
    let cfg = scratch.write("router.toml", &route(plugins::FAULT_PANIC));
    let records: Vec<Input> = stream(N)
        .into_iter()
        .enumerate()
        .map(|(i, (key, payload, headers))| {
            let payload = if i as u64 == BAD {
                format!("panic {payload}")
            } else {
                payload
            };
            (key, payload, headers)
        })
        .collect();
    produce(&bootstrap, "in", &records);
    let log = scratch.path("router.log");
    let (mut proc, admin) = router_with_admin(&cfg, &log);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let again = format!("is read again from offset {BAD}");
    assert!(
        wait_until(DEADLINE, || log_count(&log, &again) >= 2),
        "the stopped partition was not read again twice:\n{}",
        text()
    );
    assert_eq!(committed(&bootstrap, "plugin-stops", "in"), BAD as i64);
    let (status, body) = get(&admin, "/health/ready");
    assert_eq!(status, 503, "{body}");
    let number = |r: &switchyard_tests::kafka::Record| {
        r.payload
            .strip_prefix("panic ")
            .map_or_else(|| seq(r), |_| BAD)
    };
    let before: Vec<u64> = read_all(&bootstrap, "out", Duration::from_secs(2))
        .iter()
        .map(number)
        .collect();
    assert_eq!(
        before,
        (0..BAD).collect::<Vec<_>>(),
        "what was written before the mend"
    );

    std::fs::write(&cfg, route(plugins::PASSTHROUGH)).expect("write the mended configuration");
    let (status, body) = post(&admin, "/reload");
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_until(DEADLINE, || committed(&bootstrap, "plugin-stops", "in")
            == N as i64),
        "the stream was not committed after the reload:\n{}",
        text()
    );
    let out: Vec<u64> = read_all(&bootstrap, "out", Duration::from_secs(3))
        .iter()
        .map(number)
        .collect();
    let dead = read_all(&bootstrap, "dlq", Duration::from_secs(1));
    eprintln!(
        "{kind:?}: a trapping plugin with on_plugin_error = \"pause\": message {BAD} read \
         again {} times before the reload; {} records out, {} dead letters",
        log_count(&log, &again),
        out.len(),
        dead.len()
    );
    assert_eq!(
        out,
        (0..N).collect::<Vec<_>>(),
        "every message once, in order"
    );
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    assert!(proc.is_running(), "the router died");
    proc.signal("TERM");
    assert!(proc.wait_for_exit(Duration::from_secs(30)).is_some());
}

switchyard_tests::on_both_brokers!(a_failing_plugin_pauses_its_partition_until_a_reload_mends_it);
