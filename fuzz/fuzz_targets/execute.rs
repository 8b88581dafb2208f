#![no_main]
//! See myveil::fuzzing::execute.

libfuzzer_sys::fuzz_target!(|data: &[u8]| myveil::fuzzing::execute(data));
