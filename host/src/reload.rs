//! What asks for a reload: SIGHUP, `POST /reload` and changes to the configuration file or
//! to a plugin file it references.
//!
//! Watching: the directories that hold the file and its plugins are watched (not the files,
//! so an editor's write-and-rename, a `cp` over the file and a Kubernetes ConfigMap's
//! `..data` symlink swap are all seen). After an event the watcher waits until the
//! directories are quiet for the debounce interval, then compares a hash of the contents
//! with the last one; if it differs, it waits one more interval and asks for a reload only
//! if the contents are still the same, so a file caught half-written is not loaded (and a
//! half-written `.wasm` that slipped through would fail validation and leave the running
//! set in place). With
//! `watch = "poll"` the same comparison runs at an interval, for file systems that give no
//! events (some network and FUSE mounts).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, select, unbounded};
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use crate::config::{self, ReloadConfig, WatchMode};
use crate::control::Request;
use crate::shutdown::Shutdown;

/// Sends a reload request on every SIGHUP.
pub fn on_sighup(requests: Sender<Request>) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::info!("SIGHUP: reloading");
                if requests.send(Request::unanswered("sighup")).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

/// The files a configuration consists of, and a hash of their contents.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    files: Vec<PathBuf>,
    hash: [u8; 32],
}

/// Reads the configuration file and every plugin file it names. When the file does not
/// parse, the plugins of `previous` are read instead.
fn snapshot(path: &Path, previous: Option<&Snapshot>) -> Snapshot {
    let mut files = vec![path.to_owned()];
    match config::load(path) {
        Ok((config, _)) => {
            let base = config.plugin_base(path);
            for route in &config.routes {
                for plugin in &route.get_ref().plugins {
                    files.push(base.join(plugin.get_ref().path.get_ref()));
                }
            }
        }
        Err(_) => {
            if let Some(previous) = previous {
                files.extend(previous.files.iter().skip(1).cloned());
            }
        }
    }
    let mut hasher = Sha256::new();
    for file in &files {
        hasher.update(file.as_os_str().as_encoded_bytes());
        match std::fs::read(file) {
            Ok(bytes) => {
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
            }
            Err(e) => hasher.update(format!("unreadable: {}", e.kind()).as_bytes()),
        }
    }
    Snapshot {
        files,
        hash: hasher.finalize().into(),
    }
}

/// The directories to watch for `snapshot`'s files.
fn directories(snapshot: &Snapshot) -> BTreeSet<PathBuf> {
    snapshot
        .files
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect()
}

/// Starts watching `path` and its plugins as `settings` say; sends a request when they
/// change. Stops with `shutdown`.
pub fn watch(
    path: &Path,
    settings: &ReloadConfig,
    requests: Sender<Request>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    if settings.watch == WatchMode::Off {
        return Ok(());
    }
    let path = path.to_owned();
    let debounce = Duration::from_millis(settings.debounce_ms.max(1));
    let interval = Duration::from_millis(settings.poll_interval_ms.max(10));
    let mode = settings.watch;
    let (events_tx, events) = unbounded();
    let mut watcher = match mode {
        WatchMode::Events => Some(
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = events_tx.send(());
                }
            })
            .context("cannot watch for file changes (try [reload] watch = \"poll\")")?,
        ),
        _ => None,
    };
    let mut last = snapshot(&path, None);
    let mut watched = BTreeSet::new();
    if let Some(w) = &mut watcher {
        rewatch(w, &mut watched, directories(&last));
    }
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            // Polling has no events: its channel's sender is gone, so it is not waited on.
            let changes = match &watcher {
                Some(_) => events.clone(),
                None => crossbeam_channel::never(),
            };
            loop {
                // Blocks until a file event, a poll tick or the stop, whichever comes first.
                let tick = match &watcher {
                    Some(_) => crossbeam_channel::never(),
                    None => crossbeam_channel::after(interval),
                };
                select! {
                    recv(shutdown.channel()) -> _ => return,
                    recv(changes) -> event => if event.is_err() { return },
                    recv(tick) -> _ => {},
                }
                if watcher.is_some() {
                    quiet(&events, debounce);
                }
                let mut current = snapshot(&path, Some(&last));
                if current.hash == last.hash {
                    continue;
                }
                // Wait until the contents stop changing: a file being written is not loaded.
                loop {
                    if shutdown.wait_timeout(debounce) {
                        return;
                    }
                    if watcher.is_some() && !events.is_empty() {
                        quiet(&events, debounce);
                    }
                    let again = snapshot(&path, Some(&current));
                    if again.hash == current.hash {
                        break;
                    }
                    current = again;
                }
                if let Some(w) = &mut watcher {
                    rewatch(w, &mut watched, directories(&current));
                }
                last = current;
                tracing::info!(file = %path.display(), "configuration or plugin changed: reloading");
                if requests.send(Request::unanswered("watch")).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

/// Watches `wanted` instead of `watched`.
fn rewatch(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut BTreeSet<PathBuf>,
    wanted: BTreeSet<PathBuf>,
) {
    for dir in watched.difference(&wanted) {
        let _ = watcher.unwatch(dir);
    }
    for dir in wanted.difference(watched) {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(directory = %dir.display(), "cannot watch: {e}");
        }
    }
    *watched = wanted;
}

/// Waits until no event arrives for `debounce`.
fn quiet(events: &Receiver<()>, debounce: Duration) {
    while events.recv_timeout(debounce).is_ok() {}
}
