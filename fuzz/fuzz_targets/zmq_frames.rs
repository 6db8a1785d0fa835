#![no_main]
//! See `switchyard::fuzzing::zmq_frames`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::zmq_frames(data));
