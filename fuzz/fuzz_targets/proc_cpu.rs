//! The `cpu` source on a fuzzed file tree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pipit_fuzz::source(r#"{"type": "cpu", "per_core": true}"#, &["proc/stat"], data);
});
