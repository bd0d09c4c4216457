#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sticky_canary_fuzz_harness::filter_config(data));
