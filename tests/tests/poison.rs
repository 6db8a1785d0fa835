//! One looping message does not take its batch down: the router calls the plugin again in
//! halves until the messages that fail on their own are found; only they are dead-lettered,
//! each once with its own kind, and every other message is delivered once, in order.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use switchyard_tests::broker::{Broker, BrokerKind};
use switchyard_tests::kafka::{Input, committed, produce, read_all};
use switchyard_tests::procs::{Scratch, router};
use switchyard_tests::stream::{seq, stream};
use switchyard_tests::{plugins, wait_until};

const DEADLINE: Duration = Duration::from_secs(180);

#[test]
fn only_the_looping_messages_are_dead_lettered_and_their_batch_mates_go_on() {
    const N: u64 = 2000;
    const EVERY: u64 = 100;
    let broker = Broker::start(BrokerKind::Embedded, &["in:1", "out:1", "dlq:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    // Every 100th message loops forever in the plugin; its sequence number stays readable.
    let messages: Vec<Input> = stream(N)
        .into_iter()
        .enumerate()
        .map(|(i, (key, payload, headers))| {
            if i as u64 % EVERY == EVERY / 2 {
                (key, format!("loop{}", &payload[4..]), headers)
            } else {
                (key, payload, headers)
            }
        })
        .collect();
    let poison: BTreeSet<u64> = (0..N).filter(|i| i % EVERY == EVERY / 2).collect();
    produce(&bootstrap, "in", &messages);

    let scratch = Scratch::new("poison");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[kafka.main]
bootstrap = "{bootstrap}"
options = {{ "auto.commit.interval.ms" = "200" }}
[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "poison" }}
[outputs.out]
kafka = {{ cluster = "main", topic = "out" }}
[outputs.dead]
kafka = {{ cluster = "main", topic = "dlq" }}
[[routes]]
name = "loopy"
from = ["in"]
plugins = [{{ path = "{fault_loop}", timeout_ms = 100 }}]
to = ["out"]
dead_letter = "dead"
"#,
            fault_loop = plugins::FAULT_LOOP
        ),
    );
    let started = Instant::now();
    let mut proc = router(&cfg, &scratch.path("router.log"));
    assert!(
        wait_until(DEADLINE, || committed(&bootstrap, "poison", "in")
            == N as i64),
        "the stream was not committed:\n{}",
        std::fs::read_to_string(scratch.path("router.log")).unwrap_or_default()
    );
    let took = started.elapsed();
    let out = read_all(&bootstrap, "out", Duration::from_secs(3));
    let dead = read_all(&bootstrap, "dlq", Duration::from_secs(3));
    eprintln!(
        "poison: {N} messages, {} looping (deadline 100 ms): {} delivered, {} dead-lettered, \
         in {:.1} s from the router's start",
        poison.len(),
        out.len(),
        dead.len(),
        took.as_secs_f64()
    );
    let dead_seqs: BTreeSet<u64> = dead.iter().map(seq).collect();
    assert_eq!(
        dead_seqs, poison,
        "exactly the looping messages are dead-lettered"
    );
    assert_eq!(dead.len(), poison.len(), "each once");
    for record in &dead {
        assert_eq!(
            record.header("switchyard-error-kind"),
            Some("timeout"),
            "{record:?}"
        );
    }
    let delivered: Vec<u64> = out.iter().map(seq).collect();
    let want: Vec<u64> = (0..N).filter(|i| !poison.contains(i)).collect();
    assert_eq!(
        delivered, want,
        "every other message delivered once, in order"
    );
    assert!(proc.is_running(), "the router died");
    proc.signal("TERM");
    assert!(
        proc.wait_for_exit(Duration::from_secs(30))
            .is_some_and(|s| s.success())
    );
}
