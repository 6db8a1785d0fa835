//! Switchyard: a message router whose per-message logic runs in sandboxed WebAssembly
//! plugins. This crate is the host: the plugin runtime and the `switchyard` command.

pub mod admin;
pub mod cli;
pub mod config;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod reload;
pub mod router;
pub mod zmq;
