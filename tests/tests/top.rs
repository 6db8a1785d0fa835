//! `switchyard top` against a live router, in its plain-text mode (stdout is a pipe): it
//! shows the route's flow, the input's readiness, the ZeroMQ output's drops and the
//! reloads, and the rates move with the traffic.

use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_tests::admin::{get, metric};
use switchyard_tests::procs::{Scratch, router_env};
use switchyard_tests::{free_port, switchyard_bin, wait_until, zmq_connect, zmq_relay_config};

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `switchyard top` for `frames` frames; its stdout.
fn top(admin: &str, frames: u32) -> String {
    let out = Command::new(switchyard_bin())
        .args(["top", "--admin", admin, "--interval-ms", "300", "--frames"])
        .arg(frames.to_string())
        .output()
        .expect("run switchyard top");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "top failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The row of `frame` that starts with `name`, split into columns.
fn row<'a>(frame: &'a str, name: &str) -> Vec<&'a str> {
    frame
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row `{name}` in:\n{frame}"))
        .split_whitespace()
        .collect()
}

#[test]
fn top_shows_a_running_routers_flow_in_plain_text() {
    let (input, output, admin_port) = (free_port(), free_port(), free_port());
    let admin = format!("127.0.0.1:{admin_port}");
    let scratch = Scratch::new("top");
    let cfg = scratch.write(
        "router.toml",
        &zmq_relay_config(
            input,
            &format!(r#"socket = "pub", bind = "tcp://127.0.0.1:{output}""#),
        ),
    );
    let log = scratch.path("router.log");
    let mut proc = router_env(
        &cfg,
        &log,
        &[("SWITCHYARD_ADMIN_LISTEN".into(), admin.clone())],
    );
    assert!(
        wait_until(DEADLINE, || get(&admin, "/health/ready").0 == 200),
        "router not ready:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Nothing has flowed yet: the route is there with no messages.
    let idle = top(&admin, 1);
    assert!(idle.contains("switchyard top  127.0.0.1:"), "{idle}");
    assert!(idle.contains("ready"), "{idle}");
    assert_eq!(row(&idle, "relay").last(), Some(&"0"), "{idle}");
    assert_eq!(row(&idle, "feed")[1], "yes", "{idle}");
    assert!(
        idle.contains("reloads: 0 applied, 0 refused; last load: ok"),
        "{idle}"
    );

    // Traffic while top watches: a PUSH client sends steadily.
    let ctx = zmq::Context::new();
    let push = zmq_connect(&ctx, zmq::PUSH, input);
    let sender = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(3);
        let mut sent = 0u64;
        while Instant::now() < end {
            for _ in 0..50 {
                push.send(format!("m{sent}").as_bytes(), 0).expect("send");
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    });
    let busy = top(&admin, 4);
    let sent = sender.join().expect("sender");
    let last = busy
        .rsplit("switchyard top")
        .next()
        .expect("at least one frame");
    let relay = row(last, "relay");
    // ROUTE IN/s OUT/s DROP/s REJECT/s DEAD/s STAGE(≤ N unit) IN-total
    let in_rate: f64 = relay[1]
        .parse()
        .unwrap_or_else(|_| panic!("IN/s in {busy}"));
    assert!(in_rate > 100.0, "IN/s {in_rate} while sending:\n{busy}");
    assert_eq!(relay[3], "0.0", "no drops:\n{busy}");
    assert!(last.contains("ZEROMQ OUTPUT"), "{busy}");

    // Once the sender is done, the total equals what was sent and what the router counts.
    assert!(wait_until(DEADLINE, || {
        metric(
            &admin,
            "switchyard_route_messages_in_total{route=\"relay\"}",
        ) == sent as f64
    }));
    let after = top(&admin, 1);
    assert_eq!(
        row(&after, "relay").last(),
        Some(&sent.to_string().as_str()),
        "{after}"
    );

    proc.signal("TERM");
    let status = proc.wait_for_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn top_says_when_the_router_cannot_be_reached() {
    let admin = format!("127.0.0.1:{}", free_port());
    let out = Command::new(switchyard_bin())
        .args([
            "top",
            "--admin",
            &admin,
            "--interval-ms",
            "100",
            "--frames",
            "2",
        ])
        .output()
        .expect("run switchyard top");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("cannot read the admin endpoint"),
        "{stdout}"
    );
}
