//! The host's capabilities: logging and plugin-defined counters. Inside the router they
//! call the host; in a native `cargo test` they are recorded for [`crate::testing`].

use std::cell::RefCell;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed diagnostics.
    Trace,
    /// Diagnostics for plugin development.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that was handled.
    Warn,
    /// A failure.
    Error,
}

thread_local! {
    /// Counter deltas accumulated during one `process` call, flushed once at its end.
    static PENDING_COUNTERS: RefCell<Vec<(String, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Writes one line to the router's log, tagged with the route and plugin.
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    {
        use crate::rt::bindings::switchyard::plugin::host;
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }
    #[cfg(not(target_family = "wasm"))]
    crate::testing::record_log(level, message);
}

/// Adds `delta` to the plugin-defined counter `name`, exported by the router as
/// `switchyard_plugin_counter_total{name="..."}`. Cheap to call per message: deltas are
/// summed inside the plugin and reported once per batch.
pub fn counter(name: &str, delta: u64) {
    PENDING_COUNTERS.with_borrow_mut(
        |pending| match pending.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += delta,
            None => pending.push((name.to_owned(), delta)),
        },
    );
}

/// Reports the counters accumulated since the last flush.
pub(crate) fn flush_counters() {
    PENDING_COUNTERS.with_borrow_mut(|pending| {
        for (name, delta) in pending.drain(..) {
            #[cfg(target_family = "wasm")]
            crate::rt::bindings::switchyard::plugin::host::counter_add(&name, delta);
            #[cfg(not(target_family = "wasm"))]
            crate::testing::record_counter(&name, delta);
        }
    });
}
