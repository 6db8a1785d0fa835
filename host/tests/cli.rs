//! The `switchyard` binary's own command-line behaviour. (Having an integration test here
//! also makes `cargo test --workspace` build the binary that `tests/` runs.)

use std::process::Command;

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

#[test]
fn version_and_help() {
    let out = switchyard()
        .arg("--version")
        .output()
        .expect("run switchyard");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("switchyard "));
    let out = switchyard()
        .args(["plugin", "test", "--help"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--destination"));
}

#[test]
fn missing_plugin_file_is_named() {
    let out = switchyard()
        .args(["plugin", "test", "/nonexistent/p.wasm"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read plugin /nonexistent/p.wasm"),
        "{err}"
    );
}

#[test]
fn bad_config_argument_is_refused() {
    let out = switchyard()
        .args(["plugin", "test", "p.wasm", "--config", "novalue"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected KEY=VALUE"));
}
