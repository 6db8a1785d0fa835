//! End-to-end throughput of the router with the identity plugin (`passthrough`), 100-byte
//! messages: Kafka -> Kafka on the embedded cluster, and ZeroMQ PUSH -> PULL. Counted at
//! the sink from first to last message.
//!
//! `cargo build --release -p switchyard && cargo bench -p switchyard-tests --bench throughput`

use std::time::{Duration, Instant};

use switchyard_tests::kafka::{Input, produce, topic_size};
use switchyard_tests::procs::{Scratch, kafka_dev, router};
use switchyard_tests::{free_port, plugins, wait_until};

const KAFKA_MESSAGES: u64 = 200_000;
const ZMQ_MESSAGES: u64 = 1_000_000;

fn payload(i: u64) -> String {
    format!("{i:0>100}")
}

fn kafka_to_kafka() -> f64 {
    let (_cluster, bootstrap) = kafka_dev(&["in:8", "out:8"]);
    let scratch = Scratch::new("bench-k2k");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[kafka.main]
bootstrap = "{bootstrap}"
[inputs.in]
kafka = {{ cluster = "main", topics = ["in"], group = "bench" }}
[outputs.out]
kafka = {{ cluster = "main", topic = "out" }}
[[routes]]
name = "identity"
from = ["in"]
plugins = [{{ path = "{p}" }}]
to = ["out"]
"#,
            p = plugins::PASSTHROUGH
        ),
    );
    let input: Vec<Input> = (0..KAFKA_MESSAGES)
        .map(|i| (Some(format!("key-{}", i % 1000)), payload(i), vec![]))
        .collect();
    produce(&bootstrap, "in", &input);
    let _router = router(&cfg, &scratch.path("router.log"));
    assert!(wait_until(Duration::from_secs(120), || topic_size(
        &bootstrap, "out"
    ) > 0));
    let start = Instant::now();
    assert!(wait_until(Duration::from_secs(300), || {
        topic_size(&bootstrap, "out") >= KAFKA_MESSAGES as i64
    }));
    KAFKA_MESSAGES as f64 / start.elapsed().as_secs_f64()
}

fn zmq_push_to_pull() -> f64 {
    let (in_port, out_port) = (free_port(), free_port());
    let scratch = Scratch::new("bench-z2z");
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[inputs.in]
zmq = {{ socket = "pull", bind = ["tcp://127.0.0.1:{in_port}"] }}
[outputs.out]
zmq = {{ socket = "push", bind = ["tcp://127.0.0.1:{out_port}"] }}
[[routes]]
name = "identity"
from = ["in"]
plugins = [{{ path = "{p}" }}]
to = ["out"]
"#,
            p = plugins::PASSTHROUGH
        ),
    );
    let _router = router(&cfg, &scratch.path("router.log"));
    let ctx = zmq::Context::new();
    let pull = ctx.socket(zmq::PULL).expect("pull");
    pull.set_rcvhwm(100_000).expect("hwm");
    pull.connect(&format!("tcp://127.0.0.1:{out_port}"))
        .expect("connect");
    let sender = std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let push = ctx.socket(zmq::PUSH).expect("push");
        push.set_sndhwm(100_000).expect("hwm");
        push.connect(&format!("tcp://127.0.0.1:{in_port}"))
            .expect("connect");
        let messages: Vec<String> = (0..1000).map(payload).collect();
        for i in 0..ZMQ_MESSAGES {
            push.send(messages[(i % 1000) as usize].as_bytes(), 0)
                .expect("send");
        }
        // Dropping the socket and its context waits (infinite linger) until everything
        // queued has been sent.
    });
    pull.recv_bytes(0).expect("first message");
    let start = Instant::now();
    for _ in 1..ZMQ_MESSAGES {
        pull.recv_bytes(0).expect("message");
    }
    let rate = (ZMQ_MESSAGES - 1) as f64 / start.elapsed().as_secs_f64();
    let _ = sender.join();
    rate
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "kafka -> passthrough -> kafka:   {:>10.0} msg/s",
        kafka_to_kafka()
    );
    println!(
        "zmq push -> passthrough -> pull: {:>10.0} msg/s",
        zmq_push_to_pull()
    );
}
