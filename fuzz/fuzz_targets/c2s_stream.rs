//! Fuzz target `c2s_stream`: see `starling_fuzz_checks::c2s_stream` for the input layout and the properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz_checks::c2s_stream(data));
