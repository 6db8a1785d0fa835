#![no_main]
//! See `switchyard::fuzzing::plugin_test_line`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::plugin_test_line(data));
