//! Every plugin in `plugins/` through the real runtime: the examples' behaviour, and each
//! fault fixture's classified error with the host still working afterwards.

use std::time::{Duration, Instant};

use switchyard::plugin::{ErrorKind, PluginError, PluginInstance, PluginLimits};
use switchyard_abi::{Outcome, Output};
use switchyard_tests::{batch, instance, load, owned, plugins, process, runtime};

/// Fails the build when a plugin in `plugins/` has no test function named after it.
macro_rules! assert_test_exists {
    ($name:ident) => {
        const _: fn() = $name;
    };
}
switchyard_tests::foreach_plugin!(assert_test_exists);

fn emitted(outcome: &Outcome) -> &[Output] {
    match outcome {
        Outcome::Emit(outputs) => outputs,
        other => panic!("expected emit, got {other:?}"),
    }
}

#[test]
fn passthrough() {
    let mut p = instance(plugins::PASSTHROUGH, &[]);
    let out = process(&mut p, &[(Some("k"), "a", &[("h", "v")]), (None, "", &[])]);
    assert_eq!(out, vec![Outcome::Pass, Outcome::Pass]);
    let empty = p.process(&batch(&[])).expect("empty batch");
    assert!(empty.is_empty());
}

/// A component built for contract 0.1.0 (the passthrough with its interface names set back
/// to 0.1.0, bytes of equal length) loads and runs on this host of 0.1.2, which gives it
/// batches of version 1 (null values as empty ones), the only version it reads.
#[test]
fn a_plugin_built_for_contract_0_1_0_still_loads() {
    let mut wasm = std::fs::read(plugins::PASSTHROUGH).expect("read the passthrough");
    let mut replaced = 0;
    for name in [
        &b"switchyard:plugin/host@0.1.2"[..],
        b"switchyard:plugin/handler@0.1.2",
    ] {
        let mut at = 0;
        while let Some(i) = wasm[at..].windows(name.len()).position(|w| w == name) {
            let end = at + i + name.len();
            wasm[end - 1] = b'0';
            replaced += 1;
            at = end;
        }
    }
    assert!(replaced >= 2, "the component names its imports and exports");
    let dir = tempfile::tempdir().expect("a scratch directory");
    let old = dir.path().join("passthrough-0.1.0.wasm");
    std::fs::write(&old, &wasm).expect("write");
    let loaded = load(
        &runtime(),
        &old.display().to_string(),
        PluginLimits::default(),
    );
    assert_eq!(loaded.batch_version(), switchyard_abi::VERSION);
    let current = load(&runtime(), plugins::PASSTHROUGH, PluginLimits::default());
    assert_eq!(current.batch_version(), switchyard_abi::BATCH_VERSION_NULLS);
    let mut p = PluginInstance::new(loaded, Vec::new()).expect("init");
    assert_eq!(process(&mut p, &[(None, "a", &[])]), vec![Outcome::Pass]);
}

#[test]
fn json_filter() {
    let mut p = instance(
        plugins::JSON_FILTER,
        &[("field", "order.amount"), ("op", "gte"), ("value", "100")],
    );
    let out = process(
        &mut p,
        &[
            (None, r#"{"order": {"amount": 250}}"#, &[]),
            (None, r#"{"order": {"amount": 40}}"#, &[]),
            (None, r#"{"order": {"amount": 100.0}}"#, &[]),
            (None, "not json", &[]),
            (None, r#"{"order": {}}"#, &[]),
        ],
    );
    assert_eq!(out[..3], [Outcome::Pass, Outcome::Drop, Outcome::Pass]);
    assert!(matches!(&out[3], Outcome::Reject(r) if r.starts_with("payload is not JSON")));
    assert_eq!(out[4], Outcome::Drop);
    assert_eq!(p.counters().get("filtered_out"), Some(&2));
}

#[test]
fn price_quote() {
    let mut p = instance(plugins::PRICE_QUOTE, &[("price.apple", "0.5")]);
    let out = process(
        &mut p,
        &[
            (Some("c-1"), r#"{"item": "apple", "qty": 4}"#, &[]),
            (None, r#"{"item": "kiwi", "qty": 1}"#, &[]),
        ],
    );
    let Outcome::Reply(reply) = &out[0] else {
        panic!("expected a reply, got {:?}", out[0]);
    };
    assert_eq!(reply.payload, br#"{"item":"apple","qty":4,"total":2.0}"#);
    assert_eq!(reply.emit.len(), 1, "the order is written besides");
    assert_eq!(reply.emit[0].key.as_deref(), Some(&b"c-1"[..]));
    assert_eq!(out[1], Outcome::Reject("no price for `kiwi`".into()));
    assert_eq!(p.counters().get("quoted"), Some(&1));
}

#[test]
fn redact() {
    let mut p = instance(plugins::REDACT, &[("fields", "card.number,email")]);
    let out = process(
        &mut p,
        &[
            (
                Some("c-1"),
                r#"{"card":{"number":"4111"},"email":"a@b.c","name":"Ada"}"#,
                &[("region", "eu")],
            ),
            (Some("c-2"), r#"{"name":"Bob"}"#, &[]),
        ],
    );
    let o = &emitted(&out[0])[0];
    let doc: serde_json::Value = serde_json::from_slice(o.payload_bytes()).expect("json");
    assert_eq!(
        doc,
        serde_json::json!({"card":{"number":"***"},"email":"***","name":"Ada"})
    );
    assert_eq!(o.key.as_deref(), Some(&b"c-1"[..]));
    assert_eq!(o.timestamp, Some(1_700_000_000_000));
    assert_eq!(
        o.headers,
        vec![
            ("region".to_owned(), Some(b"eu".to_vec())),
            (
                "switchyard-redacted".to_owned(),
                Some(b"card.number,email".to_vec())
            )
        ]
    );
    assert_eq!(out[1], Outcome::Pass);
}

#[test]
fn key_router() {
    let mut p = instance(
        plugins::KEY_ROUTER,
        &[
            ("by", "key-prefix"),
            ("to.eu-", "europe"),
            ("to.eu-de-", "germany,audit"),
        ],
    );
    let out = process(
        &mut p,
        &[
            (Some("eu-fr-1"), "1", &[]),
            (Some("eu-de-2"), "2", &[("trace", "t")]),
            (Some("us-3"), "3", &[]),
        ],
    );
    let dests = |o: &Outcome| -> Vec<Option<String>> {
        emitted(o).iter().map(|m| m.destination.clone()).collect()
    };
    assert_eq!(dests(&out[0]), [Some("europe".to_owned())]);
    assert_eq!(
        dests(&out[1]),
        [Some("germany".to_owned()), Some("audit".to_owned())]
    );
    for o in emitted(&out[1]) {
        assert_eq!(o.payload_bytes(), b"2");
        assert_eq!(o.headers, vec![("trace".to_owned(), Some(b"t".to_vec()))]);
    }
    assert_eq!(out[2], Outcome::Pass);
}

/// Asserts that `p` still processes a good batch after a failure, on a rebuilt instance.
fn still_works(p: &mut PluginInstance, rebuilds: u64) {
    let out = process(p, &[(None, "fine", &[])]);
    assert_eq!(out, vec![Outcome::Pass]);
    assert_eq!(p.rebuilds(), rebuilds);
}

#[test]
fn fault_loop() {
    let runtime = runtime();
    let tick = runtime.options().epoch_tick;
    let timeout = Duration::from_millis(100);
    let limits = PluginLimits {
        timeout,
        ..PluginLimits::default()
    };
    let mut p =
        PluginInstance::new(load(&runtime, plugins::FAULT_LOOP, limits), vec![]).expect("init");
    let started = Instant::now();
    let err = p
        .process(&batch(&[(None, "ok", &[]), (None, "loop forever", &[])]))
        .expect_err("the loop is interrupted");
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(elapsed >= timeout, "interrupted early, after {elapsed:?}");
    // Deadline plus one tick, plus scheduling slack for a busy 2-core machine.
    let bound = timeout + tick + Duration::from_millis(250);
    assert!(
        elapsed <= bound,
        "interrupted after {elapsed:?}, bound {bound:?}"
    );
    still_works(&mut p, 1);
}

#[test]
fn fault_alloc() {
    let runtime = runtime();
    let limit = 16 << 20;
    let limits = PluginLimits {
        memory_bytes: limit,
        ..PluginLimits::default()
    };
    let mut p =
        PluginInstance::new(load(&runtime, plugins::FAULT_ALLOC, limits), vec![]).expect("init");
    let err = p
        .process(&batch(&[(None, "alloc", &[])]))
        .expect_err("capped");
    assert_eq!(err.kind(), ErrorKind::Memory, "{err}");
    assert!(matches!(err, PluginError::Memory { limit: l } if l == limit));
    let peak = p.peak_memory();
    assert!(
        peak <= limit && peak > limit / 2,
        "peak {peak} for a limit of {limit}"
    );
    still_works(&mut p, 1);
}

#[test]
fn fault_recursion() {
    let mut p = instance(plugins::FAULT_RECURSION, &[]);
    let err = p
        .process(&batch(&[(None, "recurse", &[])]))
        .expect_err("overflow");
    assert_eq!(err.kind(), ErrorKind::Stack, "{err}");
    still_works(&mut p, 1);
}

#[test]
fn fault_panic() {
    let mut p = instance(plugins::FAULT_PANIC, &[]);
    for round in 1..=3 {
        let err = p
            .process(&batch(&[(None, "panic", &[])]))
            .expect_err("panics");
        assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
        let text = err.to_string();
        assert!(text.contains("fault_panic was asked to panic"), "{text}");
        still_works(&mut p, round);
    }
}

#[test]
fn fault_init() {
    let runtime = runtime();
    let plugin = load(&runtime, plugins::FAULT_INIT, PluginLimits::default());
    let err = PluginInstance::new(plugin, owned(&[("any", "thing")]))
        .err()
        .expect("refused");
    assert_eq!(err.kind(), ErrorKind::Init);
    assert_eq!(
        err.to_string(),
        "init failed: fault_init refuses every configuration"
    );
}

#[test]
fn fault_outcomes() {
    let mut p = instance(plugins::FAULT_OUTCOMES, &[]);
    let err = p
        .process(&batch(&[(None, "a", &[]), (None, "b", &[])]))
        .expect_err("bad count");
    assert_eq!(err.kind(), ErrorKind::BadOutput, "{err}");
    assert!(
        err.to_string().contains("3 outcomes for a batch of 2"),
        "{err}"
    );
}

#[test]
fn fault_destination() {
    // The runtime returns what the plugin said; the caller checks destinations against the
    // route (see the CLI test for the classified `destination` error).
    let mut p = instance(plugins::FAULT_DESTINATION, &[]);
    let out = process(&mut p, &[(Some("k"), "one", &[])]);
    assert_eq!(emitted(&out[0])[0].destination.as_deref(), Some("nowhere"));
}

#[test]
fn failures_in_one_instance_leave_others_alone() {
    let runtime = runtime();
    let limits = PluginLimits {
        timeout: Duration::from_millis(50),
        ..PluginLimits::default()
    };
    let looping = load(&runtime, plugins::FAULT_LOOP, limits);
    let mut bad = PluginInstance::new(looping, vec![]).expect("init");
    let mut good =
        PluginInstance::new(load(&runtime, plugins::PASSTHROUGH, limits), vec![]).expect("init");
    let worker = std::thread::spawn(move || {
        for _ in 0..5 {
            let err = bad
                .process(&batch(&[(None, "loop", &[])]))
                .expect_err("interrupted");
            assert_eq!(err.kind(), ErrorKind::Timeout);
        }
    });
    let mut passed = 0;
    while !worker.is_finished() {
        passed += process(&mut good, &[(None, "x", &[])]).len();
    }
    worker.join().expect("worker");
    assert!(passed > 0);
    assert_eq!(good.rebuilds(), 0);
}

#[test]
fn sandbox_probe() {
    let mut p = instance(plugins::SANDBOX_PROBE, &[]);
    let out = process(
        &mut p,
        &[(None, "/etc/hostname", &[]), (None, "Cargo.toml", &[])],
    );
    for outcome in out {
        let Outcome::Emit(report) = outcome else {
            panic!("expected a report, got {outcome:?}")
        };
        assert_eq!(
            String::from_utf8_lossy(report[0].payload_bytes()),
            "env=0 args=0 file=denied dir=denied tcp=denied listen=denied udp=denied"
        );
    }
}

#[test]
fn version_tag() {
    let mut p = instance(plugins::VERSION_TAG, &[]);
    let out = process(&mut p, &[(Some("k"), "a", &[("h", "v")])]);
    let outputs = emitted(&out[0]);
    assert_eq!(outputs[0].payload_bytes(), b"a");
    assert_eq!(outputs[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(
        outputs[0].headers,
        vec![
            ("h".to_owned(), Some(b"v".to_vec())),
            ("switchyard-version".to_owned(), Some(b"v00000001".to_vec()))
        ]
    );
}
