//! Where the host's capabilities go, chosen once for the whole SDK: inside the router (a
//! `wasm32` build) they call the host's imports; in a native `cargo test` they are recorded
//! on the calling thread for [`crate::testing`] to read back.

use crate::level::Level;

#[cfg(target_family = "wasm")]
mod imp {
    use crate::bindings::switchyard::plugin::host;
    use crate::level::Level;

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }

    pub fn counter_add(name: &str, delta: u64) {
        host::counter_add(name, delta);
    }
}

#[cfg(not(target_family = "wasm"))]
mod imp {
    use std::cell::RefCell;

    use crate::level::Level;

    thread_local! {
        pub static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
        pub static COUNTERS: RefCell<Vec<(String, u64)>> = const { RefCell::new(Vec::new()) };
    }

    pub fn log(level: Level, message: &str) {
        LOGS.with_borrow_mut(|logs| logs.push((level, message.to_owned())));
    }

    pub fn counter_add(name: &str, delta: u64) {
        COUNTERS.with_borrow_mut(
            |counters| match counters.iter_mut().find(|(n, _)| n == name) {
                Some((_, total)) => *total += delta,
                None => counters.push((name.to_owned(), delta)),
            },
        );
    }
}

/// Writes one line to the router's log (or records it).
pub fn log(level: Level, message: &str) {
    imp::log(level, message);
}

/// Adds `delta` to plugin-defined counter `name` (or records it).
pub fn counter_add(name: &str, delta: u64) {
    imp::counter_add(name, delta);
}

/// Takes the log lines recorded on this thread so far (none inside the router: they went
/// to the host).
pub fn take_logs() -> Vec<(Level, String)> {
    #[cfg(not(target_family = "wasm"))]
    return imp::LOGS.take();
    #[cfg(target_family = "wasm")]
    Vec::new()
}

/// Takes the counter totals recorded on this thread so far, in first-use order (none
/// inside the router: they went to the host).
pub fn take_counters() -> Vec<(String, u64)> {
    #[cfg(not(target_family = "wasm"))]
    return imp::COUNTERS.take();
    #[cfg(target_family = "wasm")]
    Vec::new()
}
