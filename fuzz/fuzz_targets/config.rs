//! Whole config loading: JSON syntax, then every section's typed reader.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pipit::config_file::parse("fuzz.json", text);
    }
});
