#![no_main]
//! See myveil::fuzzing::relay.

libfuzzer_sys::fuzz_target!(|data: &[u8]| myveil::fuzzing::relay(data));
