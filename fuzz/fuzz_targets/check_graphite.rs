//! A check's output in the Graphite plaintext format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (mut samples, mut problems) = (Vec::new(), Vec::new());
    pipit::checks::graphite::parse(&String::from_utf8_lossy(data), &mut samples, &mut problems);
});
