#![no_main]
//! See myveil::fuzzing::lexer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| myveil::fuzzing::lexer(data));
