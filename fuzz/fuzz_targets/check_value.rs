//! A check's output as one bare value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = pipit::checks::value::parse(&String::from_utf8_lossy(data));
});
