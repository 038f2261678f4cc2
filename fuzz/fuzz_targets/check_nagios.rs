//! A check's output in the Nagios plugin format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = pipit::checks::nagios::parse(&String::from_utf8_lossy(data));
});
