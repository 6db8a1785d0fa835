//! The router as users run it: `switchyard run` as a child process against an embedded
//! cluster in another process (`switchyard kafka-dev`), fed and read by plain Kafka clients.

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_tests::broker::{Broker, BrokerKind};
use switchyard_tests::kafka::{Input, Record, produce, read_topic};
use switchyard_tests::plugins;
use switchyard_tests::procs::{Scratch, router};

const READ: Duration = Duration::from_secs(60);

fn config(bootstrap: &str) -> String {
    format!(
        r#"
[kafka.main]
bootstrap = "{bootstrap}"

[inputs.orders]
kafka = {{ cluster = "main", topics = ["orders"], group = "router-test" }}

[outputs.valid]
kafka = {{ cluster = "main", topic = "orders.valid" }}
[outputs.eu]
kafka = {{ cluster = "main", topic = "orders.eu" }}
[outputs.us]
kafka = {{ cluster = "main", topic = "orders.us" }}
[outputs.dead]
kafka = {{ cluster = "main", topic = "orders.dlq" }}

[[routes]]
name = "orders"
from = ["orders"]
plugins = [
  {{ path = "{filter}", config = {{ field = "amount", op = "gte", value = "100" }} }},
  {{ path = "{router}", config = {{ by = "key-prefix", "to.eu-" = "europe", "to.us-" = "americas" }} }},
]
to = ["valid"]
destinations = {{ europe = "eu", americas = "us" }}
dead_letter = "dead"
"#,
        filter = plugins::JSON_FILTER,
        router = plugins::KEY_ROUTER,
    )
}

/// The sequence number in a payload written by [`inputs`].
fn seq(r: &Record) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&r.payload).expect("json payload");
    v["seq"].as_u64().expect("seq")
}

/// 300 messages over 12 keys: amounts cycle 50/150/250, every 10th is not JSON.
fn inputs() -> Vec<Input> {
    (0..300u64)
        .map(|i| {
            let key = format!("{}-{}", ["eu", "us", "xx"][(i % 3) as usize], i % 12);
            let payload = if i % 10 == 9 {
                format!("not json {i}")
            } else {
                format!(
                    r#"{{"seq": {i}, "amount": {}}}"#,
                    [50, 150, 250][(i / 3 % 3) as usize]
                )
            };
            (
                Some(key),
                payload,
                vec![("trace".to_owned(), format!("t-{i}"))],
            )
        })
        .collect()
}

fn kafka_to_kafka_filters_routes_fans_out_and_dead_letters(kind: BrokerKind) {
    let broker = Broker::start(
        kind,
        &[
            "orders:4",
            "orders.valid:4",
            "orders.eu:2",
            "orders.us:2",
            "orders.dlq:1",
        ],
    );
    let bootstrap = broker.bootstrap().to_owned();
    let scratch = Scratch::new("k2k");
    let cfg = scratch.write("router.toml", &config(&bootstrap));
    let mut proc = router(&cfg, &scratch.path("router.log"));

    let input = inputs();
    produce(&bootstrap, "orders", &input);

    // What a user expects, computed from the inputs.
    let mut expected: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (i, (key, payload, _)) in input.iter().enumerate() {
        let key = key.clone().unwrap_or_default();
        let topic = if i % 10 == 9 {
            "orders.dlq"
        } else if [50, 150, 250][i / 3 % 3] < 100 {
            continue;
        } else if key.starts_with("eu-") {
            "orders.eu"
        } else if key.starts_with("us-") {
            "orders.us"
        } else {
            "orders.valid"
        };
        expected
            .entry(topic)
            .or_default()
            .push((key, payload.clone()));
    }

    for (topic, want) in &expected {
        let got = read_topic(&bootstrap, topic, want.len(), READ);
        let log = std::fs::read_to_string(scratch.path("router.log")).unwrap_or_default();
        assert_eq!(
            got.len(),
            want.len(),
            "{topic}: wrong count; router log:\n{log}"
        );
        let mut got_pairs: Vec<(String, String)> = got
            .iter()
            .map(|r| (r.key.clone().unwrap_or_default(), r.payload.clone()))
            .collect();
        let mut want_sorted = want.clone();
        got_pairs.sort();
        want_sorted.sort();
        assert_eq!(got_pairs, want_sorted, "{topic}: wrong records");
        for r in &got {
            let i: usize = r
                .header("trace")
                .and_then(|t| t[2..].parse().ok())
                .expect("trace header kept");
            assert_eq!(
                input[i].1, r.payload,
                "{topic}: trace header belongs to another message"
            );
        }
        if *topic != "orders.dlq" {
            // Order per key is kept end to end.
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            for r in &got {
                let s = seq(r);
                let key = r.key.clone().unwrap_or_default();
                if let Some(prev) = last.insert(key.clone(), s) {
                    assert!(prev < s, "{topic}: key {key} out of order: {prev} then {s}");
                }
            }
        }
    }

    for r in read_topic(&bootstrap, "orders.dlq", expected["orders.dlq"].len(), READ) {
        assert_eq!(r.header("switchyard-route"), Some("orders"));
        assert_eq!(r.header("switchyard-plugin"), Some("json_filter"));
        assert_eq!(r.header("switchyard-error-kind"), Some("reject"));
        assert!(
            r.header("switchyard-reason")
                .is_some_and(|m| m.starts_with("payload is not JSON"))
        );
        assert_eq!(r.header("switchyard-origin-topic"), Some("orders"));
        assert!(
            r.header("switchyard-origin-offset")
                .is_some_and(|o| o.parse::<i64>().is_ok())
        );
        assert_eq!(r.header("switchyard-plugin-hash").map(str::len), Some(64));
    }

    assert!(proc.is_running(), "the router died");
    proc.signal("TERM");
    let status = proc
        .wait_for_exit(Duration::from_secs(20))
        .expect("router exits after SIGTERM");
    assert!(status.success(), "router exit status {status}");
}

switchyard_tests::on_both_brokers!(kafka_to_kafka_filters_routes_fans_out_and_dead_letters,);
