//! The configuration reference, `docs/configuration.md`, lists exactly the keys the
//! configuration's types accept. The types are asked directly: a table given an unknown key
//! is refused with the list of keys it expects (serde's `deny_unknown_fields`), and that
//! list must equal the keys of the reference's table for the same place.

use std::collections::BTreeSet;

use switchyard_tests::procs::Scratch;
use switchyard_tests::repo_root;

/// Each section of the reference (its heading), and a file that puts an unknown key in
/// the table that section documents.
const SECTIONS: [(&str, &str); 12] = [
    ("## Top level", "zz_unknown = 1\n"),
    ("## `[admin]`", "[admin]\nzz_unknown = 1\n"),
    ("## `[reload]`", "[reload]\nzz_unknown = 1\n"),
    ("## `[kafka.NAME]`", "[kafka.main]\nzz_unknown = 1\n"),
    ("## `[inputs.NAME]`", "[inputs.a]\nzz_unknown = 1\n"),
    (
        "### Kafka input",
        "[inputs.a]\nkafka = { zz_unknown = 1 }\n",
    ),
    ("## `[outputs.NAME]`", "[outputs.a]\nzz_unknown = 1\n"),
    (
        "### Kafka output",
        "[outputs.a]\nkafka = { zz_unknown = 1 }\n",
    ),
    (
        "## ZeroMQ sockets",
        "[outputs.a]\nzmq = { zz_unknown = 1 }\n",
    ),
    ("## `[[routes]]`", "[[routes]]\nzz_unknown = 1\n"),
    ("### `when`", "[[routes]]\nwhen = { zz_unknown = 1 }\n"),
    (
        "### A plugin of the chain",
        "[[routes]]\nplugins = [{ zz_unknown = 1 }]\n",
    ),
];

/// The keys the types expect where `text` puts its unknown key.
fn expected_keys(scratch: &Scratch, name: &str, text: &str) -> BTreeSet<String> {
    let file = scratch.write(&format!("{name}.toml"), text);
    let error = switchyard::config::load(&file)
        .err()
        .unwrap_or_else(|| panic!("{name}: an unknown key was accepted"))
        .to_string();
    let (_, expected) = error
        .split_once("unknown field `zz_unknown`, expected")
        .unwrap_or_else(|| panic!("{name}: not refused as unknown: {error}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The keys of the first table under `heading` (the first column, in backticks).
fn documented_keys(reference: &str, heading: &str) -> BTreeSet<String> {
    let start = reference
        .lines()
        .position(|l| l == heading)
        .unwrap_or_else(|| panic!("no section `{heading}` in docs/configuration.md"));
    reference
        .lines()
        .skip(start + 1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|row| {
            let cell = row.split('|').nth(1)?.trim();
            cell.strip_prefix('`')?.strip_suffix('`').map(str::to_owned)
        })
        .collect()
}

#[test]
fn the_configuration_reference_lists_exactly_the_keys_the_router_accepts() {
    let reference = std::fs::read_to_string(repo_root().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    let scratch = Scratch::new("docs");
    for (i, (heading, text)) in SECTIONS.iter().enumerate() {
        let accepted = expected_keys(&scratch, &format!("section{i}"), text);
        let documented = documented_keys(&reference, heading);
        assert!(!accepted.is_empty(), "{heading}: no keys found");
        assert_eq!(
            documented, accepted,
            "{heading}: the reference (left) and the configuration's types (right) disagree"
        );
    }
}

#[test]
fn the_readme_configuration_validates() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let toml = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a TOML block in the README");
    // The README's plugin_dir is relative to the repository; the scratch file is not there.
    let plugin_dir = std::path::Path::new(switchyard_tests::plugins::JSON_FILTER)
        .parent()
        .expect("the plugins' directory");
    let text = toml.replacen(
        "plugin_dir = \"plugins/target/wasm32-wasip2/release\"",
        &format!("plugin_dir = \"{}\"", plugin_dir.display()),
        1,
    );
    assert_ne!(text, toml, "the README's configuration sets no plugin_dir");
    let scratch = Scratch::new("readme");
    let file = scratch.write("router.toml", &text);
    let out = std::process::Command::new(switchyard_tests::switchyard_bin())
        .arg("validate")
        .arg(&file)
        .output()
        .expect("run validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
