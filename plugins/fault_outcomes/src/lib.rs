//! Fault fixture: returns one outcome more than the batch has messages, bypassing the SDK's
//! batch loop (which cannot get this wrong) by implementing the raw export itself.

use switchyard_plugin_sdk::bindings;
use switchyard_plugin_sdk::bindings::exports::switchyard::plugin::handler::Guest;

struct FaultOutcomes;

impl Guest for FaultOutcomes {
    fn init(_: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(batch: Vec<u8>) -> Vec<u8> {
        let count = switchyard_abi_count(&batch);
        let mut result = Vec::new();
        result.extend_from_slice(&1u32.to_le_bytes());
        result.extend_from_slice(&(count + 1).to_le_bytes());
        result.extend(std::iter::repeat_n(0u8, count as usize + 1));
        result
    }
}

/// The message count of a batch: bytes 4..8, after the version.
fn switchyard_abi_count(batch: &[u8]) -> u32 {
    batch
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

bindings::export_plugin!(FaultOutcomes with_types_in bindings);
