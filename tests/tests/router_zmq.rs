//! ZeroMQ inputs and outputs through the real router: PUSH/PULL both ways, PUB to a
//! subscriber, the envelope that carries Kafka metadata across a ZeroMQ hop.

use std::time::{Duration, Instant};

use switchyard_tests::admin::metric;
use switchyard_tests::broker::{Broker, BrokerKind};
use switchyard_tests::chaos::RssWatch;
use switchyard_tests::kafka::{Input, produce, read_topic};
use switchyard_tests::procs::{Proc, Scratch, router, router_with_admin};
use switchyard_tests::{
    free_port, plugins, wait_until, zmq_connect, zmq_recv, zmq_relay_config, zmq_relay_config_with,
};

const DEADLINE: Duration = Duration::from_secs(60);
/// How long a warm-up read waits for a message.
const MOMENT: Duration = Duration::from_millis(100);

/// Receives `n` multipart messages from `socket`, or fails after the deadline.
fn receive(socket: &zmq::Socket, n: usize) -> Vec<Vec<Vec<u8>>> {
    socket.set_rcvtimeo(100).expect("rcvtimeo");
    let end = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < end {
        match socket.recv_multipart(0) {
            Ok(frames) => got.push(frames),
            Err(zmq::Error::EAGAIN) => {}
            Err(e) => panic!("receive: {e}"),
        }
    }
    got
}

fn stop(mut proc: Proc) {
    assert!(proc.is_running(), "the router died");
    proc.signal("TERM");
    let status = proc
        .wait_for_exit(Duration::from_secs(20))
        .expect("router exits");
    assert!(status.success(), "exit status {status}");
}

fn zmq_push_to_kafka(kind: BrokerKind) {
    let broker = Broker::start(kind, &["ticks:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let port = free_port();
    let scratch = Scratch::new("z2k");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[kafka.main]
bootstrap = "{bootstrap}"
[inputs.feed]
zmq = {{ socket = "pull", bind = ["tcp://127.0.0.1:{port}"] }}
[outputs.ticks]
kafka = {{ cluster = "main", topic = "ticks" }}
[[routes]]
name = "ticks"
from = ["feed"]
plugins = [{{ path = "{passthrough}" }}]
to = ["ticks"]
"#,
            passthrough = plugins::PASSTHROUGH
        ),
    );
    let proc = router(&cfg, &scratch.path("router.log"));
    let ctx = zmq::Context::new();
    let push = zmq_connect(&ctx, zmq::PUSH, port);
    for i in 0..100 {
        push.send(format!("tick {i}").as_bytes(), 0).expect("send");
    }
    let got = read_topic(&bootstrap, "ticks", 100, DEADLINE);
    let payloads: Vec<String> = got.iter().map(|r| r.payload.clone()).collect();
    let want: Vec<String> = (0..100).map(|i| format!("tick {i}")).collect();
    assert_eq!(payloads, want, "every tick, in order");
    stop(proc);
}

fn kafka_to_zmq_push_with_envelope_and_pub(kind: BrokerKind) {
    let broker = Broker::start(kind, &["orders:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let (push_port, pub_port) = (free_port(), free_port());
    let scratch = Scratch::new("k2z");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[kafka.main]
bootstrap = "{bootstrap}"
[inputs.orders]
kafka = {{ cluster = "main", topics = ["orders"], group = "k2z" }}
[outputs.workers]
zmq = {{ socket = "push", bind = ["tcp://127.0.0.1:{push_port}"], envelope = true }}
[outputs.ticker]
zmq = {{ socket = "pub", bind = ["tcp://127.0.0.1:{pub_port}"] }}
[[routes]]
name = "fanout"
from = ["orders"]
to = ["workers", "ticker"]
"#
        ),
    );
    let proc = router(&cfg, &scratch.path("router.log"));
    let ctx = zmq::Context::new();
    let pull = zmq_connect(&ctx, zmq::PULL, push_port);
    let sub = ctx.socket(zmq::SUB).expect("sub");
    sub.set_subscribe(b"").expect("subscribe");
    sub.connect(&format!("tcp://127.0.0.1:{pub_port}"))
        .expect("connect");
    // The subscriber connected at once; the router publishes only after its consumer has
    // joined the group, by which time the subscription has long reached the PUB socket.
    let log = scratch.path("router.log");
    assert!(
        wait_until(DEADLINE, || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("partitions assigned"))),
        "the router never got its partitions"
    );

    let input: Vec<Input> = (0..50)
        .map(|i| {
            (
                Some(format!("k{i}")),
                format!("order {i}"),
                vec![("h".to_owned(), format!("v{i}"))],
            )
        })
        .collect();
    produce(&bootstrap, "orders", &input);

    let pushed = receive(&pull, 50);
    assert_eq!(pushed.len(), 50);
    for (i, frames) in pushed.iter().enumerate() {
        assert_eq!(frames.len(), 5, "envelope frames");
        assert_eq!(frames[0], b"switchyard-envelope-2");
        assert_eq!(
            frames[1],
            format!("k{i}").as_bytes(),
            "key survives the hop"
        );
        assert_eq!(frames[2][0] & 1, 1, "key flag");
        assert_eq!(frames[2][0] & 4, 0, "not a tombstone");
        // The batch format's header block: count, size, then (name, value) entries.
        let value = format!("v{i}");
        let mut h = Vec::new();
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&((4 + 1 + 4 + value.len()) as u32).to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(b"h");
        h.extend_from_slice(&(value.len() as u32).to_le_bytes());
        h.extend_from_slice(value.as_bytes());
        assert_eq!(frames[3], h, "headers survive the hop");
        assert_eq!(frames[4], format!("order {i}").as_bytes());
    }

    let published = receive(&sub, 50);
    assert_eq!(published.len(), 50);
    for (i, frames) in published.iter().enumerate() {
        assert_eq!(
            frames,
            &vec![
                format!("k{i}").into_bytes(),
                format!("order {i}").into_bytes()
            ]
        );
    }
    stop(proc);
}

#[test]
fn zmq_to_zmq_through_a_filter() {
    let (in_port, out_port) = (free_port(), free_port());
    let scratch = Scratch::new("z2z");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[inputs.feed]
zmq = {{ socket = "pull", bind = ["tcp://127.0.0.1:{in_port}"] }}
[outputs.big]
zmq = {{ socket = "push", bind = ["tcp://127.0.0.1:{out_port}"] }}
[[routes]]
name = "big"
from = ["feed"]
plugins = [{{ path = "{filter}", config = {{ field = "size", op = "gt", value = "10" }} }}]
to = ["big"]
"#,
            filter = plugins::JSON_FILTER
        ),
    );
    let proc = router(&cfg, &scratch.path("router.log"));
    let ctx = zmq::Context::new();
    let push = zmq_connect(&ctx, zmq::PUSH, in_port);
    let pull = zmq_connect(&ctx, zmq::PULL, out_port);
    for i in 0..40 {
        push.send(format!(r#"{{"size": {i}}}"#).as_bytes(), 0)
            .expect("send");
    }
    let got = receive(&pull, 29);
    let sizes: Vec<String> = got
        .iter()
        .map(|f| String::from_utf8_lossy(&f[0]).into_owned())
        .collect();
    let want: Vec<String> = (11..40).map(|i| format!(r#"{{"size": {i}}}"#)).collect();
    assert_eq!(sizes, want);
    stop(proc);
}

/// One SUB input read by two routes: the first shares each received frame with its PUSH
/// output, the last forwards the frames themselves to its PUB output. Both get every
/// message, in order, with the topic frame kept on the PUB.
#[test]
fn a_sub_input_read_by_two_routes_reaches_both_outputs_in_order() {
    let (in_port, pub_port, push_port) = (free_port(), free_port(), free_port());
    let scratch = Scratch::new("two-routes");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[inputs.feed]
zmq = {{ socket = "sub", bind = ["tcp://127.0.0.1:{in_port}"] }}
[outputs.published]
zmq = {{ socket = "pub", bind = ["tcp://127.0.0.1:{pub_port}"], when_full = "block" }}
[outputs.pushed]
zmq = {{ socket = "push", bind = ["tcp://127.0.0.1:{push_port}"] }}
[[routes]]
name = "push"
from = ["feed"]
to = ["pushed"]
[[routes]]
name = "publish"
from = ["feed"]
plugins = [{{ path = "{passthrough}" }}]
to = ["published"]
"#,
            passthrough = plugins::PASSTHROUGH
        ),
    );
    let proc = router(&cfg, &scratch.path("router.log"));
    let ctx = zmq::Context::new();
    let publisher = zmq_connect(&ctx, zmq::PUB, in_port);
    let subscriber = zmq_connect(&ctx, zmq::SUB, pub_port);
    subscriber.set_subscribe(b"").expect("subscribe");
    let pull = zmq_connect(&ctx, zmq::PULL, push_port);
    // Subscriptions take a moment to reach each publisher: warm up until both ends hear.
    let (mut heard_pub, mut heard_push) = (false, false);
    assert!(
        wait_until(DEADLINE, || {
            publisher
                .send_multipart([&b"warm"[..], b"up"], 0)
                .expect("send");
            heard_pub |= zmq_recv(&subscriber, MOMENT).is_some();
            heard_push |= zmq_recv(&pull, MOMENT).is_some();
            heard_pub && heard_push
        }),
        "the router relays nothing"
    );
    while zmq_recv(&subscriber, MOMENT).is_some() || zmq_recv(&pull, MOMENT).is_some() {}

    let sent: Vec<(Vec<u8>, Vec<u8>)> = (0..300)
        .map(|i| {
            let topic = format!("EUR.{}", i % 3).into_bytes();
            // Payloads above libzmq's 33-byte inline size travel as shared buffers.
            let payload = format!("tick {i:04} {}", "x".repeat(i % 80)).into_bytes();
            (topic, payload)
        })
        .collect();
    for (topic, payload) in &sent {
        publisher
            .send_multipart([&topic[..], &payload[..]], 0)
            .expect("send");
    }
    let published = receive(&subscriber, sent.len());
    let pushed = receive(&pull, sent.len());
    let want_published: Vec<Vec<Vec<u8>>> = sent
        .iter()
        .map(|(t, p)| vec![t.clone(), p.clone()])
        .collect();
    let want_pushed: Vec<Vec<Vec<u8>>> = sent.iter().map(|(_, p)| vec![p.clone()]).collect();
    assert_eq!(
        published, want_published,
        "the PUB output: topic and payload"
    );
    assert_eq!(pushed, want_pushed, "the PUSH output: the payload");
    stop(proc);
}

#[test]
fn dealer_to_router_input_and_dealer_output() {
    let (in_port, out_port) = (free_port(), free_port());
    let scratch = Scratch::new("dealer");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[inputs.requests]
zmq = {{ socket = "router", bind = ["tcp://127.0.0.1:{in_port}"] }}
[outputs.workers]
zmq = {{ socket = "dealer", bind = ["tcp://127.0.0.1:{out_port}"] }}
[[routes]]
name = "requests"
from = ["requests"]
to = ["workers"]
"#
        ),
    );
    let proc = router(&cfg, &scratch.path("router.log"));
    let ctx = zmq::Context::new();
    let client = ctx.socket(zmq::DEALER).expect("dealer");
    client.set_identity(b"client-1").expect("identity");
    client
        .connect(&format!("tcp://127.0.0.1:{in_port}"))
        .expect("connect");
    let worker = zmq_connect(&ctx, zmq::DEALER, out_port);
    for i in 0..20 {
        client
            .send(format!("request {i}").as_bytes(), 0)
            .expect("send");
    }
    let got = receive(&worker, 20);
    let payloads: Vec<Vec<Vec<u8>>> = got;
    let want: Vec<Vec<Vec<u8>>> = (0..20)
        .map(|i| vec![format!("request {i}").into_bytes()])
        .collect();
    assert_eq!(
        payloads, want,
        "the ROUTER input strips the identity; DEALER sends the payload"
    );
    stop(proc);
}

fn sub_input_and_envelope_input_to_kafka(kind: BrokerKind) {
    let broker = Broker::start(kind, &["quotes:1", "orders:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let (sub_port, env_port) = (free_port(), free_port());
    let scratch = Scratch::new("zin");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[kafka.main]
bootstrap = "{bootstrap}"
[inputs.quotes]
zmq = {{ socket = "sub", bind = ["tcp://127.0.0.1:{sub_port}"], subscribe = ["EUR"] }}
[inputs.orders]
zmq = {{ socket = "pull", bind = ["tcp://127.0.0.1:{env_port}"], envelope = true }}
[outputs.quotes]
kafka = {{ cluster = "main", topic = "quotes" }}
[outputs.orders]
kafka = {{ cluster = "main", topic = "orders" }}
[[routes]]
name = "quotes"
from = ["quotes"]
plugins = [{{ path = "{passthrough}" }}]
to = ["quotes"]
[[routes]]
name = "orders"
from = ["orders"]
plugins = [{{ path = "{passthrough}" }}]
to = ["orders"]
"#,
            passthrough = plugins::PASSTHROUGH
        ),
    );
    let proc = router(&cfg, &scratch.path("router.log"));
    let ctx = zmq::Context::new();
    let publisher = zmq_connect(&ctx, zmq::PUB, sub_port);
    let push = zmq_connect(&ctx, zmq::PUSH, env_port);

    // Envelopes: key, timestamp and headers travel in frames of their own. Version 1, which
    // earlier routers wrote, is read still.
    for i in 0..30 {
        let mut meta = vec![0b11];
        meta.extend_from_slice(&(1_700_000_000_000i64 + i).to_le_bytes());
        let mut block = Vec::new();
        block.extend_from_slice(&1u32.to_le_bytes());
        block.extend_from_slice(&5u32.to_le_bytes());
        block.extend_from_slice(b"trace");
        let value = format!("t{i}");
        block.extend_from_slice(&(value.len() as u32).to_le_bytes());
        block.extend_from_slice(value.as_bytes());
        let frames = [
            b"switchyard-envelope-1".to_vec(),
            format!("customer-{i}").into_bytes(),
            meta,
            block,
            format!("order {i}").into_bytes(),
        ];
        push.send_multipart(frames, 0).expect("send envelope");
    }
    let orders = read_topic(&bootstrap, "orders", 30, DEADLINE);
    assert_eq!(orders.len(), 30, "every envelope reached Kafka");
    for (i, r) in orders.iter().enumerate() {
        assert_eq!(r.payload, format!("order {i}"));
        assert_eq!(r.key.as_deref(), Some(format!("customer-{i}").as_str()));
        assert_eq!(r.headers, vec![("trace".to_owned(), format!("t{i}"))]);
        assert!(!r.tombstone && r.null_headers.is_empty());
    }

    // Version 2 carries a tombstone (meta flag 4, an empty payload frame) and null header
    // values (length 0xFFFFFFFF) into Kafka as such.
    let mut meta = vec![0b101];
    meta.extend_from_slice(&0i64.to_le_bytes());
    let mut block = Vec::new();
    block.extend_from_slice(&1u32.to_le_bytes());
    block.extend_from_slice(&(4 + 5 + 4u32).to_le_bytes());
    block.extend_from_slice(&5u32.to_le_bytes());
    block.extend_from_slice(b"trace");
    block.extend_from_slice(&u32::MAX.to_le_bytes());
    let frames = [
        b"switchyard-envelope-2".to_vec(),
        b"customer-gone".to_vec(),
        meta,
        block,
        Vec::new(),
    ];
    push.send_multipart(frames, 0).expect("send a tombstone");
    let orders = read_topic(&bootstrap, "orders", 31, DEADLINE);
    let gone = orders.get(30).expect("the tombstone reached Kafka");
    assert_eq!(gone.key.as_deref(), Some("customer-gone"));
    assert!(gone.tombstone, "a null payload, not an empty one");
    assert_eq!(gone.null_headers, vec!["trace".to_owned()]);

    // A subscriber only sees what it subscribed to; the topic frame becomes the key. The
    // subscription reaches the publisher some time after the connection: publish until the
    // first quote gets through, then the numbered ones.
    let deadline = Instant::now() + DEADLINE;
    let mut warmed = false;
    while !warmed && Instant::now() < deadline {
        publisher
            .send_multipart([&b"EURUSD"[..], b"warm-up"], 0)
            .expect("publish");
        warmed = !read_topic(&bootstrap, "quotes", 1, Duration::from_millis(200)).is_empty();
    }
    assert!(warmed, "no quote reached Kafka");
    for i in 0..20 {
        publisher
            .send_multipart([&b"USDJPY"[..], b"not subscribed"], 0)
            .expect("publish");
        publisher
            .send_multipart([b"EURUSD".to_vec(), format!("quote {i}").into_bytes()], 0)
            .expect("publish");
    }
    let mut quotes = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        quotes = read_topic(&bootstrap, "quotes", usize::MAX, Duration::from_secs(2));
        if quotes.iter().any(|r| r.payload == "quote 19") {
            break;
        }
    }
    let numbered: Vec<&str> = quotes
        .iter()
        .map(|r| r.payload.as_str())
        .filter(|p| *p != "warm-up")
        .collect();
    let want: Vec<String> = (0..20).map(|i| format!("quote {i}")).collect();
    assert_eq!(
        numbered, want,
        "every subscribed quote, in order, nothing else"
    );
    assert!(
        quotes.iter().all(|r| r.key.as_deref() == Some("EURUSD")),
        "the topic frame is the key"
    );
    stop(proc);
}

/// A PUSH output with no peer holds its Kafka input back: nothing is committed past what
/// was sent, memory stays bounded, and a peer that connects later receives every record,
/// in order.
fn a_push_output_with_no_peer_holds_the_kafka_input_back(kind: BrokerKind) {
    const N: usize = 20_000;
    let broker = Broker::start(kind, &["jobs:1"]);
    let bootstrap = broker.bootstrap().to_owned();
    let port = free_port();
    let scratch = Scratch::new("no-peer");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[kafka.main]
bootstrap = "{bootstrap}"
options = {{ "auto.commit.interval.ms" = "200" }}
[inputs.jobs]
kafka = {{ cluster = "main", topics = ["jobs"], group = "no-peer" }}
[outputs.workers]
zmq = {{ socket = "push", bind = "tcp://127.0.0.1:{port}" }}
[[routes]]
name = "jobs"
from = ["jobs"]
plugins = [{{ path = "{passthrough}" }}]
to = ["workers"]
"#,
            passthrough = plugins::PASSTHROUGH
        ),
    );
    let proc = router(&cfg, &scratch.path("router.log"));
    let input: Vec<Input> = (0..N)
        .map(|i| (Some(format!("k{i}")), format!("job {i}"), Vec::new()))
        .collect();
    produce(&bootstrap, "jobs", &input);
    let committed = || switchyard_tests::kafka::committed(&bootstrap, "no-peer", "jobs");
    // No peer: for five seconds, nothing may be committed as if it had been sent.
    let leaked = wait_until(Duration::from_secs(5), || committed() > 0);
    let rss = switchyard_tests::chaos::rss_kib(proc.pid()) as f64 / 1024.0;
    assert!(!leaked, "committed {} with no peer to send to", committed());

    let ctx = zmq::Context::new();
    let pull = zmq_connect(&ctx, zmq::PULL, port);
    let got = receive(&pull, N);
    let payloads: Vec<String> = got
        .iter()
        .map(|f| String::from_utf8_lossy(&f[0]).into_owned())
        .collect();
    let want: Vec<String> = (0..N).map(|i| format!("job {i}")).collect();
    assert_eq!(
        payloads.len(),
        N,
        "the late peer received {}",
        payloads.len()
    );
    assert!(
        payloads == want,
        "the late peer received every job, in order"
    );
    assert!(
        wait_until(DEADLINE, || committed() == N as i64),
        "committed {} after the peer took everything",
        committed()
    );
    eprintln!("no peer ({kind:?}): {N} records held, router RSS {rss:.0} MiB meanwhile");
    assert!(
        rss < 512.0,
        "the router grew to {rss:.0} MiB holding {N} records"
    );
    stop(proc);
}

switchyard_tests::on_both_brokers!(
    zmq_push_to_kafka,
    kafka_to_zmq_push_with_envelope_and_pub,
    sub_input_and_envelope_input_to_kafka,
    a_push_output_with_no_peer_holds_the_kafka_input_back,
);

/// A publisher that restarts on the same endpoint is reconnected by the router's SUB input
/// by itself: what it publishes after its restart reaches the output.
#[test]
fn a_publisher_restarting_on_its_endpoint_is_reconnected() {
    let (feed_port, out_port) = (free_port(), free_port());
    let scratch = Scratch::new("reconnect");
    let cfg = scratch.write(
        "router.toml",
        &zmq_relay_config_with(
            &format!(
                r#"socket = "sub", connect = "tcp://127.0.0.1:{feed_port}", subscribe = [""]"#
            ),
            &format!(r#"socket = "push", bind = "tcp://127.0.0.1:{out_port}""#),
        ),
    );
    let proc = router(&cfg, &scratch.path("router.log"));
    let ctx = zmq::Context::new();
    let pull = zmq_connect(&ctx, zmq::PULL, out_port);
    pull.set_rcvtimeo(100).expect("rcvtimeo");
    // Publishes `label` until the router relays one (a subscription takes a moment to
    // reach a new publisher); whether one arrived before the deadline.
    let relayed = |publisher: &zmq::Socket, label: &str| {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            publisher.send(label, 0).expect("publish");
            if let Ok(got) = pull.recv_bytes(0)
                && got == label.as_bytes()
            {
                return true;
            }
        }
        false
    };
    for life in ["first life", "second life", "third life"] {
        let publisher = ctx.socket(zmq::PUB).expect("pub");
        publisher.set_linger(0).expect("linger");
        // The last life's port is let go of in the background.
        let endpoint = format!("tcp://127.0.0.1:{feed_port}");
        assert!(
            wait_until(Duration::from_secs(10), || publisher
                .bind(&endpoint)
                .is_ok()),
            "cannot bind the publisher again"
        );
        assert!(
            relayed(&publisher, life),
            "nothing relayed from the publisher's {life}"
        );
        drop(publisher);
    }
    stop(proc);
}

/// A PULL → `passthrough` → PUB route with `pub_options`, a burst of `n` messages from a
/// PUSH client, and one SUB that starts reading only once `read_after` messages were sent
/// (or at once); what the SUB received, in order.
fn burst_through_pub(pub_options: &str, n: usize, read_after: usize) -> Vec<String> {
    let (in_port, out_port) = (free_port(), free_port());
    let scratch = Scratch::new("pub-burst");
    let cfg = scratch.write(
        "router.toml",
        &zmq_relay_config(
            in_port,
            &format!(r#"socket = "pub", bind = "tcp://127.0.0.1:{out_port}"{pub_options}"#),
        ),
    );
    let proc = router(&cfg, &scratch.path("router.log"));
    let ctx = zmq::Context::new();
    let push = zmq_connect(&ctx, zmq::PUSH, in_port);
    let sub = zmq_connect(&ctx, zmq::SUB, out_port);
    sub.set_subscribe(b"").expect("subscribe");
    // Probes until the subscription has reached the router.
    sub.set_rcvtimeo(100).expect("rcvtimeo");
    assert!(
        wait_until(DEADLINE, || {
            push.send("probe", 0).expect("probe");
            sub.recv_multipart(0).is_ok()
        }),
        "the subscriber never got a probe"
    );
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let sender = std::thread::spawn(move || {
        for i in 0..n {
            push.send(format!("m{i}").as_bytes(), 0).expect("send");
            if i + 1 == read_after {
                let _ = sent_tx.send(());
            }
        }
        push
    });
    if read_after > 0 {
        sent_rx.recv().expect("the sender got that far");
    }
    // Late probes may still arrive; they are not part of the burst.
    let mut got: Vec<String> = Vec::new();
    let end = Instant::now() + DEADLINE;
    while got.len() < n && Instant::now() < end {
        if let Ok(frames) = sub.recv_multipart(0) {
            let payload = String::from_utf8_lossy(&frames[1]).into_owned();
            if payload != "probe" {
                got.push(payload);
            }
        }
    }
    drop(sender.join().expect("sender"));
    stop(proc);
    got
}

#[test]
fn a_pub_output_absorbs_a_burst_with_its_defaults() {
    let got = burst_through_pub("", 5000, 0);
    let want: Vec<String> = (0..5000).map(|i| format!("m{i}")).collect();
    assert_eq!(got.len(), want.len(), "lost {}", want.len() - got.len());
    assert_eq!(got, want);
}

#[test]
fn a_blocking_pub_output_waits_for_a_slow_subscriber() {
    // The subscriber reads nothing until 3 000 messages were sent; with a high-water mark
    // of 100, a dropping PUB loses most of them (2 452 of 3 000 when this was written); a
    // blocking one holds the rest in the queues between the client and the router.
    let got = burst_through_pub(r#", hwm = 100, when_full = "block""#, 3000, 3000);
    let want: Vec<String> = (0..3000).map(|i| format!("m{i}")).collect();
    assert_eq!(got.len(), want.len(), "lost {}", want.len() - got.len());
    assert_eq!(got, want);
}

/// A PUB output (`hwm = 100`) with a subscriber that keeps up (a receive high-water mark of
/// 10 000, so a test machine pausing its reader for a moment does not make it fall behind)
/// and one that reads nothing (a receive high-water mark of 100): `n` messages of 2 KB paced at 2 500 a second; what the fast one got, what the stalled one got
/// when it finally read, and the output's drop counter.
fn fast_and_stalled_subscribers(when_full: &str, n: usize) -> (usize, usize, f64) {
    let (in_port, out_port, admin_port) = (free_port(), free_port(), free_port());
    let scratch = Scratch::new("pub-two");
    let cfg = scratch.write(
        "router.toml",
        &zmq_relay_config(
            in_port,
            &format!(
                r#"socket = "pub", bind = "tcp://127.0.0.1:{out_port}", hwm = 100, when_full = "{when_full}""#
            ),
        ),
    );
    let admin = format!("127.0.0.1:{admin_port}");
    let proc = switchyard_tests::procs::router_env(
        &cfg,
        &scratch.path("router.log"),
        &[("SWITCHYARD_ADMIN_LISTEN".into(), admin.clone())],
    );
    let ctx = zmq::Context::new();
    let push = zmq_connect(&ctx, zmq::PUSH, in_port);
    let subscriber = |hwm: i32| {
        let sub = ctx.socket(zmq::SUB).expect("socket");
        sub.set_rcvhwm(hwm).expect("rcvhwm");
        sub.connect(&format!("tcp://127.0.0.1:{out_port}"))
            .expect("connect");
        sub.set_subscribe(b"").expect("subscribe");
        sub.set_rcvtimeo(100).expect("rcvtimeo");
        sub
    };
    let (fast, stalled) = (subscriber(10_000), subscriber(100));
    for sub in [&fast, &stalled] {
        assert!(
            wait_until(DEADLINE, || {
                push.send("probe", 0).expect("probe");
                sub.recv_multipart(0).is_ok()
            }),
            "a subscriber never got a probe"
        );
    }
    let is_burst = |frames: &[Vec<u8>]| frames.get(1).is_some_and(|p| p.starts_with(b"m"));
    let reader = std::thread::spawn(move || {
        let mut got = 0;
        let mut quiet = Instant::now();
        while quiet.elapsed() < Duration::from_secs(3) {
            if let Ok(frames) = fast.recv_multipart(0) {
                quiet = Instant::now();
                got += usize::from(is_burst(&frames));
            }
        }
        got
    });
    let started = Instant::now();
    for i in 0..n {
        let due = started + Duration::from_micros(400 * i as u64);
        while Instant::now() < due {
            std::thread::sleep(Duration::from_micros(100));
        }
        // 2 KB each: more than the stalled subscriber's socket buffers can hide.
        push.send(format!("m{i}:{:2048}", "").as_bytes(), 0)
            .expect("send");
    }
    let fast_got = reader.join().expect("fast reader");
    let mut stalled_got = 0;
    while let Ok(frames) = stalled.recv_multipart(0) {
        stalled_got += usize::from(is_burst(&frames));
    }
    let dropped =
        switchyard_tests::admin::metric(&admin, "switchyard_zmq_dropped_total{output=\"out\"}");
    stop(proc);
    (fast_got, stalled_got, dropped)
}

/// `drop-per-subscriber`: a stalled subscriber misses records, the one that keeps up
/// misses none. With `drop` (every subscriber or none) the same run costs the fast one
/// the records the stalled one had no room for, each counted.
#[test]
fn a_stalled_subscriber_costs_only_itself_with_drop_per_subscriber() {
    const N: usize = 5_000;
    let (fast, stalled, dropped) = fast_and_stalled_subscribers("drop-per-subscriber", N);
    let (fast_all, stalled_all, dropped_all) = fast_and_stalled_subscribers("drop", N);
    eprintln!(
        "{N} messages, one subscriber stalled: drop-per-subscriber gave the fast one {fast} \
         and the stalled one {stalled} ({dropped} counted); drop gave {fast_all} and \
         {stalled_all} ({dropped_all} counted)"
    );
    assert_eq!(
        fast, N,
        "the fast subscriber lost records beside a stalled one"
    );
    assert!(
        stalled < N,
        "the stalled subscriber lost nothing: the test proves nothing"
    );
    assert!(
        fast_all < N && dropped_all as usize == N - fast_all,
        "with drop, every record the stalled one had no room for is dropped for all, and counted"
    );
}

#[test]
fn garbage_from_a_peer_is_counted_not_logged_line_by_line() {
    let (in_port, out_port) = (free_port(), free_port());
    let scratch = Scratch::new("zmq-garbage");
    let cfg = scratch.write(
        "router.toml",
        &zmq_relay_config(
            in_port,
            &format!(r#"socket = "push", bind = "tcp://127.0.0.1:{out_port}""#),
        ),
    );
    let log = scratch.path("router.log");
    let proc = router(&cfg, &log);
    let ctx = zmq::Context::new();
    let push = zmq_connect(&ctx, zmq::PUSH, in_port);
    let pull = zmq_connect(&ctx, zmq::PULL, out_port);
    // An envelope sent to an input that does not expect one is malformed there.
    for i in 0..2000 {
        let payload = format!("g{i}");
        let frames: [&[u8]; 5] = [
            b"switchyard-envelope-1",
            b"k",
            b"\0",
            b"\0\0\0\0",
            payload.as_bytes(),
        ];
        push.send_multipart(frames, 0).expect("send garbage");
    }
    push.send("good", 0).expect("send");
    let got = receive(&pull, 1);
    assert_eq!(
        got.len(),
        1,
        "the good message after the garbage did not arrive"
    );
    assert_eq!(got[0][0], b"good");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = text.matches("malformed message").count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} lines for 2 000 malformed messages:\n{text}"
    );
    stop(proc);
}

/// A 100 MiB message to an input with the default `max_message_bytes` (16 MiB): libzmq cuts
/// the peer off before the message is read, so the router never holds it; the disconnect is
/// counted and said, the peer reconnects, and the messages around it arrive.
#[test]
fn a_message_over_max_message_bytes_is_refused_and_counted() {
    let (in_port, out_port) = (free_port(), free_port());
    let scratch = Scratch::new("zmq-oversize");
    let cfg = scratch.write(
        "router.toml",
        &zmq_relay_config(
            in_port,
            &format!(r#"socket = "push", bind = "tcp://127.0.0.1:{out_port}""#),
        ),
    );
    let log = scratch.path("router.log");
    let (proc, admin) = router_with_admin(&cfg, &log);
    let ctx = zmq::Context::new();
    let pull = zmq_connect(&ctx, zmq::PULL, out_port);
    let push = zmq_connect(&ctx, zmq::PUSH, in_port);
    push.send("before", 0).expect("send");
    assert_eq!(
        receive(&pull, 1).first().map(|m| m[0].clone()),
        Some(b"before".to_vec())
    );
    let rss = RssWatch::start(proc.pid());
    push.send(vec![b'x'; 100 << 20], 0)
        .expect("send the large message");
    let series = "switchyard_zmq_peer_disconnects_total{input=\"feed\"}";
    assert!(
        wait_until(Duration::from_secs(60), || metric(&admin, series) >= 1.0),
        "the cut-off peer was not counted"
    );
    push.send("after", 0).expect("send");
    let got = receive(&pull, 1);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "a 100 MiB message over the 16 MiB limit: {} disconnect(s) counted; router peak RSS \
         {:.0} MiB meanwhile",
        metric(&admin, series),
        rss.peak_mib()
    );
    assert_eq!(
        got.first().map(|m| m[0].clone()),
        Some(b"after".to_vec()),
        "{text}"
    );
    assert!(
        text.contains("max_message_bytes"),
        "not said in the log:\n{text}"
    );
    assert!(
        rss.peak_mib() < 100.0,
        "the router held the message: {:.0} MiB",
        rss.peak_mib()
    );
    stop(proc);
}
