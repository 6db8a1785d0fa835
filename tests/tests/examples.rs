//! Every shipped example configuration passes `switchyard validate` and starts with
//! `switchyard run`, then drains on SIGTERM.

use std::process::Command;
use std::time::Duration;

use switchyard_tests::procs::{Scratch, router_env};
use switchyard_tests::{free_port, repo_root, switchyard_bin, wait_until};

fn examples() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "expected the six examples, found {files:?}"
    );
    files
}

#[test]
fn every_example_validates() {
    for file in examples() {
        let out = Command::new(switchyard_bin())
            .arg("validate")
            .arg(&file)
            .output()
            .expect("run validate");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": valid ("));
    }
}

#[test]
fn every_example_runs_and_drains() {
    let scratch = Scratch::new("examples");
    for file in examples() {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log = scratch.path(&format!("{name}.log"));
        // Free ports for every socket an example binds, so examples never collide.
        let ports = [
            "FEED_PORT",
            "ALERTS_PORT",
            "WORKERS_PORT",
            "EVENTS_PORT",
            "MOVES_PORT",
            "GATEWAY_PORT",
        ];
        let mut cmd_env: Vec<(String, String)> = ports
            .iter()
            .map(|p| ((*p).to_owned(), free_port().to_string()))
            .collect();
        cmd_env.push(("KAFKA_BOOTSTRAP".into(), "embedded".into()));
        let mut proc = router_env(&file, &log, &cmd_env);
        let started = wait_until(Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("switchyard running"))
        });
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(started, "{name} did not start:\n{text}");
        assert!(proc.is_running(), "{name} exited:\n{text}");
        proc.signal("TERM");
        let status = proc.wait_for_exit(Duration::from_secs(20)).expect("drains");
        assert!(status.success(), "{name}: exit status {status}");
    }
}
