//! The shape of the code, kept: no import cycle between the top-level modules of the host,
//! the SDK or the harness, and no host file a reader cannot take in at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`router` for `router/plan.rs`), or `crate` for
/// the crate root.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => "crate".to_owned(),
        Some(name) => name.to_owned(),
        None => first,
    }
}

/// Which top-level modules each module names through `crate::`, comments left out.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = module_of(src, &file);
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or_default();
                    group
                        .split(',')
                        .map(|n| n.trim().split("::").next().unwrap_or_default())
                        .collect()
                } else {
                    vec![rest.split("::").next().unwrap_or_default()]
                };
                for name in names {
                    let name: String = name
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    // Modules are lower case; types and macros re-exported at the root are not.
                    if name.starts_with(|c: char| c.is_ascii_lowercase()) && name != module {
                        graph.entry(module.clone()).or_default().insert(name);
                    }
                }
            }
        }
    }
    graph
}

/// Every pair (a, b) where a imports b and b reaches a again.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(m) = stack.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if next == to {
                    return true;
                }
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        false
    };
    let mut found = Vec::new();
    for (a, targets) in graph {
        for b in targets {
            // The crate root declares every module; what it imports is not a cycle.
            if a != "crate" && b != "crate" && reaches(b, a) {
                found.push((a.clone(), b.clone()));
            }
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for crate_src in ["host/src", "plugin-sdk/src", "bench/src"] {
        let graph = imports(&root().join(crate_src));
        assert!(
            graph.len() >= 4,
            "{crate_src}: too few modules found: {graph:?}"
        );
        let found = cycles(&graph);
        assert!(found.is_empty(), "{crate_src}: import cycles {found:?}");
    }
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let graph = BTreeMap::from([
        ("router".to_owned(), BTreeSet::from(["metrics".to_owned()])),
        ("metrics".to_owned(), BTreeSet::from(["state".to_owned()])),
        ("state".to_owned(), BTreeSet::from(["router".to_owned()])),
    ]);
    assert_eq!(cycles(&graph).len(), 3);
}

#[test]
fn no_host_file_is_over_six_hundred_lines() {
    let mut files = Vec::new();
    rust_files(&root().join("host/src"), &mut files);
    let long: Vec<(String, usize)> = files
        .iter()
        .map(|f| {
            let lines = std::fs::read_to_string(f).expect("read").lines().count();
            (f.display().to_string(), lines)
        })
        .filter(|(_, lines)| *lines > 600)
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}
