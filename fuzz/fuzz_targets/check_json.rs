//! A check's output as JSON lines of events.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (mut events, mut problems) = (Vec::new(), Vec::new());
    pipit::checks::json::parse(&String::from_utf8_lossy(data), &mut events, &mut problems);
});
