#![no_main]
//! See `switchyard::fuzzing::configuration`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::configuration(data));
