//! `switchyard plugin test` and `switchyard plugin new`, through the real binary.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use switchyard_tests::{plugins, repo_root, switchyard_bin};

fn plugin_test(wasm: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(switchyard_bin());
    cmd.args(["plugin", "test", wasm])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run switchyard");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait for switchyard")
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every plugin's `testdata/messages.jsonl`, run with the arguments in `args.txt`, prints
/// exactly `expected.jsonl`; the exit status follows the summary.
#[test]
fn every_plugin_matches_its_expected_output() {
    let dir = repo_root().join("plugins");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("plugins/")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let testdata = entry.path().join("testdata");
        if !entry.path().join("Cargo.toml").is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let read = |file: &str| {
            std::fs::read_to_string(testdata.join(file))
                .unwrap_or_else(|e| panic!("plugins/{name}/testdata/{file}: {e}"))
        };
        let args_text = read("args.txt");
        let expected = read("expected.jsonl");
        let wasm = Path::new(plugins::PASSTHROUGH).with_file_name(format!("{name}.wasm"));
        let input = testdata.join("messages.jsonl");
        let mut args = vec!["--input", input.to_str().expect("utf-8 path")];
        args.extend(args_text.split_whitespace());
        let out = plugin_test(wasm.to_str().expect("utf-8 path"), &args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "plugins/{name}: stdout differs from expected.jsonl; stderr:\n{stderr}"
        );
        let code = out.status.code();
        match lines(&out).last() {
            // No output at all: the plugin was refused before any message.
            None => assert_eq!(code, Some(2), "plugins/{name}: {stderr}"),
            Some(last) => {
                let s = &last["summary"];
                let clean = s["error"] == 0 && s["invalid_lines"] == 0;
                assert_eq!(code, Some(if clean { 0 } else { 1 }), "plugins/{name}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} plugins have testdata");
}

#[test]
fn a_failing_init_is_reported_with_its_kind() {
    let out = plugin_test(plugins::FAULT_INIT, &[], Some("{\"payload\": \"x\"}\n"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused (init): init failed: fault_init refuses every configuration"),
        "{stderr}"
    );
}

#[test]
fn malformed_lines_are_skipped_with_their_line_number() {
    let input =
        "{\"payload\": \"a\"}\nnot json\n\n{\"key\": \"k\"}\n{\"payload_base64\": \"AP8=\"}\n";
    let out = plugin_test(plugins::PASSTHROUGH, &[], Some(input));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("input line 2 skipped: not JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("input line 4 skipped: missing `payload`"),
        "{stderr}"
    );
    let got = lines(&out);
    assert_eq!(got[0]["line"], 1);
    assert_eq!(got[1]["line"], 5);
    assert_eq!(got[2]["summary"]["messages"], 2);
    assert_eq!(got[2]["summary"]["pass"], 2);
    assert_eq!(got[2]["summary"]["invalid_lines"], 2);
}

#[test]
fn binary_payloads_and_headers_round_trip_as_base64() {
    let input = r#"{"key_base64": "AP8=", "payload_base64": "gAE=", "headers": [["bin", {"base64": "/w=="}], ["t", "x"]]}"#;
    let out = plugin_test(
        plugins::KEY_ROUTER,
        &[
            "--config",
            "by=header:t",
            "--config",
            "to.x=d",
            "--destination",
            "d",
        ],
        Some(input),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lines(&out);
    let m = &got[0]["messages"][0];
    assert_eq!(m["destination"], "d");
    assert_eq!(m["key"], serde_json::json!({"base64": "AP8="}));
    assert_eq!(m["payload"], serde_json::json!({"base64": "gAE="}));
    assert_eq!(
        m["headers"],
        serde_json::json!([["bin", {"base64": "/w=="}], ["t", "x"]])
    );
}

#[test]
fn a_batch_fails_together_and_the_next_batch_runs_on_a_fresh_instance() {
    let input = "{\"payload\": \"ok\"}\n{\"payload\": \"panic\"}\n{\"payload\": \"ok\"}\n";
    let out = plugin_test(plugins::FAULT_PANIC, &["--batch", "2"], Some(input));
    let got = lines(&out);
    assert_eq!(got[0]["outcome"], "error");
    assert_eq!(got[0]["kind"], "trap");
    assert_eq!(got[1]["outcome"], "error");
    assert_eq!(got[2]["outcome"], "pass");
    assert_eq!(out.status.code(), Some(1));
}

/// The binary as an operator installs it: copied into `bin/` of a directory of its own,
/// away from the source tree, and run from there.
fn installed(root: &std::path::Path) -> std::path::PathBuf {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("bin/");
    let copy = bin.join("switchyard");
    std::fs::copy(switchyard_bin(), &copy).expect("install the binary");
    copy
}

/// An installed binary runs the demo with no source tree: its configuration and plugins are
/// built in.
#[test]
fn an_installed_binary_runs_the_demo_from_anywhere() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let bin = installed(tmp.path());
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("a working directory");
    let out = Command::new(&bin)
        .current_dir(&elsewhere)
        .args(["demo", "--duration", "5"])
        .env("SWITCHYARD_ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The last table shows every route of the quickstart at work.
    let last = |route: &str| {
        stdout
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                if words.next() != Some(route) {
                    return None;
                }
                words.next()?.parse::<u64>().ok()
            })
            .next_back()
            .unwrap_or(0)
    };
    for route in ["orders", "big-orders", "prices"] {
        assert!(
            last(route) > 0,
            "route {route} received nothing:\n{stdout}\n{stderr}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(&elsewhere)
        .expect("read the working directory")
        .collect();
    assert!(left.is_empty(), "the demo left files where it ran");
}

/// `plugin new` writes a project that passes its own unit tests, builds for wasm32-wasip2
/// against this repository's SDK, and behaves as its sample data says; run from an
/// installed binary, with the SDK given by `SWITCHYARD_PLUGIN_SDK`, and refused with what
/// to pass when the SDK is not where it is said to be.
#[test]
fn plugin_new_builds_and_runs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let bin = installed(&tmp.path().join("root"));
    let missing = Command::new(&bin)
        .current_dir(tmp.path())
        .args([
            "plugin",
            "new",
            "region-gate",
            "--sdk",
            "/nonexistent/plugin-sdk",
        ])
        .output()
        .expect("run plugin new");
    assert_eq!(missing.status.code(), Some(2));
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains("/nonexistent/plugin-sdk") && said.contains("SWITCHYARD_PLUGIN_SDK"),
        "{said}"
    );
    assert!(!tmp.path().join("region-gate").exists());
    let out = Command::new(&bin)
        .current_dir(tmp.path())
        .args(["plugin", "new", "region-gate"])
        .env("SWITCHYARD_PLUGIN_SDK", repo_root().join("plugin-sdk"))
        .output()
        .expect("run plugin new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let project = tmp.path().join("region-gate");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "testdata/messages.jsonl",
        "rust-toolchain.toml",
    ] {
        assert!(project.join(file).is_file(), "{file} missing");
    }
    // Share the plugins' target directory so the SDK and its dependencies build once.
    let target = repo_root().join("plugins").join("target");
    let cargo = |args: &[&str]| {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&project)
            .args(args)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "cargo {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cargo(&["test", "--quiet"]);
    cargo(&["build", "--release", "--target", "wasm32-wasip2", "--quiet"]);

    let wasm = target.join("wasm32-wasip2/release/region_gate.wasm");
    let input = project.join("testdata/messages.jsonl");
    let out = plugin_test(
        wasm.to_str().expect("utf-8"),
        &[
            "--input",
            input.to_str().expect("utf-8"),
            "--config",
            "header=region",
            "--config",
            "value=eu",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lines(&out);
    assert_eq!(got[0]["outcome"], "emit");
    assert_eq!(got[1]["outcome"], "drop");
    assert_eq!(got[2]["outcome"], "drop");
    assert_eq!(got[3]["summary"]["counters"]["matched"], 1);

    let again = Command::new(switchyard_bin())
        .current_dir(tmp.path())
        .args(["plugin", "new", "region-gate"])
        .output()
        .expect("run plugin new");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}
