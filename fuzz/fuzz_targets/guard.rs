#![no_main]
//! See myveil::fuzzing::guard.

libfuzzer_sys::fuzz_target!(|data: &[u8]| myveil::fuzzing::guard(data));
