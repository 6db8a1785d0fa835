//! Runs the native unit tests of every plugin in `plugins/` (a workspace of its own), so
//! `cargo test --workspace` covers the plugin authors' view too.

use std::process::Command;

use switchyard_tests::repo_root;

#[test]
fn plugins_pass_their_own_unit_tests() {
    let root = repo_root();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root.join("plugins"))
        .args(["test", "--quiet"])
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo test in plugins/");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plugin unit tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        passed >= 12,
        "only {passed} plugin unit tests ran:\n{stdout}"
    );
}
