//! Records an output refuses for good (here: too large) do not wedge the input: each goes to
//! the route's dead-letter output with kind `produce` and the reason, every other record is
//! delivered once and in order per key, and the group commits the whole stream. Both ways a
//! refusal arrives are covered: at once, by the client (`message.max.bytes`), on both
//! brokers; and later, by the broker (a topic's `max.message.bytes`), on Apache Kafka.

use std::collections::BTreeSet;
use std::time::Duration;

use switchyard::kafka::ApacheKafkaOptions;
use switchyard_tests::admin::metric;
use switchyard_tests::broker::{Broker, BrokerKind};
use switchyard_tests::kafka::{Input, Record, committed, produce, read_all};
use switchyard_tests::procs::{Scratch, router_with_admin};
use switchyard_tests::stream::{seq, stream};
use switchyard_tests::{plugins, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);
/// Messages in the stream; every `EVERY`th one is `LARGE` bytes.
const N: u64 = 600;
const EVERY: u64 = 60;
const LARGE: usize = 150_000;

/// The stream with every `EVERY`th payload made `LARGE` (its sequence number kept in front).
fn stream_with_large_records() -> Vec<Input> {
    stream(N)
        .into_iter()
        .enumerate()
        .map(|(i, (key, payload, headers))| {
            if i as u64 % EVERY == EVERY - 1 {
                let mut big = payload.clone();
                big.extend(std::iter::repeat_n('x', LARGE - payload.len()));
                (key, big, headers)
            } else {
                (key, payload, headers)
            }
        })
        .collect()
}

/// `out_options` are the librdkafka options of the cluster entry `out` is written through
/// (the same broker as the input and the dead-letter topic).
fn config(bootstrap: &str, out_options: &str) -> String {
    format!(
        r#"
[kafka.main]
bootstrap = "{bootstrap}"
options = {{ "auto.commit.interval.ms" = "200" }}
[kafka.out]
bootstrap = "{bootstrap}"
options = {{ {out_options} }}
[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "refusals" }}
[outputs.out]
kafka = {{ cluster = "out", topic = "out" }}
[outputs.dead]
kafka = {{ cluster = "main", topic = "dlq" }}
[[routes]]
name = "copy"
from = ["in"]
plugins = [{{ path = "{passthrough}" }}]
to = ["out"]
dead_letter = "dead"
"#,
        passthrough = plugins::PASSTHROUGH
    )
}

/// Runs the stream through a router on `config`; checks and reports what the issue asks:
/// every record delivered or dead-lettered with kind `produce`, every large one
/// dead-lettered, order per key kept, the stream committed, the router alive.
fn run_and_account(broker: &Broker, config: &str, label: &str) {
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("refusals");
    let cfg = scratch.write("router.toml", config);
    let log = scratch.path("router.log");
    let (mut proc, admin) = router_with_admin(&cfg, &log);
    produce(&bootstrap, "in", &stream_with_large_records());
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(DEADLINE, || committed(&bootstrap, "refusals", "in")
            == N as i64),
        "the input did not commit the whole stream; committed {}:\n{}",
        committed(&bootstrap, "refusals", "in"),
        log_text()
    );
    assert!(proc.is_running(), "the router died:\n{}", log_text());

    let out = read_all(&bootstrap, "out", Duration::from_secs(3));
    let dead = read_all(&bootstrap, "dlq", Duration::from_secs(3));
    let large: BTreeSet<u64> = (0..N).filter(|i| i % EVERY == EVERY - 1).collect();
    let delivered: Vec<u64> = out.iter().map(seq).collect();
    let dead_seqs: Vec<u64> = dead.iter().map(seq).collect();
    eprintln!(
        "refused records, {label}: {N} in, {} delivered, {} dead-lettered ({} large)",
        delivered.len(),
        dead_seqs.len(),
        large.len()
    );
    // Every message accounted for exactly once.
    let mut all: Vec<u64> = delivered.iter().chain(&dead_seqs).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "lost or duplicated");
    // Every large one dead-lettered, none delivered.
    assert!(large.iter().all(|s| dead_seqs.contains(s)), "{dead_seqs:?}");
    for record in &dead {
        assert_eq!(
            record.header("switchyard-error-kind"),
            Some("produce"),
            "{record:?}"
        );
        assert_eq!(record.header("switchyard-route"), Some("copy"));
        let reason = record.header("switchyard-reason").unwrap_or_default();
        assert!(
            reason.contains("output `out`") && reason.contains("MessageSizeTooLarge"),
            "{reason}"
        );
        if large.contains(&seq(record)) {
            assert_eq!(
                record.payload.len(),
                LARGE,
                "the dead letter keeps the payload"
            );
        }
    }
    assert_in_key_order(&out);
    // `out` counts what was written, not what was refused.
    assert_eq!(
        metric(&admin, "switchyard_output_records_total{output=\"out\"}"),
        out.len() as f64
    );
    let series = "switchyard_output_errors_total{output=\"out\",error=\"MessageSizeTooLarge\"}";
    assert!(metric(&admin, series) >= large.len() as f64, "{series}");
    assert_eq!(
        metric(
            &admin,
            "switchyard_route_dead_letters_total{route=\"copy\"}"
        ),
        dead.len() as f64
    );
    proc.signal("TERM");
    let status = proc.wait_for_exit(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "exit status {status}");
}

/// Within each key, sequence numbers only go up.
fn assert_in_key_order(records: &[Record]) {
    let mut last: std::collections::BTreeMap<&str, u64> = Default::default();
    for r in records {
        let key = r.key.as_deref().unwrap_or_default();
        let s = seq(r);
        if let Some(before) = last.insert(key, s) {
            assert!(before < s, "key {key}: {s} after {before}");
        }
    }
}

fn a_record_the_client_refuses_is_dead_lettered_and_the_input_moves_on(kind: BrokerKind) {
    let broker = Broker::start(kind, &["in:4", "out:4", "dlq:1"]);
    let cfg = config(broker.bootstrap(), r#""message.max.bytes" = "100000""#);
    run_and_account(&broker, &cfg, &format!("refused by the client, {kind:?}"));
}

switchyard_tests::on_both_brokers!(
    a_record_the_client_refuses_is_dead_lettered_and_the_input_moves_on
);

#[test]
fn a_record_the_broker_refuses_is_dead_lettered_and_the_input_moves_on() {
    let broker = Broker::start_with(
        BrokerKind::Apache,
        &["in:4", "dlq:1"],
        &ApacheKafkaOptions {
            auto_create_topics: false,
            ..ApacheKafkaOptions::default()
        },
    );
    let mut broker = broker;
    broker
        .apache()
        .create_topic_with("out", 4, &[("max.message.bytes", "100000")])
        .expect("create out");
    let cfg = config(broker.bootstrap(), "");
    run_and_account(&broker, &cfg, "refused by the broker");
}
