//! `switchyard plugin new NAME`: writes a plugin project that builds against the SDK, with a
//! unit test and a sample JSONL file for `switchyard plugin test`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::PluginNewArgs;

/// Where the SDK sits in the source tree this binary was built from.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk");

pub(super) fn run(args: PluginNewArgs) -> anyhow::Result<()> {
    let name = args.name.trim_end_matches('/');
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        bail!(
            "invalid plugin name {name:?}: use lower-case letters, digits, `_` and `-`, \
             starting with a letter"
        );
    }
    let dir = PathBuf::from(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let sdk = sdk_path(args.sdk)?;
    let lib_name = name.replace('-', "_");
    let type_name: String = lib_name
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();

    let files: [(&str, String); 6] = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        ("src/lib.rs", LIB_RS.replace("{Type}", &type_name)),
        ("testdata/messages.jsonl", SAMPLE.to_owned()),
        ("rust-toolchain.toml", TOOLCHAIN.to_owned()),
        (".gitignore", "/target\n".to_owned()),
        (
            "README.md",
            README.replace("{name}", name).replace("{lib}", &lib_name),
        ),
    ];
    for (path, contents) in files {
        write(&dir.join(path), &contents)?;
    }
    println!("Created plugin `{name}` in {}/", dir.display());
    println!();
    println!("  cd {name}");
    println!("  cargo test                                       # unit tests, natively");
    println!("  cargo build --release --target wasm32-wasip2     # the component");
    println!(
        "  switchyard plugin test target/wasm32-wasip2/release/{lib_name}.wasm \\\n      \
         --input testdata/messages.jsonl --config header=region --config value=eu"
    );
    Ok(())
}

/// The SDK the project depends on: `--sdk`, else `SWITCHYARD_PLUGIN_SDK`, else the SDK of
/// the source tree this binary was built from, if it is still there; checked to be the
/// SDK crate.
fn sdk_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let (sdk, from) = match given {
        Some(path) => (path, "--sdk"),
        None => match std::env::var_os(SDK_VARIABLE) {
            Some(path) => (PathBuf::from(path), SDK_VARIABLE),
            None => (
                PathBuf::from(BUILT_SDK),
                "the source tree this switchyard was built from",
            ),
        },
    };
    let how = format!(
        "pass --sdk PATH (or set {SDK_VARIABLE}) to the `plugin-sdk` directory of a \
         Switchyard checkout"
    );
    let found = sdk
        .canonicalize()
        .with_context(|| format!("no plugin SDK at {} ({from}); {how}", sdk.display()))?;
    let manifest = std::fs::read_to_string(found.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"switchyard-plugin-sdk\"") {
        bail!(
            "{} ({from}) is not the plugin SDK crate `switchyard-plugin-sdk`; {how}",
            found.display()
        );
    }
    Ok(found)
}

/// The environment variable that says where the SDK is.
const SDK_VARIABLE: &str = "SWITCHYARD_PLUGIN_SDK";

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
switchyard-plugin-sdk = {{ path = {sdk:?} }}

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
strip = true

# A plugin is a project of its own, even when created inside another workspace.
[workspace]
"#,
        sdk = sdk.display().to_string()
    )
}

const TOOLCHAIN: &str = r#"[toolchain]
channel = "1.95.0"
targets = ["wasm32-wasip2"]
profile = "minimal"
"#;

const SAMPLE: &str = r#"{"key": "order-1", "payload": "{\"amount\": 10}", "headers": {"region": "eu"}}
{"key": "order-2", "payload": "{\"amount\": 20}", "headers": {"region": "us"}}
{"key": "order-3", "payload": "{\"amount\": 30}"}
"#;

const LIB_RS: &str = r#"//! A Switchyard plugin: passes messages whose header `header` equals `value`, drops the
//! rest, and tags what passes with the header `checked-by`.

use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, counter, export};

pub struct {Type} {
    header: String,
    value: Vec<u8>,
}

impl Plugin for {Type} {
    fn init(config: &Config) -> Result<Self, String> {
        config.allow_only(&["header", "value"])?;
        Ok({Type} {
            header: config.require("header")?.to_owned(),
            value: config.require("value")?.as_bytes().to_vec(),
        })
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        if message.header(&self.header) == Some(self.value.as_slice()) {
            counter("matched", 1);
            Outcome::Emit(vec![message.to_output().with_header("checked-by", "{Type}")])
        } else {
            Outcome::Drop
        }
    }
}

export!({Type});

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::testing::{TestMessage, run};

    #[test]
    fn keeps_matching_messages_only() {
        let config = [("header", "region"), ("value", "eu")];
        let messages = [
            TestMessage::new("a").header("region", "eu"),
            TestMessage::new("b").header("region", "us"),
            TestMessage::new("c"),
        ];
        let outcomes = run::<{Type}>(&config, &messages).unwrap();
        let Outcome::Emit(out) = &outcomes[0] else { panic!("{outcomes:?}") };
        assert_eq!(out[0].payload_bytes(), b"a");
        assert!(out[0].headers.iter().any(|(n, _)| n == "checked-by"));
        assert_eq!(outcomes[1..], [Outcome::Drop, Outcome::Drop]);
    }

    #[test]
    fn settings_are_required() {
        assert!(run::<{Type}>(&[("header", "region")], &[]).is_err());
    }
}
"#;

const README: &str = r#"# {name}

A Switchyard plugin.

    cargo test                                     # unit tests, natively
    cargo build --release --target wasm32-wasip2   # builds target/wasm32-wasip2/release/{lib}.wasm
    switchyard plugin test target/wasm32-wasip2/release/{lib}.wasm \
        --input testdata/messages.jsonl --config header=region --config value=eu
"#;
