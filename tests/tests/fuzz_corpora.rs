//! The fuzz targets' corpora (`fuzz/corpus/TARGET/`), replayed as ordinary tests on
//! stable: every input the fuzzer kept (seeds, inputs that reached new code, and the
//! reproducers of anything it ever found) goes through the same entry point as under
//! cargo-fuzz, and must not panic.

use std::path::PathBuf;

use switchyard::fuzzing;
use switchyard_tests::repo_root;

/// Feeds every file of `fuzz/corpus/TARGET` to `target`; the number of inputs.
fn replay(name: &str, target: fn(&[u8])) -> usize {
    let dir: PathBuf = repo_root().join("fuzz/corpus").join(name);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a corpus entry").path();
        let data = std::fs::read(&path).expect("read a corpus input");
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "{name}: {} panics", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "{name}: the corpus is empty");
    inputs
}

#[test]
fn configuration() {
    replay("configuration", fuzzing::configuration);
}

#[test]
fn plugin_result() {
    replay("plugin_result", fuzzing::plugin_result);
}

#[test]
fn zmq_frames() {
    replay("zmq_frames", fuzzing::zmq_frames);
}

#[test]
fn plugin_test_line() {
    replay("plugin_test_line", fuzzing::plugin_test_line);
}
