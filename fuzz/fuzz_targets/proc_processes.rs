//! The `processes` source on a fuzzed file tree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pipit_fuzz::source(
        r#"{"type": "processes"}"#,
        &["proc/stat", "proc/1/stat", "proc/22/stat", "proc/333/stat"],
        data,
    );
});
