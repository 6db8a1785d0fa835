//! The host's capabilities: logging and plugin-defined counters. Inside the router they
//! call the host; in a native `cargo test` they are recorded for [`crate::testing`] (the
//! backend decides which).

use std::cell::RefCell;

use crate::backend;
use crate::level::Level;

thread_local! {
    /// Counter deltas accumulated during one `process` call, flushed once at its end.
    static PENDING_COUNTERS: RefCell<Vec<(String, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Writes one line to the router's log, tagged with the route and plugin.
pub fn log(level: Level, message: &str) {
    backend::log(level, message);
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
            backend::counter_add(&name, delta);
        }
    });
}
