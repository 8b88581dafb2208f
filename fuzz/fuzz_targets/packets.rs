#![no_main]
//! See myveil::fuzzing::packets.

libfuzzer_sys::fuzz_target!(|data: &[u8]| myveil::fuzzing::packets(data));
