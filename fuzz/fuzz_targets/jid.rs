//! Fuzz target `jid`: see `starling_fuzz_checks::jid` for the input layout and the properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz_checks::jid(data));
