//! The ZeroMQ gateway: a ROUTER input with `reply = "ack"`, driven by zmq crate clients on
//! both brokers. A DEALER, a REQ client and a pipelining DEALER get one answer per
//! request, in order, whose offsets hold exactly what they sent; every status is produced
//! and read back; a plugin answers requests itself, after the acknowledgement or at once;
//! a client that retries until `ok` loses nothing when the router is killed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_tests::admin::metric;
use switchyard_tests::broker::{Broker, BrokerKind};
use switchyard_tests::kafka::read_all;
use switchyard_tests::procs::{Proc, Scratch, router_env};
use switchyard_tests::{free_port, on_both_brokers, plugins, wait_until, zmq_connect, zmq_recv};

const DEADLINE: Duration = Duration::from_secs(120);

on_both_brokers!(
    request_and_reply,
    every_status,
    a_plugin_computes_the_reply,
    a_killed_router_loses_nothing_a_client_saw_ok
);

/// A gateway on `port` writing to `requests` through `fault_panic` (a payload starting
/// with `panic` traps) and `json_filter` (`amount` ≥ 100 passes, less is dropped, not JSON
/// is rejected), dead letters to `dlq`; `extra` adds keys to the input's `zmq` table.
fn config(bootstrap: &str, port: u16, extra: &str) -> String {
    format!(
        r#"
[kafka.main]
bootstrap = "{bootstrap}"

[inputs.gateway]
zmq = {{ socket = "router", bind = "tcp://127.0.0.1:{port}", reply = "ack"{extra} }}

[outputs.requests]
kafka = {{ cluster = "main", topic = "requests" }}

[outputs.dlq]
kafka = {{ cluster = "main", topic = "dlq" }}

[[routes]]
name = "requests"
from = ["gateway"]
plugins = [
  {{ path = "{panic}" }},
  {{ path = "{filter}", config = {{ field = "amount", op = "gte", value = "100" }} }},
]
to = ["requests"]
dead_letter = "dlq"
"#,
        panic = plugins::FAULT_PANIC,
        filter = plugins::JSON_FILTER,
    )
}

/// Starts a router and waits until it runs.
fn start(config: &Path, log: &Path, admin: &str) -> Proc {
    let proc = router_env(
        config,
        log,
        &[("SWITCHYARD_ADMIN_LISTEN".into(), admin.into())],
    );
    assert!(
        wait_until(DEADLINE, || std::fs::read_to_string(log)
            .is_ok_and(|l| l.contains("switchyard running"))),
        "the router did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    proc
}

/// The JSON answer in the last frame of `frames`.
fn body(frames: &[Vec<u8>]) -> Value {
    serde_json::from_slice(frames.last().expect("an answer has a body")).expect("JSON")
}

/// Sends `[id, "", payload]` on a DEALER and returns the answer's body, checking the id
/// and delimiter came back.
fn ask(dealer: &zmq::Socket, id: &str, payload: &str) -> Value {
    dealer
        .send_multipart([id.as_bytes(), b"", payload.as_bytes()], 0)
        .expect("send");
    let frames = zmq_recv(dealer, DEADLINE).unwrap_or_else(|| panic!("no answer to {id}"));
    assert_eq!(frames.len(), 3, "{id}: [id, \"\", body]");
    assert_eq!(frames[0], id.as_bytes(), "the request id comes back");
    assert!(frames[1].is_empty());
    body(&frames)
}

/// The (partition, offset) of an `ok` answer's one record in `requests`.
fn stored(answer: &Value) -> (i32, i64) {
    assert_eq!(answer["status"], "ok", "{answer}");
    let record = &answer["records"][0];
    assert_eq!(record["output"], "requests", "{answer}");
    assert_eq!(record["topic"], "requests", "{answer}");
    (
        i32::try_from(record["partition"].as_i64().expect("a partition")).expect("i32"),
        record["offset"].as_i64().expect("an offset"),
    )
}

fn request_and_reply(kind: BrokerKind) {
    const PIPELINED: usize = 10_000;
    const LOCK_STEP: usize = 20;
    let broker = Broker::start(kind, &["requests:4", "dlq:1"]);
    let scratch = Scratch::new("gateway");
    let port = free_port();
    let cfg = scratch.write(
        "router.toml",
        &config(broker.bootstrap(), port, ", max_in_flight = 10000"),
    );
    let mut router = start(&cfg, &scratch.path("router.log"), "127.0.0.1:0");
    let ctx = zmq::Context::new();
    // Sent payload by where the answers say Kafka stored it.
    let mut sent: BTreeMap<(i32, i64), String> = BTreeMap::new();

    // The simplest client: a DEALER sends one frame and reads one frame.
    let dealer = zmq_connect(&ctx, zmq::DEALER, port);
    let hello = r#"{"amount": 100, "text": "Hello, ZeroMQ!"}"#;
    dealer.send(hello, 0).expect("send");
    let frames = zmq_recv(&dealer, DEADLINE).expect("an answer");
    assert_eq!(frames.len(), 1, "a plain DEALER request gets one frame");
    sent.insert(stored(&body(&frames)), hello.to_owned());

    // A REQ client in lock-step.
    let req = zmq_connect(&ctx, zmq::REQ, port);
    for i in 0..LOCK_STEP {
        let payload = format!(r#"{{"amount": 200, "req": {i}}}"#);
        req.send(payload.as_str(), 0).expect("send");
        let frames = zmq_recv(&req, DEADLINE).expect("an answer");
        assert_eq!(frames.len(), 1, "REQ strips the delimiter");
        sent.insert(stored(&body(&frames)), payload);
    }

    // One DEALER with every request in flight at once, each with its id.
    let pipelined = ctx.socket(zmq::DEALER).expect("socket");
    pipelined.set_sndhwm(0).expect("sndhwm");
    pipelined.set_rcvhwm(0).expect("rcvhwm");
    pipelined
        .connect(&format!("tcp://127.0.0.1:{port}"))
        .expect("connect");
    let payload = |i: usize| format!(r#"{{"amount": 300, "seq": {i}}}"#);
    for i in 0..PIPELINED {
        pipelined
            .send_multipart([i.to_string().as_bytes(), b"", payload(i).as_bytes()], 0)
            .expect("send");
    }
    for i in 0..PIPELINED {
        let frames = zmq_recv(&pipelined, DEADLINE).unwrap_or_else(|| panic!("no answer {i}"));
        assert_eq!(
            frames[0],
            i.to_string().as_bytes(),
            "answers come in request order"
        );
        let at = stored(&body(&frames));
        assert!(
            sent.insert(at, payload(i)).is_none(),
            "two answers name {at:?}"
        );
    }
    assert!(
        zmq_recv(&pipelined, Duration::from_millis(300)).is_none(),
        "each request is answered once"
    );

    // A consumer finds exactly those records where the answers said.
    let records = read_all(broker.bootstrap(), "requests", Duration::from_secs(3));
    let found: BTreeMap<(i32, i64), String> = records
        .into_iter()
        .map(|r| ((r.partition, r.offset), r.payload))
        .collect();
    assert_eq!(found.len(), 1 + LOCK_STEP + PIPELINED);
    assert!(found == sent, "the topic holds what the answers say");
    assert!(router.is_running(), "the router is alive");
}

fn every_status(kind: BrokerKind) {
    let broker = Broker::start(kind, &["requests:4", "dlq:1"]);
    let scratch = Scratch::new("gateway-statuses");
    let port = free_port();
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = scratch.write(
        "router.toml",
        &config(
            broker.bootstrap(),
            port,
            ", max_in_flight = 2, reply_timeout_ms = 2000, dedup_window = 100",
        ),
    );
    let mut router = start(&cfg, &scratch.path("router.log"), &admin);
    let ctx = zmq::Context::new();
    let dealer = zmq_connect(&ctx, zmq::DEALER, port);

    let ok = ask(&dealer, "ok-1", r#"{"amount": 150}"#);
    let at = stored(&ok);
    assert_eq!(ok.get("duplicate"), None);
    let again = ask(&dealer, "ok-1", r#"{"amount": 150}"#);
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(stored(&again), at, "a retry gets the first result");

    let dropped = ask(&dealer, "drop-1", r#"{"amount": 5}"#);
    assert_eq!(dropped["status"], "dropped", "{dropped}");
    assert_eq!(dropped["reason"], "a plugin dropped it");

    let rejected = ask(&dealer, "reject-1", "not json");
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert!(
        rejected["plugin"]
            .as_str()
            .is_some_and(|p| p.contains("json_filter")),
        "{rejected}"
    );
    assert!(
        rejected["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{rejected}"
    );
    assert_eq!(rejected["dead_letter"]["topic"], "dlq", "{rejected}");

    let failed = ask(&dealer, "fail-1", "panic now");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["kind"], "trap", "{failed}");
    assert_eq!(failed["dead_letter"]["topic"], "dlq", "{failed}");

    dealer
        .send_multipart([&b"bad-1"[..], b"", b"one", b"two"], 0)
        .expect("send");
    let malformed = body(&zmq_recv(&dealer, DEADLINE).expect("an answer"));
    assert_eq!(malformed["status"], "failed", "{malformed}");
    assert_eq!(malformed["error"]["kind"], "malformed", "{malformed}");

    // The broker stops answering: two requests wait, a third is refused at once, the two
    // are answered `timeout` at the reply timeout, and a client that went away meanwhile
    // is counted.
    broker.pause();
    // Closing with a linger sends the request first, then disconnects.
    let gone = ctx.socket(zmq::DEALER).expect("socket");
    gone.set_linger(1000).expect("linger");
    gone.connect(&format!("tcp://127.0.0.1:{port}"))
        .expect("connect");
    gone.send(r#"{"amount": 100, "client": "gone"}"#, 0)
        .expect("send");
    drop(gone);
    for id in ["slow-1", "slow-2", "slow-3"] {
        dealer
            .send_multipart([id.as_bytes(), b"", br#"{"amount": 100}"#], 0)
            .expect("send");
    }
    let paused = Instant::now();
    let mut answers = Vec::new();
    while answers.len() < 3 {
        let frames = zmq_recv(&dealer, DEADLINE).expect("an answer while the broker is paused");
        answers.push((
            String::from_utf8_lossy(&frames[0]).into_owned(),
            body(&frames)["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    let waited = paused.elapsed();
    assert_eq!(
        answers,
        [
            ("slow-3".to_owned(), "busy".to_owned()),
            ("slow-1".to_owned(), "timeout".to_owned()),
            ("slow-2".to_owned(), "timeout".to_owned()),
        ],
        "busy at once, then the two in flight time out in order"
    );
    assert!(
        waited >= Duration::from_millis(1900),
        "answered `timeout` after {waited:?}, before the reply timeout"
    );
    assert!(
        wait_until(DEADLINE, || metric(
            &admin,
            r#"switchyard_zmq_replies_unroutable_total{input="gateway"}"#
        ) >= 1.0),
        "the answer to a client that went away is counted"
    );
    broker.resume();

    let after = ask(&dealer, "after-1", r#"{"amount": 100}"#);
    stored(&after);
    for (status, n) in [
        ("ok", 2.0),
        ("busy", 1.0),
        ("timeout", 2.0),
        ("failed", 2.0),
    ] {
        let series =
            format!(r#"switchyard_zmq_replies_total{{input="gateway",status="{status}"}}"#);
        assert!(metric(&admin, &series) >= n, "{series}");
    }
    assert_eq!(
        metric(
            &admin,
            r#"switchyard_zmq_replies_duplicate_total{input="gateway"}"#
        ),
        1.0
    );

    let dead = read_all(broker.bootstrap(), "dlq", Duration::from_secs(2));
    let kinds: Vec<_> = dead
        .iter()
        .map(|r| r.header("switchyard-error-kind").unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        ["reject", "trap"],
        "what reached the dead-letter topic"
    );
    assert!(router.is_running(), "the router is alive");
}

/// `price_quote` answers requests on two gateways, one replying once the order is
/// recorded and one at once, and is given a message from a PULL input, which cannot be
/// answered.
fn a_plugin_computes_the_reply(kind: BrokerKind) {
    let broker = Broker::start(kind, &["requests:4", "dlq:1"]);
    let scratch = Scratch::new("gateway-plugin");
    let (acked, immediate, pull) = (free_port(), free_port(), free_port());
    let quote = format!(
        r#"[{{ path = "{}", config = {{ "price.apple" = "0.5" }} }}]"#,
        plugins::PRICE_QUOTE
    );
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[kafka.main]
bootstrap = "{bootstrap}"

[inputs.acked]
zmq = {{ socket = "router", bind = "tcp://127.0.0.1:{acked}", reply = "ack" }}
[inputs.immediate]
zmq = {{ socket = "router", bind = "tcp://127.0.0.1:{immediate}", reply = "ack" }}
[inputs.pull]
zmq = {{ socket = "pull", bind = "tcp://127.0.0.1:{pull}" }}

[outputs.requests]
kafka = {{ cluster = "main", topic = "requests" }}
[outputs.dlq]
kafka = {{ cluster = "main", topic = "dlq" }}

[[routes]]
name = "acked"
from = ["acked", "pull"]
plugins = {quote}
to = ["requests"]
dead_letter = "dlq"

[[routes]]
name = "immediate"
from = ["immediate"]
plugins = {quote}
to = ["requests"]
dead_letter = "dlq"
reply_when = "immediate"
"#,
            bootstrap = broker.bootstrap(),
        ),
    );
    let mut router = start(&cfg, &scratch.path("router.log"), "127.0.0.1:0");
    let ctx = zmq::Context::new();
    let dealer = zmq_connect(&ctx, zmq::DEALER, acked);

    let answer = ask(&dealer, "q-1", r#"{"item": "apple", "qty": 3}"#);
    assert_eq!(
        answer,
        serde_json::json!({"item": "apple", "qty": 3, "total": 1.5}),
        "the plugin's answer, not a status"
    );
    // Answered after the acknowledgement: the order is in the topic already.
    let orders = read_all(broker.bootstrap(), "requests", Duration::from_secs(1));
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].header("quote-total"), Some("1.5"));

    let rejected = ask(&dealer, "q-2", r#"{"item": "plum", "qty": 1}"#);
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert_eq!(rejected["reason"], "no price for `plum`");

    // With the broker frozen, the immediate route answers and the acknowledged one waits.
    broker.pause();
    let fast = zmq_connect(&ctx, zmq::DEALER, immediate);
    fast.send(r#"{"item": "apple", "qty": 2}"#, 0)
        .expect("send");
    dealer
        .send_multipart([&b"q-3"[..], b"", br#"{"item": "apple", "qty": 4}"#], 0)
        .expect("send");
    let now = zmq_recv(&fast, DEADLINE).expect("an immediate answer while the broker is frozen");
    assert_eq!(body(&now)["total"], 1.0);
    assert!(
        zmq_recv(&dealer, Duration::from_millis(1500)).is_none(),
        "an acknowledged answer waits for the broker"
    );
    broker.resume();
    let later = zmq_recv(&dealer, DEADLINE).expect("answered once the broker is back");
    assert_eq!(body(&later)["total"], 2.0);

    // A message no client waits for cannot be answered: it is dead-lettered as `reply`.
    let push = zmq_connect(&ctx, zmq::PUSH, pull);
    push.send(r#"{"item": "apple", "qty": 1}"#, 0)
        .expect("send");
    let mut dead = Vec::new();
    assert!(
        wait_until(DEADLINE, || {
            dead = read_all(broker.bootstrap(), "dlq", Duration::from_millis(300));
            dead.iter()
                .any(|r| r.header("switchyard-error-kind") == Some("reply"))
        }),
        "dead letters: {dead:?}"
    );
    assert!(router.is_running(), "the router is alive");
}

fn a_killed_router_loses_nothing_a_client_saw_ok(kind: BrokerKind) {
    const N: usize = 3_000;
    const WINDOW: usize = 100;
    const RETRY_AFTER: Duration = Duration::from_secs(3);
    let broker = Broker::start(kind, &["requests:4", "dlq:1"]);
    let scratch = Scratch::new("gateway-kill");
    let port = free_port();
    let cfg = scratch.write(
        "router.toml",
        &config(broker.bootstrap(), port, ", dedup_window = 100000"),
    );
    let first = start(&cfg, &scratch.path("first.log"), "127.0.0.1:0");
    let oks = Arc::new(AtomicUsize::new(0));
    let payload = |i: usize| format!(r#"{{"amount": 100, "seq": {i}}}"#);

    // A client that sends every request until it is answered `ok`, with `WINDOW` in flight.
    let client = {
        let oks = Arc::clone(&oks);
        std::thread::spawn(move || {
            let ctx = zmq::Context::new();
            let dealer = zmq_connect(&ctx, zmq::DEALER, port);
            let mut answered: HashMap<usize, (i32, i64)> = HashMap::new();
            let mut in_flight: BTreeMap<usize, Instant> = BTreeMap::new();
            let mut next = 0;
            let end = Instant::now() + Duration::from_secs(240);
            let send = |i: usize| {
                dealer
                    .send_multipart([i.to_string().as_bytes(), b"", payload(i).as_bytes()], 0)
                    .expect("send");
            };
            while answered.len() < N && Instant::now() < end {
                while next < N && in_flight.len() < WINDOW {
                    send(next);
                    in_flight.insert(next, Instant::now());
                    next += 1;
                }
                if let Some(frames) = zmq_recv(&dealer, Duration::from_millis(100)) {
                    let i: usize = String::from_utf8_lossy(&frames[0]).parse().expect("an id");
                    let answer = body(&frames);
                    if answer["status"] == "ok" {
                        in_flight.remove(&i);
                        answered.entry(i).or_insert_with(|| stored(&answer));
                        oks.store(answered.len(), Ordering::Relaxed);
                    } else if in_flight.contains_key(&i) {
                        send(i);
                        in_flight.insert(i, Instant::now());
                    }
                }
                for (i, sent) in in_flight.iter_mut() {
                    if sent.elapsed() >= RETRY_AFTER {
                        send(*i);
                        *sent = Instant::now();
                    }
                }
            }
            answered
        })
    };

    assert!(
        wait_until(DEADLINE, || oks.load(Ordering::Relaxed) >= N / 3),
        "the client makes progress"
    );
    first.signal("KILL");
    drop(first);
    let second = start(&cfg, &scratch.path("second.log"), "127.0.0.1:0");
    let answered = client.join().expect("the client finishes");
    assert_eq!(
        answered.len(),
        N,
        "every request is answered `ok` in the end"
    );

    let records = read_all(broker.bootstrap(), "requests", Duration::from_secs(3));
    let found: HashMap<(i32, i64), &str> = records
        .iter()
        .map(|r| ((r.partition, r.offset), r.payload.as_str()))
        .collect();
    for (i, at) in &answered {
        assert_eq!(
            found.get(at).copied(),
            Some(payload(*i).as_str()),
            "request {i} was answered `ok` at {at:?}"
        );
    }
    println!(
        "{kind:?}: {} records for {N} requests ({} written twice, by retries across the kill)",
        records.len(),
        records.len() - N
    );
    drop(second);
}
