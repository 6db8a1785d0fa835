//! Write [Switchyard](https://github.com/switchyard-router/switchyard) plugins in plain Rust.
//!
//! A plugin is a type that implements [`Plugin`]: it is built once from its route's
//! configuration and then decides, for every message, one [`Outcome`]: pass it on, drop it,
//! reject it to the dead-letter output, emit new messages in its place, or answer the client
//! that sent it ([`Outcome::Reply`], for a request to a ZeroMQ gateway). One line,
//! [`export!`], turns the type into a WebAssembly component the router can load.
//!
//! ```
//! use switchyard_plugin_sdk::{Config, Message, Outcome, Plugin, counter, export};
//!
//! /// Drops messages whose payload is smaller than `min_bytes`.
//! struct MinSize {
//!     min_bytes: usize,
//! }
//!
//! impl Plugin for MinSize {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         config.allow_only(&["min_bytes"])?;
//!         Ok(MinSize { min_bytes: config.parse("min_bytes")?.unwrap_or(1) })
//!     }
//!
//!     fn process(&mut self, message: &Message<'_>) -> Outcome {
//!         if message.payload().len() >= self.min_bytes {
//!             Outcome::Pass
//!         } else {
//!             counter("too_small", 1);
//!             Outcome::Drop
//!         }
//!     }
//! }
//!
//! export!(MinSize);
//!
//! // Plugin logic is plain Rust: test it natively with `cargo test`, no WebAssembly needed.
//! use switchyard_plugin_sdk::testing::{TestMessage, run};
//!
//! let outcomes = run::<MinSize>(
//!     &[("min_bytes", "3")],
//!     &[TestMessage::new("abcd"), TestMessage::new("ab").key("k")],
//! )
//! .unwrap();
//! assert_eq!(outcomes, vec![Outcome::Pass, Outcome::Drop]);
//! ```
//!
//! Build the component with `cargo build --release --target wasm32-wasip2` (the crate's
//! `crate-type` must include `cdylib`) and check it without any broker with
//! `switchyard plugin test target/wasm32-wasip2/release/NAME.wasm --input messages.jsonl`.
//!
//! Messages are borrowed views into the batch the host sent: reading a payload, key or
//! header copies nothing. A `pass` or `drop` costs one byte on the way back.

#![deny(missing_docs)]

// Lets generated code name this crate by its public path from inside it too.
extern crate self as switchyard_plugin_sdk;

mod backend;
#[doc(hidden)]
pub mod bindings;
mod config;
mod host;
#[cfg(feature = "json")]
pub mod json;
mod level;
mod message;
#[doc(hidden)]
pub mod rt;
pub mod testing;

pub use config::Config;
pub use host::{counter, log};
pub use level::Level;
pub use message::{Headers, Message, Origin};
pub use switchyard_abi::{Outcome, Output, Reply};

/// A Switchyard plugin.
///
/// The host creates one value per plugin instance with [`Plugin::init`] and then calls
/// [`Plugin::process`] for every message, in order, one batch at a time. An instance is
/// used by one thread at a time, so `&mut self` state needs no locking. If a call traps
/// (a panic, an out-of-bounds access), runs past its deadline or exhausts its memory, the
/// host discards the instance and builds a new one with `init`: do not rely on state
/// surviving forever.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from its per-route configuration. An `Err` refuses the plugin at
    /// load or reload time and is shown to the operator: name the offending setting.
    fn init(config: &Config) -> Result<Self, String>;

    /// Decides the outcome of one message.
    fn process(&mut self, message: &Message<'_>) -> Outcome;
}

/// Exports a [`Plugin`] type as the component's implementation of the Switchyard contract.
///
/// Write it once, at the top level of the plugin crate: `export!(MyPlugin);`.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            struct SwitchyardExport;

            impl $crate::bindings::exports::switchyard::plugin::handler::Guest
                for SwitchyardExport
            {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::rt::init::<$plugin>(config)
                }

                fn process(batch: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    $crate::rt::process::<$plugin>(&batch)
                }
            }

            $crate::bindings::export_plugin!(
                SwitchyardExport with_types_in $crate::bindings
            );
        };
    };
}
