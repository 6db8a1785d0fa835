//! The core in process, with no broker, socket peer or child process: the route runner
//! over a memory source and memory outputs (every outcome, fan-out, dead letters,
//! destination errors, batch failures, refused and failed deliveries), and the router's
//! planning and applying of a reload (inputs kept, started and stopped, outputs opened and
//! closed, a refused plan changing nothing).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchyard::config::When;
use switchyard::control::ReloadError;
use switchyard::metrics::{PluginStats, RouteStats};
use switchyard::pipeline::{PartitionTracker, RouteRunner, RouteSpec};
use switchyard::router::{Router, RouterOptions};
use switchyard_tests::memory::{MemorySink, Verdict, Written, batch};
use switchyard_tests::procs::Scratch;
use switchyard_tests::{free_port, instance, plugins};

/// A route named `r` through `chain`, to `to`, with `destinations` and dead letters to
/// `dead`; its counters.
fn route(
    chain: &[(&str, &[(&str, &str)])],
    to: &[&Arc<MemorySink>],
    destinations: &[(&str, &Arc<MemorySink>)],
    dead: &Arc<MemorySink>,
) -> (RouteRunner, Arc<RouteStats>) {
    let (runner, stats, _) = route_with_plugin_stats(chain, to, destinations, dead);
    (runner, stats)
}

/// [`route`], with the counters of each plugin of the chain.
fn route_with_plugin_stats(
    chain: &[(&str, &[(&str, &str)])],
    to: &[&Arc<MemorySink>],
    destinations: &[(&str, &Arc<MemorySink>)],
    dead: &Arc<MemorySink>,
) -> (RouteRunner, Arc<RouteStats>, Vec<Arc<PluginStats>>) {
    let (spec, stats) = spec(to, destinations, Some(dead));
    let (runner, plugin_stats) = runner(spec, chain);
    (runner, stats, plugin_stats)
}

/// Route `r` to `to`, with `destinations` and dead letters to `dead`; its counters.
fn spec(
    to: &[&Arc<MemorySink>],
    destinations: &[(&str, &Arc<MemorySink>)],
    dead: Option<&Arc<MemorySink>>,
) -> (RouteSpec, Arc<RouteStats>) {
    let stats = Arc::new(RouteStats::default());
    let spec = RouteSpec {
        name: "r".to_owned(),
        when: When::default(),
        to: to.iter().map(|s| s.as_sink()).collect(),
        destinations: destinations
            .iter()
            .map(|(name, s)| ((*name).to_owned(), s.as_sink()))
            .collect::<HashMap<_, _>>(),
        dead_letter: dead.map(|d| d.as_sink()),
        stats: Arc::clone(&stats),
        reply_now: false,
        drop_refused: false,
        pause_on_plugin_error: false,
    };
    (spec, stats)
}

/// A runner of `spec` through `chain`, with the counters of each plugin.
fn runner(
    spec: RouteSpec,
    chain: &[(&str, &[(&str, &str)])],
) -> (RouteRunner, Vec<Arc<PluginStats>>) {
    let plugins: Vec<_> = chain
        .iter()
        .map(|(path, config)| (instance(path, config), Arc::new(PluginStats::default())))
        .collect();
    let plugin_stats = plugins.iter().map(|(_, s)| Arc::clone(s)).collect();
    (RouteRunner::new(spec, plugins), plugin_stats)
}

/// Runs `payloads` through `runner` as one batch read from one partition; the tracker that
/// commits them, once every message has left the runner.
fn run(runner: &mut RouteRunner, payloads: &[&str]) -> Arc<PartitionTracker> {
    let (tracker, mut messages) = batch(payloads);
    runner.process("in", &mut messages, true);
    tracker
}

fn count(n: &std::sync::atomic::AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

/// The dead letter of `payload`, with its context headers.
fn dead_letter<'a>(dead: &'a [Written], payload: &str) -> &'a Written {
    dead.iter()
        .find(|w| w.text() == payload)
        .unwrap_or_else(|| panic!("no dead letter for {payload:?} in {dead:?}"))
}

#[test]
fn pass_drop_and_reject_each_reach_their_place() {
    let (out, dead) = (MemorySink::new("out"), MemorySink::new("dead"));
    let filter: &[(&str, &str)] = &[("field", "amount"), ("op", "gte"), ("value", "100")];
    let (mut runner, stats) = route(&[(plugins::JSON_FILTER, filter)], &[&out], &[], &dead);
    let tracker = run(
        &mut runner,
        &[r#"{"amount": 150}"#, r#"{"amount": 5}"#, "not json"],
    );

    assert_eq!(out.texts(), [r#"{"amount": 150}"#]);
    let dead = dead.written();
    assert_eq!(dead.len(), 1);
    let letter = dead_letter(&dead, "not json");
    assert_eq!(
        letter.header("switchyard-error-kind").as_deref(),
        Some("reject")
    );
    assert_eq!(letter.header("switchyard-route").as_deref(), Some("r"));
    assert_eq!(
        letter.header("switchyard-plugin").as_deref(),
        Some("json_filter")
    );
    assert_eq!(
        letter.header("switchyard-origin-topic").as_deref(),
        Some("in")
    );
    assert_eq!(
        letter.header("switchyard-origin-offset").as_deref(),
        Some("2")
    );
    assert!(
        letter
            .header("switchyard-reason")
            .is_some_and(|r| r.starts_with("payload is not JSON"))
    );
    let counted = [
        count(&stats.received),
        count(&stats.sent),
        count(&stats.dropped),
        count(&stats.rejected),
        count(&stats.dead_lettered),
    ];
    assert_eq!(counted, [3, 1, 1, 1, 1]);
    assert_eq!(tracker.committable(), Some(3), "every message is done");
}

#[test]
fn emits_fan_out_to_declared_destinations() {
    let (out, europe, germany, audit, dead) = (
        MemorySink::new("out"),
        MemorySink::new("europe"),
        MemorySink::new("germany"),
        MemorySink::new("audit"),
        MemorySink::new("dead"),
    );
    let config: &[(&str, &str)] = &[
        ("by", "key-prefix"),
        ("to.eu-", "europe"),
        ("to.eu-de-", "germany,audit"),
    ];
    let (mut runner, stats) = route(
        &[(plugins::KEY_ROUTER, config)],
        &[&out],
        &[
            ("europe", &europe),
            ("germany", &germany),
            ("audit", &audit),
        ],
        &dead,
    );
    let tracker = switchyard::pipeline::PartitionTracker::new();
    let mut messages = vec![
        switchyard_tests::memory::MemoryMessage::new(&tracker, 0, "fr").key("eu-fr-1"),
        switchyard_tests::memory::MemoryMessage::new(&tracker, 1, "de").key("eu-de-9"),
        switchyard_tests::memory::MemoryMessage::new(&tracker, 2, "us").key("us-1"),
    ];
    runner.process("in", &mut messages, true);
    drop(messages);

    assert_eq!(europe.texts(), ["fr"]);
    assert_eq!(germany.texts(), ["de"]);
    assert_eq!(audit.texts(), ["de"]);
    assert_eq!(germany.written()[0].key.as_deref(), Some(&b"eu-de-9"[..]));
    assert_eq!(out.texts(), ["us"], "no prefix matched: passed to `to`");
    assert!(dead.written().is_empty());
    assert_eq!(count(&stats.sent), 4);
    assert_eq!(tracker.committable(), Some(3));
}

#[test]
fn an_undeclared_destination_is_dead_lettered_with_its_kind() {
    let (out, dead) = (MemorySink::new("out"), MemorySink::new("dead"));
    let (mut runner, stats) = route(&[(plugins::FAULT_DESTINATION, &[])], &[&out], &[], &dead);
    let tracker = run(&mut runner, &["a", "b"]);

    assert!(out.written().is_empty());
    let dead = dead.written();
    assert_eq!(dead.len(), 2);
    for w in &dead {
        assert_eq!(
            w.header("switchyard-error-kind").as_deref(),
            Some("destination")
        );
        assert!(
            w.header("switchyard-reason")
                .is_some_and(|r| r.contains("nowhere"))
        );
    }
    assert_eq!(count(&stats.failed), 2);
    assert_eq!(tracker.committable(), Some(2));
}

#[test]
fn a_trap_fails_only_the_message_that_caused_it() {
    let (out, dead) = (MemorySink::new("out"), MemorySink::new("dead"));
    let (mut runner, stats) = route(&[(plugins::FAULT_PANIC, &[])], &[&out], &[], &dead);
    let tracker = run(&mut runner, &["a", "b", "panic now", "c", "d"]);

    assert_eq!(
        out.texts(),
        ["a", "b", "c", "d"],
        "the batch-mates pass, in order"
    );
    let dead = dead.written();
    assert_eq!(dead.len(), 1);
    let letter = dead_letter(&dead, "panic now");
    assert_eq!(
        letter.header("switchyard-error-kind").as_deref(),
        Some("trap")
    );
    assert!(
        letter
            .header("switchyard-reason")
            .is_some_and(|r| r.contains("asked to panic")),
        "{letter:?}"
    );
    assert_eq!(count(&stats.failed), 1);
    assert_eq!(tracker.committable(), Some(5));
}

/// A plugin that fails every message is not called again and again (nor rebuilt) for
/// every batch and every half of it: after five batches in a row in which every message
/// failed, its circuit opens and its messages are dead-lettered at once as `unavailable`;
/// after a pause, a batch that works closes it. A poison message among good ones never
/// opens it.
#[test]
fn a_plugin_failing_batch_after_batch_rests_before_it_is_called_again() {
    let (out, dead) = (MemorySink::new("out"), MemorySink::new("dead"));
    let (mut runner, _, plugin_stats) =
        route_with_plugin_stats(&[(plugins::FAULT_PANIC, &[])], &[&out], &[], &dead);
    let kind = |w: &Written| w.header("switchyard-error-kind").unwrap_or_default();
    let kinds = |from: usize| -> Vec<String> { dead.written()[from..].iter().map(kind).collect() };

    // Poison among good messages, batch after batch: culprits found, circuit closed.
    for _ in 0..8 {
        run(&mut runner, &["good", "panic", "good"]);
    }
    assert_eq!(kinds(0), vec!["trap"; 8]);
    assert_eq!(out.texts().len(), 16);
    assert_eq!(plugin_stats[0].circuits_open(), 0);

    // Five batches of nothing but poison: each message tried; then the circuit opens.
    for _ in 0..5 {
        run(&mut runner, &["panic 1", "panic 2", "panic 3", "panic 4"]);
    }
    assert_eq!(kinds(8), vec!["trap"; 20]);
    assert_eq!(plugin_stats[0].circuits_open(), 1);

    // While it rests, a batch is not given to it at all, good messages included.
    let tracker = run(&mut runner, &["panic 5", "good while resting"]);
    assert_eq!(kinds(28), vec!["unavailable"; 2]);
    let resting = dead.written();
    assert!(
        resting[29]
            .header("switchyard-reason")
            .is_some_and(|r| r.contains("not called")),
        "{:?}",
        resting[29]
    );
    assert_eq!(
        tracker.committable(),
        Some(2),
        "dead-lettered, so committed"
    );

    // After its pause, a batch that works closes the circuit.
    let passed = switchyard_tests::wait_until(std::time::Duration::from_secs(10), || {
        run(&mut runner, &["good again"]);
        out.texts().contains(&"good again".to_owned())
    });
    assert!(passed, "the plugin was never called again");
    assert_eq!(plugin_stats[0].circuits_open(), 0);
}

#[test]
fn a_malformed_result_fails_its_messages_with_kind_bad_output() {
    let (out, dead) = (MemorySink::new("out"), MemorySink::new("dead"));
    let (mut runner, _) = route(&[(plugins::FAULT_OUTCOMES, &[])], &[&out], &[], &dead);
    let tracker = run(&mut runner, &["a", "b"]);

    assert!(out.written().is_empty());
    let dead = dead.written();
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter()
            .all(|w| w.header("switchyard-error-kind").as_deref() == Some("bad-output"))
    );
    assert_eq!(tracker.committable(), Some(2));
}

#[test]
fn refused_records_are_dead_lettered_and_a_failed_delivery_holds_commits() {
    let out = MemorySink::with_rules(
        "out",
        &[
            ("big", Verdict::RefuseNow),
            ("late", Verdict::RefuseLater),
            ("lost", Verdict::Fail),
        ],
    );
    let dead = MemorySink::new("dead");
    let (mut runner, stats) = route(&[(plugins::PASSTHROUGH, &[])], &[&out], &[], &dead);
    let tracker = run(
        &mut runner,
        &["ok-0", "big", "late", "ok-3", "lost", "ok-5"],
    );

    assert_eq!(out.texts(), ["ok-0", "ok-3", "ok-5"]);
    let letters: Vec<String> = dead.written().iter().map(Written::text).collect();
    assert_eq!(letters, ["big"], "refused at once: dead-lettered at once");
    assert_eq!(
        tracker.committable(),
        Some(2),
        "the record refused later holds its partition until it is dead-lettered"
    );

    runner.settle_returns();
    let dead = dead.written();
    let late = dead_letter(&dead, "late");
    assert_eq!(
        late.header("switchyard-error-kind").as_deref(),
        Some("produce")
    );
    assert!(
        late.header("switchyard-reason")
            .is_some_and(|r| r.contains("`out`"))
    );
    assert_eq!(count(&stats.dead_lettered), 2);
    assert_eq!(
        tracker.committable(),
        Some(4),
        "commits stop at the record whose delivery failed, to read it again"
    );
    assert!(tracker.stalled());
}

/// Without a dead-letter output, a record an output refuses for good stops its partition's
/// commits there by default (`on_produce_error = "pause"`; the input then reads it again),
/// and nothing after it on its partition is written ahead of it; with `"drop"` it is
/// dropped and counted, and the messages after it are delivered.
#[test]
fn without_a_dead_letter_output_a_refused_record_pauses_or_is_dropped_as_configured() {
    for drop_refused in [false, true] {
        let out = MemorySink::with_rules(
            "out",
            &[("big", Verdict::RefuseNow), ("late", Verdict::RefuseLater)],
        );
        let (mut spec, stats) = spec(&[&out], &[], None);
        spec.drop_refused = drop_refused;
        let (mut runner, _) = runner(spec, &[(plugins::PASSTHROUGH, &[])]);
        let tracker = run(&mut runner, &["ok-0", "big", "ok-2", "late", "ok-4"]);
        runner.settle_returns();
        if drop_refused {
            assert_eq!(out.texts(), ["ok-0", "ok-2", "ok-4"]);
            assert_eq!(tracker.committable(), Some(5), "dropped: committed past");
            assert_eq!(count(&stats.dropped), 2);
            assert!(!tracker.stalled());
        } else {
            // Nothing after the refusal is written ahead of it: it is read again with it.
            assert_eq!(out.texts(), ["ok-0"]);
            assert_eq!(
                tracker.committable(),
                Some(1),
                "stopped at the first refusal"
            );
            assert_eq!(count(&stats.dropped), 0);
            assert!(tracker.stalled());
        }
    }
}

/// A configuration of ZeroMQ inputs and outputs (all bound to fresh ports) and
/// `routes` (name, input, plugin, output).
fn zmq_config(
    inputs: &[&str],
    outputs: &[&str],
    routes: &[(&str, &str, &str, &str)],
    ports: &mut BTreeMap<String, u16>,
) -> String {
    let mut port = |name: &str| *ports.entry(name.to_owned()).or_insert_with(free_port);
    let mut text = String::new();
    for name in inputs {
        text += &format!(
            "[inputs.{name}]\nzmq = {{ socket = \"pull\", bind = \"tcp://127.0.0.1:{}\" }}\n",
            port(name)
        );
    }
    for name in outputs {
        text += &format!(
            "[outputs.{name}]\nzmq = {{ socket = \"push\", bind = \"tcp://127.0.0.1:{}\" }}\n",
            port(name)
        );
    }
    for (name, from, plugin, to) in routes {
        text += &format!(
            "[[routes]]\nname = \"{name}\"\nfrom = [\"{from}\"]\nplugins = [{{ path = \"{plugin}\" }}]\nto = [\"{to}\"]\n"
        );
    }
    text
}

fn start(file: &Path) -> Router {
    let (config, text) = switchyard::config::load(file).expect("a valid configuration");
    Router::start(file, RouterOptions::default(), config, &text).expect("the router starts")
}

fn sorted(names: &[String]) -> Vec<&str> {
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    names.sort_unstable();
    names
}

#[test]
fn a_reload_keeps_starts_and_stops_inputs_and_opens_and_closes_outputs() {
    let scratch = Scratch::new("core-reload");
    let mut ports = BTreeMap::new();
    let pass = plugins::PASSTHROUGH;
    let first = zmq_config(
        &["a", "b"],
        &["x", "y"],
        &[("one", "a", pass, "x"), ("two", "b", pass, "y")],
        &mut ports,
    );
    let file = scratch.write("router.toml", &first);
    let mut router = start(&file);
    let before = router.handle().running().expect("running");
    assert_eq!(before.generation, 1);

    let second = zmq_config(
        &["a", "c"],
        &["x", "z"],
        &[("one", "a", pass, "x"), ("three", "c", pass, "z")],
        &mut ports,
    );
    std::fs::write(&file, second).expect("write the new configuration");
    let report = router.reload("test").expect("the reload is applied");
    assert!(!report.unchanged);
    assert_eq!(report.generation, 2);
    assert_eq!(sorted(&report.inputs.kept), ["a"]);
    assert_eq!(sorted(&report.inputs.started), ["c"]);
    assert_eq!(sorted(&report.inputs.stopped), ["b"]);
    assert_eq!(sorted(&report.outputs.opened), ["z"]);
    assert_eq!(sorted(&report.outputs.closed), ["y"]);
    let running = router.handle().running().expect("running");
    let routes: Vec<&str> = running.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(routes, ["one", "three"]);

    // The same file again changes nothing.
    let again = router.reload("test").expect("an unchanged reload");
    assert!(again.unchanged);
    assert_eq!(again.generation, 2);
    router.stop();
}

#[test]
fn a_refused_plan_changes_nothing() {
    let scratch = Scratch::new("core-refused");
    let mut ports = BTreeMap::new();
    let pass = plugins::PASSTHROUGH;
    let good = zmq_config(&["a"], &["x"], &[("one", "a", pass, "x")], &mut ports);
    let file = scratch.write("router.toml", &good);
    let mut router = start(&file);
    let handle = router.handle();
    let before = handle.running().expect("running");
    let series_before = handle.metrics.render(None);

    // A new route whose plugin refuses to start, a new input and a new output.
    let bad = zmq_config(
        &["a", "b"],
        &["x", "y"],
        &[
            ("one", "a", pass, "x"),
            ("doomed", "b", plugins::FAULT_INIT, "y"),
        ],
        &mut ports,
    );
    std::fs::write(&file, bad).expect("write the bad configuration");
    match router.reload("test") {
        Err(ReloadError::Build(why)) => assert!(why.contains("fault_init"), "{why}"),
        other => panic!("expected a refused build, got {other:?}"),
    }
    let after = handle.running().expect("running");
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.version, before.version);
    let routes: Vec<&str> = after.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(routes, ["one"]);
    let series_after = handle.metrics.render(None);
    assert!(
        !series_after.contains("doomed") && !series_after.contains("output=\"y\""),
        "the refused plan left series behind:\n{series_after}"
    );
    assert_eq!(
        series_before
            .lines()
            .filter(|l| l.contains("route="))
            .count(),
        series_after
            .lines()
            .filter(|l| l.contains("route="))
            .count()
    );
    // The port the refused plan would have bound is still free.
    let port = ports["b"];
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    router.stop();
}
