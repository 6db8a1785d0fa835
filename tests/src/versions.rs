//! Builds of the `version_tag` plugin, each naming its own version in the records it
//! tags: what the hot-reload and exactly-once tests swap under a running router.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::kafka::Record;
use crate::plugins;

const MARKER: &[u8] = b"switchyard-version:v";

/// The `version_tag` component with its version digits set to `version`.
pub fn tag_build(version: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(plugins::VERSION_TAG).expect("version_tag.wasm");
    let at: Vec<usize> = bytes
        .windows(MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == MARKER)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the version marker must appear exactly once");
    let digits = format!("{version:08}");
    bytes[at[0] + MARKER.len()..at[0] + MARKER.len() + 8].copy_from_slice(digits.as_bytes());
    bytes
}

/// Writes `bytes` to `path` as editors do: a temporary file renamed over it.
pub fn write_by_rename(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write temporary file");
    std::fs::rename(&tmp, path).expect("rename over");
}

/// The version a record was tagged with by a `version_tag` build; exactly one tag.
pub fn version_of(r: &Record) -> u32 {
    let tags: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "switchyard-version")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(tags.len(), 1, "one version tag per record: {r:?}");
    tags[0]
        .trim_start_matches('v')
        .parse()
        .expect("version digits")
}

/// The SHA-256 of `bytes` in hex, as `/routes` shows a plugin's.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
