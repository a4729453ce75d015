//! Fuzz target `stream_parser`: see `starling_fuzz_checks::stream_parser` for the input layout and the properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz_checks::stream_parser(data));
