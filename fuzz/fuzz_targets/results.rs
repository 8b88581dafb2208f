#![no_main]
//! See myveil::fuzzing::results.

libfuzzer_sys::fuzz_target!(|data: &[u8]| myveil::fuzzing::results(data));
