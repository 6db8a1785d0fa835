//! Builds the example plugins `switchyard demo` runs, for wasm32-wasip2, and embeds them
//! (`demo_plugins.rs` in `OUT_DIR`), so that an installed binary runs the demo anywhere.
//! Without the wasm32-wasip2 target the binary is built without them, with a warning, and
//! `demo` says how to get them.

use std::path::PathBuf;

/// The plugins `examples/quickstart.toml` names.
const DEMO_PLUGINS: [&str; 4] = ["json_filter", "redact", "key_router", "passthrough"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .parent()
        .expect("host/ is inside the repository")
        .to_owned();
    let plugins_dir = root.join("plugins");
    let target_dir = plugins_dir.join("target");
    for watched in [
        "wit",
        "abi/src",
        "plugin-sdk/src",
        "plugin-sdk/Cargo.toml",
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "tools/build_plugins.rs",
        "examples/quickstart.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for name in DEMO_PLUGINS {
        for watched in ["src", "Cargo.toml"] {
            println!(
                "cargo:rerun-if-changed={}",
                plugins_dir.join(name).join(watched).display()
            );
        }
    }

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let mut generated = String::from(
        "/// The demo's plugins: file name and component bytes (none when they could not be \
         built).\npub const PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    match build_plugins(&plugins_dir, &target_dir, &DEMO_PLUGINS) {
        Ok(()) => {
            for name in DEMO_PLUGINS {
                let file = format!("{name}.wasm");
                let built = target_dir.join("wasm32-wasip2/release").join(&file);
                std::fs::copy(&built, out.join(&file))
                    .unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
                generated += &format!(
                    "    ({file:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\"))),\n"
                );
            }
        }
        Err(e) => {
            let first = e.lines().next().unwrap_or_default();
            println!(
                "cargo:warning=`switchyard demo` will not run: its plugins were not built: {first}"
            );
        }
    }
    generated += "];\n";
    std::fs::write(out.join("demo_plugins.rs"), generated).expect("write demo_plugins.rs");
}

include!("../tools/build_plugins.rs");
