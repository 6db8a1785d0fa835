//! Builds every plugin in `plugins/` for wasm32-wasip2, once, into the plugins' own target
//! directory (`plugins/target`, apart from the host's), and writes `plugins.rs`: a path constant per plugin and `foreach_plugin!`, which
//! the tests use to fail the build when a plugin has no test.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned();
    let plugins_dir = root.join("plugins");
    // The plugins' own target directory: where `cargo build` inside plugins/ puts them, and
    // where the examples and `switchyard demo` look for them.
    let target_dir = plugins_dir.join("target");

    let mut names: Vec<String> = std::fs::read_dir(&plugins_dir)
        .expect("plugins/ exists")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();

    for watched in [
        "wit",
        "abi/src",
        "plugin-sdk/src",
        "plugin-sdk/Cargo.toml",
        "tools/build_plugins.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            plugins_dir.join(file).display()
        );
    }
    for name in &names {
        for watched in ["src", "Cargo.toml"] {
            println!(
                "cargo:rerun-if-changed={}",
                plugins_dir.join(name).join(watched).display()
            );
        }
    }

    if let Err(e) = build_plugins(&plugins_dir, &target_dir, &[]) {
        panic!("{e}");
    }

    let release = target_dir.join("wasm32-wasip2").join("release");
    let mut generated = String::new();
    for name in &names {
        let wasm = release.join(format!("{name}.wasm"));
        assert!(wasm.is_file(), "{} was not built", wasm.display());
        generated += &format!(
            "/// `plugins/{name}` built for wasm32-wasip2.\npub const {}: &str = {:?};\n",
            name.to_uppercase(),
            wasm.display().to_string()
        );
    }
    generated += "/// Calls `$mac!(name)` for every plugin in `plugins/`.\n#[macro_export]\n";
    generated += "macro_rules! foreach_plugin {\n    ($mac:ident) => {\n";
    for name in &names {
        generated += &format!("        $mac!({name});\n");
    }
    generated += "    };\n}\n";
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out.join("plugins.rs"), generated).expect("write plugins.rs");
}

include!("../tools/build_plugins.rs");
