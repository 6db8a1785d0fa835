// Shared by the build scripts of `host` (the demo's embedded plugins) and `tests` (every
// plugin), through `include!`: builds plugins of `plugins/` for wasm32-wasip2 into the
// plugins' own target directory.

/// Builds `packages` of the plugins workspace at `plugins_dir` (all of them when empty)
/// for wasm32-wasip2, in release, into `target_dir`; `Err` holds cargo's complaint.
fn build_plugins(
    plugins_dir: &std::path::Path,
    target_dir: &std::path::Path,
    packages: &[&str],
) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(plugins_dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    // Settings meant for the outer build (flags, wrappers such as clippy-driver) must not
    // leak into the plugins' build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "building plugins/ for wasm32-wasip2 failed (is the target installed? \
         `rustup target add wasm32-wasip2`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    ))
}
