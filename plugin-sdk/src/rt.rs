//! The glue behind [`crate::export!`]: generated bindings and the batch loop. Not part of
//! the public API.

use std::any::Any;
use std::cell::RefCell;

use switchyard_abi::{BatchReader, Outcome, ResultWriter};

use crate::host::flush_counters;
use crate::{Config, Message, Plugin};

thread_local! {
    /// The instance's plugin value, set by `init`.
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Implements the `init` export for `P`.
pub fn init<P: Plugin>(config: Vec<(String, String)>) -> Result<(), String> {
    #[cfg(target_family = "wasm")]
    std::panic::set_hook(Box::new(|info| {
        crate::host::log(
            crate::level::Level::Error,
            &format!("plugin panicked: {info}"),
        );
    }));
    let plugin = P::init(&Config::new(config))?;
    PLUGIN.with_borrow_mut(|slot| *slot = Some(Box::new(plugin)));
    Ok(())
}

/// Implements the `process` export for `P`: decodes the batch, calls the plugin for each
/// message and encodes the outcomes.
pub fn process<P: Plugin>(batch: &[u8]) -> Vec<u8> {
    PLUGIN.with_borrow_mut(|slot| {
        let plugin = slot
            .as_mut()
            .and_then(|p| p.downcast_mut::<P>())
            .expect("`process` called before a successful `init`");
        process_one_batch(plugin, batch)
    })
}

/// Runs one encoded batch through `plugin` and returns the encoded result.
pub(crate) fn process_one_batch<P: Plugin>(plugin: &mut P, batch: &[u8]) -> Vec<u8> {
    let result = process_batch(plugin, batch);
    flush_counters();
    result
}

fn process_batch<P: Plugin>(plugin: &mut P, batch: &[u8]) -> Vec<u8> {
    let reader = match BatchReader::new(batch) {
        Ok(reader) => reader,
        Err(e) => panic!("malformed batch from the host: {e}"),
    };
    let input = reader.input();
    let mut out = ResultWriter::with_capacity(reader.len());
    for view in reader {
        let view = match view {
            Ok(view) => view,
            Err(e) => panic!("malformed message from the host: {e}"),
        };
        match plugin.process(&Message { input, view }) {
            Outcome::Pass => out.pass(),
            Outcome::Drop => out.drop_message(),
            Outcome::Reject(reason) => out.reject(&reason),
            Outcome::Emit(outputs) => out.emit(&outputs),
            Outcome::Reply(reply) => out.reply(&reply),
        }
    }
    out.finish()
}
