#![no_main]
//! See `switchyard::fuzzing::plugin_result`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::plugin_result(data));
