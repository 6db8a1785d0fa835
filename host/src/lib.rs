//! Switchyard: a message router whose per-message logic runs in sandboxed WebAssembly
//! plugins. This crate is the host: the plugin runtime and the `switchyard` command.
//!
//! How a message walks through it, and where each part lives:
//!
//! | module | what it holds |
//! |---|---|
//! | [`cli`] | the `switchyard` command: `run`, `validate`, `demo`, `top`, `plugin`, `kafka-dev` |
//! | [`config`] | the file's serde types, `${VAR}`, validation with FILE:LINE:COLUMN, resolved kinds |
//! | [`router`] | owns the running set: plan a new one beside it, apply it, serve, stop |
//! | [`pipeline`] | one input's thread: batches through each route's plugin chain to its sinks, acknowledgements |
//! | [`kafka`], [`zmq`] | the transports: each offers `run_input` (the thread's loop) and `open_sink` |
//! | [`plugin`] | wasmtime: compiling, instantiating and calling plugins, the host interface they import |
//! | [`metrics`] | every counter, the counters a plan stages, the Prometheus rendering; imports nothing of the router |
//! | [`state`] | what others may read of the running set: [`state::RouterHandle`] |
//! | [`control`] | reload requests, reports and errors, spoken by the router, the watcher and the admin endpoint |
//! | [`reload`] | what asks for a reload: SIGHUP and the file watcher |
//! | [`admin`] | the HTTP endpoint: `/metrics`, `/health/*`, `/routes`, `POST /reload` |
//! | [`shutdown`] | a stop request that wakes every waiter at once |
//!
//! Imports point down this list's dependencies, never in a circle: `router` uses
//! `pipeline`, the transports, `plugin`, `metrics`, `state` and `control`; none of those
//! import `router`.

pub mod admin;
pub mod cli;
pub mod config;
pub mod control;
#[doc(hidden)]
pub mod fuzzing;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod reload;
pub mod router;
pub mod shutdown;
pub mod state;
pub mod zmq;
