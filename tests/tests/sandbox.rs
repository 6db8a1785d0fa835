//! What the runtime refuses to load. (What a loaded plugin can reach, nothing, is the
//! `sandbox_probe` test in `plugins.rs`.)

use std::path::Path;

use switchyard::plugin::{ErrorKind, PluginError, PluginLimits};
use switchyard_tests::{plugins, runtime};

fn load_error(name: &str, bytes: &[u8]) -> PluginError {
    runtime()
        .load_bytes(Path::new(name), bytes, PluginLimits::default())
        .err()
        .unwrap_or_else(|| panic!("{name} should be refused"))
}

#[test]
fn an_ungranted_import_is_refused_by_name() {
    let wat = r#"(component
        (import "acme:net/socket@1.0.0" (instance (export "connect" (func))))
    )"#;
    let err = load_error("sneaky.wasm", wat.as_bytes());
    assert_eq!(err.kind(), ErrorKind::Load);
    assert!(
        matches!(&err, PluginError::Import { import, .. } if import == "acme:net/socket@1.0.0")
    );
    let text = err.to_string();
    assert!(
        text.starts_with("sneaky.wasm imports `acme:net/socket@1.0.0`"),
        "{text}"
    );
}

#[test]
fn a_wasi_interface_outside_wasi_0_2_is_refused_by_name() {
    let wat = r#"(component
        (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func))))
    )"#;
    let err = load_error("http.wasm", wat.as_bytes());
    assert_eq!(err.kind(), ErrorKind::Load);
    assert!(
        err.to_string().contains("wasi:http/outgoing-handler@0.2.0"),
        "{err}"
    );
}

#[test]
fn a_component_without_the_handler_export_is_refused() {
    let err = load_error("empty.wasm", b"(component)");
    assert!(
        err.to_string().contains("switchyard:plugin/handler"),
        "{err}"
    );
}

#[test]
fn truncated_and_foreign_files_are_refused() {
    let good = std::fs::read(plugins::PASSTHROUGH).expect("read passthrough");
    let truncated = &good[..good.len() / 2];
    for (name, bytes) in [
        ("truncated.wasm", truncated),
        ("core-module.wasm", &b"\0asm\x01\0\0\0"[..]),
        ("text.wasm", &b"hello"[..]),
        ("empty.wasm", &b""[..]),
    ] {
        let err = load_error(name, bytes);
        assert!(matches!(err, PluginError::Compile { .. }), "{name}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{name} is not a valid plugin component"))
        );
    }
}
