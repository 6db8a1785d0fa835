//! `delivery = "exactly-once"` on Apache Kafka (the embedded cluster's transactions are
//! not real, and `validate` refuses it there). Outputs are read back `read_committed`, as a
//! consumer of an exactly-once pipeline reads them, and audited: every input record's
//! outputs exactly once, per-key order kept, dead letters once and never in the output.
//! The same topics read `read_uncommitted` show what aborted transactions wrote, so the
//! checks can see the difference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use switchyard::kafka::ApacheKafkaOptions;
use switchyard_tests::admin::{get, metric};
use switchyard_tests::broker::{Broker, BrokerKind};
use switchyard_tests::kafka::{Record, committed, produce, read_all, read_all_uncommitted};
use switchyard_tests::procs::{self, Proc, Scratch, router, router_with_admin};
use switchyard_tests::stream::{PacedProducer, audit, audit_with, stream};
use switchyard_tests::versions::{sha256, tag_build, version_of, write_by_rename};
use switchyard_tests::{plugins, wait_until};

const DEADLINE: Duration = Duration::from_secs(180);
/// How long a read of a whole topic waits for more before it ends.
const QUIET: Duration = Duration::from_secs(3);

/// Messages whose sequence number is this modulo [`REJECT_EVERY`] are not JSON: the
/// route's `json_filter` rejects them to the dead-letter topic.
const REJECT_EVERY: u64 = 100;
const REJECTED: u64 = 42;

/// Message `i`: JSON carrying its sequence number, or for every hundredth one, text.
fn json_payload(i: u64) -> String {
    if i % REJECT_EVERY == REJECTED {
        format!("seq {i:08} is not JSON")
    } else {
        format!(
            r#"{{"seq": {i}, "pad": "padding-to-about-a-hundred-bytes-xxxxxxxxxxxxxxxxxxxxx"}}"#
        )
    }
}

/// The sequence number in a record written from [`json_payload`] or the plain stream.
fn seq_of(r: &Record) -> u64 {
    let digits: String = r
        .payload
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a sequence number")
}

/// An exactly-once router from `in` to `out` through `plugins`, dead letters to `dlq`, in
/// group `group`, as router instance `instance`.
fn config(bootstrap: &str, group: &str, instance: &str, route: &str) -> String {
    format!(
        r#"
instance_id = "{instance}"
[kafka.main]
bootstrap = "{bootstrap}"
options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "{group}", delivery = "exactly-once" }}
[outputs.out]
kafka = {{ cluster = "main", topic = "out" }}
[outputs.dlq]
kafka = {{ cluster = "main", topic = "dlq" }}
[[routes]]
name = "copy"
from = ["in"]
to = ["out"]
dead_letter = "dlq"
{route}
"#
    )
}

/// The route's plugin: pass JSON with a `seq`, reject anything else.
fn json_route() -> String {
    format!(
        r#"plugins = [{{ path = "{}", config = {{ field = "seq", op = "exists" }} }}]"#,
        plugins::JSON_FILTER
    )
}

/// Waits until `group` has committed offsets on `in` (summed) that satisfy `reached`;
/// otherwise fails, saying `what` and how far it got, with the routers' logs.
fn wait_committed(
    (bootstrap, group): (&str, &str),
    reached: impl Fn(i64) -> bool,
    what: &str,
    logs: &[&Path],
) {
    if !wait_until(DEADLINE, || reached(committed(bootstrap, group, "in"))) {
        panic!(
            "{what}: {} committed\n{}",
            committed(bootstrap, group, "in"),
            procs::logs(logs)
        );
    }
}

fn log_contains(path: &Path, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|l| l.contains(text))
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn assigned(log: &Path) {
    assert!(
        wait_until(DEADLINE, || log_contains(log, "partitions assigned")),
        "the router never got partitions:\n{}",
        log_of(log)
    );
}

fn stop(mut proc: Proc, log: &Path) {
    proc.signal("TERM");
    assert!(
        proc.wait_for_exit(Duration::from_secs(60))
            .is_some_and(|s| s.success()),
        "the router did not commit and exit cleanly:\n{}",
        log_of(log)
    );
}

/// Checks `out` and `dlq` (read `read_committed`) against a stream of `n` messages from
/// [`json_payload`]: every JSON message once in `out`, in key order; every other one once
/// in `dlq`; nothing in both. Returns what `out` holds.
fn account(bootstrap: &str, n: u64, label: &str) -> usize {
    let out = read_all(bootstrap, "out", QUIET);
    let dead = read_all(bootstrap, "dlq", QUIET);
    let rejected: BTreeSet<u64> = (0..n).filter(|i| i % REJECT_EVERY == REJECTED).collect();
    let passed = n - rejected.len() as u64;
    let out_audit = audit_with(&out, passed, seq_of);
    let dead_audit = audit_with(&dead, rejected.len() as u64, seq_of);
    let uncommitted = read_all_uncommitted(bootstrap, "out", QUIET).len();
    eprintln!(
        "exactly-once, {label}: {n} in; out {} records (lost {}, duplicates {}, out of order \
         {}); dead letters {} (duplicates {}); out read_uncommitted: {uncommitted} records",
        out.len(),
        out_audit.lost,
        out_audit.duplicates,
        out_audit.out_of_order,
        dead.len(),
        dead_audit.duplicates,
    );
    assert!(
        out.iter().all(|r| !rejected.contains(&seq_of(r))),
        "a rejected message reached the output"
    );
    assert!(
        dead.iter().all(|r| rejected.contains(&seq_of(r))),
        "a message that passed reached the dead-letter topic"
    );
    assert_eq!(out_audit.lost, 0, "messages lost");
    assert_eq!(out_audit.duplicates, 0, "messages duplicated in the output");
    assert_eq!(out_audit.out_of_order, 0, "order per key broken");
    assert_eq!(dead_audit.lost, 0, "dead letters lost");
    assert_eq!(dead_audit.duplicates, 0, "dead letters duplicated");
    for r in &dead {
        assert_eq!(r.header("switchyard-error-kind"), Some("reject"), "{r:?}");
    }
    uncommitted
}

/// The router is killed (SIGKILL) five times while a stream flows, and started again each
/// time: it never commits what a killed instance left open, so the output read
/// `read_committed` holds every record once.
#[test]
fn sigkill_five_times_under_load_loses_nothing_and_duplicates_nothing() {
    const N: u64 = 30_000;
    let broker = Broker::start(BrokerKind::Apache, &["in:4", "out:4", "dlq:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("exactly-once-kill");
    let cfg = scratch.write(
        "router.toml",
        &config(&bootstrap, "eo-kill", "a", &json_route()),
    );
    let mut log = scratch.path("router-0.log");
    let mut proc = router(&cfg, &log);
    assigned(&log);
    let producer = PacedProducer::start_with(&bootstrap, "in", (N, 3_000), json_payload);
    for kill in 1..=5_i64 {
        // Killed only once it has committed more since the last start: each kill lands
        // mid-stream, with a transaction open.
        let target = N as i64 * kill / 7;
        wait_committed(
            (&bootstrap, "eo-kill"),
            |n| n >= target,
            &format!("kill {kill}: the stream stalled"),
            &[&log],
        );
        proc.signal("KILL");
        assert!(proc.wait_for_exit(Duration::from_secs(10)).is_some());
        log = scratch.path(&format!("router-{kill}.log"));
        proc = router(&cfg, &log);
    }
    producer.finish();
    wait_committed(
        (&bootstrap, "eo-kill"),
        |n| n == N as i64,
        "the stream was not committed whole",
        &[&log],
    );
    assert!(proc.is_running(), "the router died:\n{}", log_of(&log));
    account(&bootstrap, N, "five SIGKILLs under load");
    stop(proc, &log);
}

/// Records the broker refuses (larger than `out`'s `max.message.bytes`) make their
/// transaction abort: what it wrote stays invisible to `read_committed` (and visible to
/// `read_uncommitted`), the messages are processed again, and the refused ones go to the
/// dead-letter topic in the new transaction.
#[test]
fn a_refused_record_aborts_its_transaction_and_is_dead_lettered_once() {
    const N: u64 = 2_000;
    const LARGE_EVERY: u64 = 500;
    const LARGE: usize = 150_000;
    let mut broker = Broker::start_with(
        BrokerKind::Apache,
        &["in:4", "dlq:1"],
        &ApacheKafkaOptions {
            auto_create_topics: false,
            ..ApacheKafkaOptions::default()
        },
    );
    broker
        .apache()
        .create_topic_with("out", 4, &[("max.message.bytes", "100000")])
        .expect("create out");
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("exactly-once-refused");
    let passthrough = format!(r#"plugins = [{{ path = "{}" }}]"#, plugins::PASSTHROUGH);
    let cfg = scratch.write(
        "router.toml",
        &config(&bootstrap, "eo-refused", "a", &passthrough),
    );
    let large: BTreeSet<u64> = (0..N)
        .filter(|i| i % LARGE_EVERY == LARGE_EVERY - 1)
        .collect();
    let records: Vec<_> = stream(N)
        .into_iter()
        .enumerate()
        .map(|(i, (key, mut payload, headers))| {
            if large.contains(&(i as u64)) {
                payload.extend(std::iter::repeat_n('x', LARGE - payload.len()));
            }
            (key, payload, headers)
        })
        .collect();
    let log = scratch.path("router.log");
    let (proc, admin) = router_with_admin(&cfg, &log);
    assigned(&log);
    produce(&bootstrap, "in", &records);
    wait_committed(
        (&bootstrap, "eo-refused"),
        |n| n == N as i64,
        "the stream was not committed whole",
        &[&log],
    );
    let out = read_all(&bootstrap, "out", QUIET);
    let dead = read_all(&bootstrap, "dlq", QUIET);
    let uncommitted = read_all_uncommitted(&bootstrap, "out", QUIET);
    let aborted = metric(
        &admin,
        "switchyard_kafka_transactions_total{input=\"in\",result=\"aborted\"}",
    );
    eprintln!(
        "exactly-once, refused records: {N} in ({} large); out {} records, dead letters {}; \
         out read_uncommitted {} records; {aborted} transactions aborted",
        large.len(),
        out.len(),
        dead.len(),
        uncommitted.len()
    );
    // Every message exactly once: the large ones dead-lettered, and only they (the records
    // refused with them in their batch are sent again, each alone, and delivered).
    let mut all: Vec<u64> = out.iter().chain(&dead).map(seq_of).collect();
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "lost or duplicated");
    let dead_seqs: BTreeSet<u64> = dead.iter().map(seq_of).collect();
    assert_eq!(
        dead_seqs, large,
        "dead-lettered: not exactly the large records"
    );
    for r in &dead {
        assert_eq!(r.header("switchyard-error-kind"), Some("produce"), "{r:?}");
    }
    assert!(aborted >= 1.0, "no transaction was aborted");
    // What the aborted transactions wrote is in the log, and only an uncommitted read
    // shows it: the audit above would have seen duplicates had it read that way.
    assert!(
        uncommitted.len() > out.len(),
        "read_uncommitted shows nothing the aborted transactions wrote ({} records)",
        uncommitted.len()
    );
    stop(proc, &log);
}

/// A second router started with the same `instance_id` takes the transactional id over:
/// the first is fenced and stops, saying why, and nothing is written twice.
#[test]
fn a_second_instance_with_the_same_id_fences_the_first() {
    const N: u64 = 12_000;
    let broker = Broker::start(BrokerKind::Apache, &["in:4", "out:4", "dlq:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("exactly-once-fence");
    let cfg = scratch.write(
        "router.toml",
        &config(&bootstrap, "eo-fence", "same", &json_route()),
    );
    let (log_a, log_b) = (scratch.path("a.log"), scratch.path("b.log"));
    let mut a = router(&cfg, &log_a);
    assigned(&log_a);
    let producer = PacedProducer::start_with(&bootstrap, "in", (N, 3_000), json_payload);
    wait_committed(
        (&bootstrap, "eo-fence"),
        |n| n >= N as i64 / 4,
        "the stream stalled",
        &[&log_a],
    );
    let b = router(&cfg, &log_b);
    let exited = a.wait_for_exit(DEADLINE);
    assert!(
        exited.is_some_and(|s| !s.success()),
        "the fenced router did not stop with an error:\n{}\nthe second router:\n{}",
        log_of(&log_a),
        log_of(&log_b)
    );
    assert!(
        log_contains(&log_a, "fenced"),
        "the fenced router did not say why:\n{}",
        log_of(&log_a)
    );
    producer.finish();
    wait_committed(
        (&bootstrap, "eo-fence"),
        |n| n == N as i64,
        "the second router did not finish the stream",
        &[&log_b],
    );
    account(&bootstrap, N, "fenced by a second instance");
    stop(b, &log_b);
}

/// A second router with its own `instance_id` joins the group while a stream flows; the
/// partitions it takes are committed by the first before they move.
#[test]
fn a_second_instance_joining_under_load_duplicates_nothing() {
    const N: u64 = 24_000;
    let broker = Broker::start(BrokerKind::Apache, &["in:4", "out:4", "dlq:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("exactly-once-join");
    let (log_a, log_b) = (scratch.path("a.log"), scratch.path("b.log"));
    let cfg_a = scratch.write("a.toml", &config(&bootstrap, "eo-join", "a", &json_route()));
    let cfg_b = scratch.write("b.toml", &config(&bootstrap, "eo-join", "b", &json_route()));
    let a = router(&cfg_a, &log_a);
    assigned(&log_a);
    let producer = PacedProducer::start_with(&bootstrap, "in", (N, 3_000), json_payload);
    wait_committed(
        (&bootstrap, "eo-join"),
        |n| n >= N as i64 / 4,
        "the stream stalled",
        &[&log_a],
    );
    let b = router(&cfg_b, &log_b);
    assigned(&log_b);
    producer.finish();
    wait_committed(
        (&bootstrap, "eo-join"),
        |n| n == N as i64,
        "the group did not finish the stream",
        &[&log_a, &log_b],
    );
    account(&bootstrap, N, "a second instance joins under load");
    stop(a, &log_a);
    stop(b, &log_b);
}

/// The route's plugin is swapped five times while a stream flows: the open transaction
/// commits before the new version takes over, so every record is processed by exactly one
/// version, once, and per partition the versions only go up.
#[test]
fn a_plugin_swapped_under_load_processes_each_message_with_one_version_once() {
    /// Records each version commits, at least, before the next one is swapped in.
    const EACH: i64 = 2_000;
    let broker = Broker::start(BrokerKind::Apache, &["in:4", "out:4", "dlq:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("exactly-once-reload");
    let plugin = scratch.path("tag.wasm");
    std::fs::write(&plugin, tag_build(1)).expect("write v1");
    let cfg = scratch.write(
        "router.toml",
        &config(
            &bootstrap,
            "eo-reload",
            "a",
            r#"plugins = [{ path = "tag.wasm" }]"#,
        ),
    );
    let log = scratch.path("router.log");
    let (proc, admin) = router_with_admin(&cfg, &log);
    assigned(&log);
    // Flows until stopped: each version is swapped in only once the one before it has
    // committed its share, however slow the machine.
    let producer = PacedProducer::start(&bootstrap, "in", u64::MAX, 3_000);
    let mut served_at = 0;
    for version in 2..=7_u32 {
        let target = served_at + EACH;
        wait_committed(
            (&bootstrap, "eo-reload"),
            |n| n >= target,
            &format!("v{}: the stream stalled", version - 1),
            &[&log],
        );
        if version == 7 {
            break;
        }
        let build = tag_build(version);
        write_by_rename(&plugin, &build);
        let hash = sha256(&build);
        assert!(
            wait_until(DEADLINE, || get(&admin, "/routes").1.contains(&hash)),
            "v{version} never served:\n{}",
            log_of(&log)
        );
        served_at = committed(&bootstrap, "eo-reload", "in");
    }
    let n = producer.stop();
    wait_committed(
        (&bootstrap, "eo-reload"),
        |c| c == n as i64,
        "the stream was not committed whole",
        &[&log],
    );
    let out = read_all(&bootstrap, "out", QUIET);
    let audit = audit(&out, n);
    let mut by_partition: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
    for r in &out {
        by_partition
            .entry(r.partition)
            .or_default()
            .push(version_of(r));
    }
    let versions: BTreeSet<u32> = by_partition.values().flatten().copied().collect();
    eprintln!(
        "exactly-once, five plugin swaps under load: {n} in, out {} records (lost {}, \
         duplicates {}, out of order {}); versions seen {versions:?}",
        out.len(),
        audit.lost,
        audit.duplicates,
        audit.out_of_order
    );
    assert_eq!(audit.lost, 0, "messages lost");
    assert_eq!(audit.duplicates, 0, "messages processed twice");
    assert_eq!(audit.out_of_order, 0, "order per key broken");
    for (partition, tags) in &by_partition {
        assert!(
            tags.windows(2).all(|w| w[0] <= w[1]),
            "partition {partition}: a version went back"
        );
    }
    assert_eq!(
        versions,
        (1..=6).collect(),
        "every version served part of the stream"
    );
    assert!(
        metric(
            &admin,
            "switchyard_kafka_transaction_commit_seconds_count{input=\"in\"}"
        ) > 0.0,
        "commit latency is not measured"
    );
    stop(proc, &log);
}

/// The broker freezes for 20 s under load (SIGSTOP, then SIGCONT): the open transaction's
/// commit waits and is retried, or is aborted and read again; either way nothing is lost or
/// written twice, and the router is still running.
#[test]
fn a_frozen_broker_under_load_loses_nothing_and_duplicates_nothing() {
    const N: u64 = 18_000;
    let broker = Broker::start(BrokerKind::Apache, &["in:4", "out:4", "dlq:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("exactly-once-freeze");
    let cfg = scratch.write(
        "router.toml",
        &config(&bootstrap, "eo-freeze", "a", &json_route()),
    );
    let log = scratch.path("router.log");
    let mut proc = router(&cfg, &log);
    assigned(&log);
    let producer = PacedProducer::start_with(&bootstrap, "in", (N, 2_000), json_payload);
    wait_committed(
        (&bootstrap, "eo-freeze"),
        |n| n >= N as i64 / 4,
        "the stream stalled",
        &[&log],
    );
    broker.pause();
    std::thread::sleep(Duration::from_secs(20));
    broker.resume();
    producer.finish();
    wait_committed(
        (&bootstrap, "eo-freeze"),
        |n| n == N as i64,
        "the stream was not committed whole after the freeze",
        &[&log],
    );
    assert!(proc.is_running(), "the router died:\n{}", log_of(&log));
    account(&bootstrap, N, "the broker frozen for 20 s under load");
    stop(proc, &log);
}
