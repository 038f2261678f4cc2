//! The `wireless` source on a fuzzed file tree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pipit_fuzz::source(r#"{"type": "wireless"}"#, &["proc/net/wireless"], data);
});
