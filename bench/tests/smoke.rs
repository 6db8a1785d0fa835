//! The harness end to end on tiny counts: every configuration runs and the report, the JSON
//! and the chart are complete. (The figures themselves mean nothing at this scale.)

use std::path::PathBuf;
use std::process::Command;

/// The debug `switchyard` binary beside this harness, built if it is not there yet.
fn switchyard() -> PathBuf {
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_switchyard-bench"));
    let binary = harness.with_file_name("switchyard");
    if !binary.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "switchyard"])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building switchyard failed");
    }
    binary
}

#[test]
fn quick_run_on_tiny_counts_writes_a_complete_report() {
    let out = std::env::temp_dir().join(format!("switchyard-bench-smoke-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_switchyard-bench"))
        .args(["--quick", "--scale", "0.01", "--rounds", "2", "--out"])
        .arg(&out)
        .arg("--switchyard")
        .arg(switchyard())
        .output()
        .expect("run the harness");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "harness failed:\n{stderr}");

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    for row in [
        "| router-wasm / router-native (ZeroMQ) | 100 B |",
        "| router-wasm / zmq-proxy | 100 B |",
        "| router-kafka / kafka-native on the embedded cluster | 100 B |",
        "| router-kafka / kafka-native on Apache Kafka | 100 B |",
        "| router-kafka / kafka-native on Apache Kafka, CPU per message | 100 B |",
        "| router-json / Python confluent-kafka JSON filter loop, on Apache Kafka | 100 B |",
        "| plugin boundary per message, batch 64 / one empty component call |",
        "| p99 time of the wasm stage per batch at 50 % load",
        "| p99 latency added by the wasm stage at 50 % load, end to end",
        "| ZeroMQ | `zmq-direct` |",
        "| ZeroMQ | `zmq-proxy` |",
        "| ZeroMQ | `router-native` |",
        "| ZeroMQ | `router-wasm` |",
        "| ZeroMQ | `router-json` |",
        "| Kafka (embedded) | `kafka-native` |",
        "| Kafka (embedded) | `router-kafka` |",
        "| Apache Kafka | `kafka-native@apache` |",
        "| Apache Kafka | `router-kafka@apache` |",
        "| Apache Kafka | `router-eo@apache` |",
        "| exactly-once / at-least-once on Apache Kafka (`transaction_ms = 100`) | 100 B |",
        "| exactly-once (`router-eo@apache`) |",
        "| at-least-once (`router-kafka@apache`) |",
        "| Apache Kafka | `router-json@apache` |",
        "| Apache Kafka | `python-json@apache` |",
        "| 50 % | `router-wasm` |",
        "| `process`, batch 64 |",
        "| epoch deadline on / off",
        "| ZeroMQ gateway, one pipelining DEALER: acknowledged / one-way, on Apache Kafka | 100 B |",
        "| ZeroMQ gateway → Apache Kafka | `gateway-oneway@apache` |",
        "| ZeroMQ gateway → Apache Kafka | `gateway-ack@apache` |",
        "| `gateway-ack` |",
        "| `gateway-req` |",
    ] {
        assert!(report.contains(row), "no `{row}` in\n{report}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).expect("json"))
            .expect("valid JSON");
    let throughput = json["throughput"].as_array().expect("throughput");
    // Fourteen configurations (five ZeroMQ, two on the embedded cluster, five on Apache
    // Kafka, two through the gateway), two rounds, one size.
    assert_eq!(throughput.len(), 28);
    // End-to-end latency at-least-once and exactly-once, per round.
    assert_eq!(json["end_to_end_latency"].as_array().map(Vec::len), Some(4));
    // A pipelining and a lock-step gateway client per round.
    assert_eq!(json["gateway_answers"].as_array().map(Vec::len), Some(4));
    assert!(
        throughput
            .iter()
            .all(|t| t["msgs_per_s"].as_f64().is_some_and(|x| x > 0.0))
    );
    assert_eq!(json["latency"].as_array().map(Vec::len), Some(12));
    // The router reports its own wasm stage time for every `router-wasm` latency run.
    let stage: Vec<Option<f64>> = json["latency"]
        .as_array()
        .expect("latency")
        .iter()
        .filter(|l| l["config"] == "router-wasm")
        .map(|l| l["stage_p99_us"].as_f64())
        .collect();
    assert_eq!(stage.len(), 4);
    assert!(
        stage.iter().all(|s| s.is_some_and(|us| us > 0.0)),
        "{stage:?}"
    );
    assert_eq!(json["boundary"].as_array().map(Vec::len), Some(12));
    // CPU time is counted in 10 ms clock ticks: tiny runs may measure none, so only the
    // CPU-per-message rows may lack a median.
    let unmeasured: Vec<&serde_json::Value> = json["ratios"]
        .as_array()
        .expect("ratios")
        .iter()
        .filter(|r| {
            let name = r["ratio"].as_str().expect("every ratio row is named");
            !name.contains("CPU per message") && r["median"].is_null()
        })
        .collect();
    assert!(
        unmeasured.is_empty(),
        "ratios without a median: {unmeasured:#?}"
    );

    let svg = std::fs::read_to_string(out.join("throughput.svg")).expect("throughput.svg");
    assert!(
        svg.starts_with("<svg") && svg.contains("router-wasm"),
        "{svg}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
