//! What an operator meets under pressure: connections held open and a flood of reload
//! requests cannot take the admin endpoint down, a token guards it, and a cluster that
//! does not answer is a few log lines, not a flood.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use switchyard_tests::admin::{get, post, request_with};
use switchyard_tests::procs::{Scratch, router_env};
use switchyard_tests::{free_port, wait_until, zmq_relay_config};

const DEADLINE: Duration = Duration::from_secs(60);

fn start(scratch: &Scratch) -> (switchyard_tests::procs::Proc, String) {
    start_with(scratch, "", &[])
}

/// A ZeroMQ relay with `admin_table`'s keys in its `[admin]` table, its endpoint on a
/// free loopback port, and `env` set.
fn start_with(
    scratch: &Scratch,
    admin_table: &str,
    env: &[(String, String)],
) -> (switchyard_tests::procs::Proc, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let relay = zmq_relay_config(
        free_port(),
        &format!(
            r#"socket = "push", bind = "tcp://127.0.0.1:{}""#,
            free_port()
        ),
    );
    let cfg = scratch.write(
        "router.toml",
        &format!("[admin]\nlisten = \"{admin}\"\n{admin_table}\n{relay}"),
    );
    let mut env = env.to_vec();
    env.push(("SWITCHYARD_ADMIN_LISTEN".into(), admin.clone()));
    let proc = router_env(&cfg, &scratch.path("router.log"), &env);
    assert!(
        wait_until(DEADLINE, || get(&admin, "/health/live").0 == 200),
        "the admin endpoint did not answer"
    );
    (proc, admin)
}

/// 2 000 connections opened and left idle (and 200 more that send half a request and
/// stop): `/health/live` still answers, and the idle ones are closed by the router.
#[test]
fn held_connections_do_not_take_the_endpoint_down() {
    let scratch = Scratch::new("admin-held");
    let (mut proc, admin) = start(&scratch);
    let mut held = Vec::new();
    for i in 0..2_200 {
        let Ok(mut stream) = TcpStream::connect(&admin) else {
            continue;
        };
        if i >= 2_000 {
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
        }
        held.push(stream);
    }
    let opened = held.len();
    let asked = Instant::now();
    assert!(
        wait_until(DEADLINE, || get(&admin, "/health/live").0 == 200),
        "/health/live did not answer with {opened} connections held"
    );
    let answered = asked.elapsed();
    // The router closes what it serves once the headers are overdue: a read then ends.
    let until = Instant::now() + Duration::from_secs(20);
    let mut closed = 0;
    for stream in &mut held {
        let left = until.saturating_duration_since(Instant::now());
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        // End of stream, the router's last words, or a reset (it closed a connection
        // with unread bytes), rather than a read timing out.
        match std::io::Read::read(stream, &mut [0u8; 64]) {
            Ok(_) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(_) => {}
        }
    }
    eprintln!(
        "{opened} connections held: /health/live answered after {:.1} s; {closed} closed by \
         the router",
        answered.as_secs_f64()
    );
    assert!(
        answered < Duration::from_secs(15),
        "/health/live took {answered:?}"
    );
    assert_eq!(closed, opened, "the router kept idle connections open");
    assert!(proc.is_running(), "the router died");
    proc.signal("TERM");
    assert!(proc.wait_for_exit(Duration::from_secs(30)).is_some());
}

/// 2 000 `POST /reload` requests, each connection closed as soon as it is sent: the
/// router coalesces them, stays live, and is done with them within seconds.
#[test]
fn a_flood_of_reload_requests_is_coalesced() {
    let scratch = Scratch::new("admin-flood");
    let (mut proc, admin) = start(&scratch);
    let flood = Instant::now();
    for _ in 0..2_000 {
        if let Ok(mut stream) = TcpStream::connect(&admin) {
            let _ = stream.write_all(
                b"POST /reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            );
        }
    }
    let sent = flood.elapsed();
    // While its 256 connections all wait on the coalesced reload, the endpoint closes new
    // ones at once: a probe is refused until they are answered, which takes moments.
    let asked = Instant::now();
    assert!(
        wait_until(DEADLINE, || get(&admin, "/health/live").0 == 200),
        "not live after the flood"
    );
    let live = asked.elapsed();
    let settled = Instant::now();
    let (status, body) = post(&admin, "/reload");
    let after = settled.elapsed();
    eprintln!(
        "2000 reload requests sent in {:.1} s; live again after {:.1} s; a reload after them \
         answered in {:.1} s",
        sent.as_secs_f64(),
        live.as_secs_f64(),
        after.as_secs_f64()
    );
    assert!(
        live < Duration::from_secs(10),
        "the flood kept /health/live from answering for {live:?}"
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("unchanged"), "{body}");
    assert!(
        after < Duration::from_secs(20),
        "the flood kept the router busy for {after:?}"
    );
    assert!(proc.is_running(), "the router died");
    proc.signal("TERM");
    assert!(proc.wait_for_exit(Duration::from_secs(30)).is_some());
}

/// With a token, everything but `/health/*` needs it; `/routes` shows paths relative to
/// the configuration's directory, never where they lie on the machine.
#[test]
fn a_token_guards_all_but_health_and_routes_show_no_absolute_path() {
    let scratch = Scratch::new("admin-token");
    let secret = "s3cret-token";
    let (mut proc, admin) = start_with(
        &scratch,
        "token = \"${SWITCHYARD_TEST_ADMIN_TOKEN}\"",
        &[("SWITCHYARD_TEST_ADMIN_TOKEN".into(), secret.into())],
    );
    let bearer = format!("Authorization: Bearer {secret}");
    for path in ["/metrics", "/routes"] {
        assert_eq!(
            get(&admin, path).0,
            401,
            "{path} answered without the token"
        );
        let wrong = request_with(&admin, "GET", path, "Authorization: Bearer s3cret-tokeN");
        assert_eq!(wrong.0, 401, "{path} answered a wrong token");
        let (status, body) = request_with(&admin, "GET", path, &bearer);
        assert_eq!(status, 200, "{path} refused the token: {body}");
    }
    assert_eq!(post(&admin, "/reload").0, 401, "a reload without the token");
    assert_eq!(get(&admin, "/health/live").0, 200);
    assert_eq!(get(&admin, "/health/ready").0, 200);
    let (_, routes) = request_with(&admin, "GET", "/routes", &bearer);
    let root = scratch.path("");
    assert!(
        !routes.contains(root.to_string_lossy().trim_end_matches('/')),
        "/routes shows where the files lie: {routes}"
    );
    assert!(routes.contains("\"config\": \"router.toml\""), "{routes}");
    assert!(routes.contains("passthrough.wasm"), "{routes}");
    proc.signal("TERM");
    assert!(proc.wait_for_exit(Duration::from_secs(30)).is_some());
}

/// A Kafka output whose cluster does not answer: librdkafka's complaints (a failed connect,
/// all brokers down) reach the log at most once per kind per 10 s, with a count, instead
/// of a line per retry.
#[test]
fn a_cluster_that_does_not_answer_is_not_a_flood_of_log_lines() {
    let scratch = Scratch::new("quiet-logs");
    let dead = free_port();
    let input = free_port();
    let cfg = scratch.write(
        "router.toml",
        &format!(
            r#"
[kafka.gone]
bootstrap = "127.0.0.1:{dead}"
options = {{ "reconnect.backoff.ms" = "10", "reconnect.backoff.max.ms" = "50" }}
[inputs.feed]
zmq = {{ socket = "pull", bind = "tcp://127.0.0.1:{input}" }}
[outputs.out]
kafka = {{ cluster = "gone", topic = "out" }}
[[routes]]
name = "relay"
from = ["feed"]
plugins = [{{ path = "{passthrough}" }}]
to = ["out"]
"#,
            passthrough = switchyard_tests::plugins::PASSTHROUGH
        ),
    );
    let log = scratch.path("router.log");
    let mut proc = switchyard_tests::procs::router(&cfg, &log);
    // Reconnects every 50 ms for 12 s: some 240 failed connects.
    std::thread::sleep(Duration::from_secs(12));
    assert!(proc.is_running(), "the router died");
    proc.signal("TERM");
    let _ = proc.wait_for_exit(Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("librdkafka") && (l.contains(" WARN ") || l.contains(" ERROR ")))
        .collect();
    eprintln!(
        "a cluster that does not answer for 12 s: {} lines of librdkafka's",
        lines.len()
    );
    assert!(
        text.contains("more like it in the last 10 s"),
        "no count of the lines held back:\n{text}"
    );
    assert!(
        lines.len() <= 12,
        "{} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
}
