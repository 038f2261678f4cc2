//! A followed file's bytes split into lines, arriving in reads of any size: no line handed on is
//! longer than the line limit, and nothing carried over grows past it.
#![no_main]

use pipit::pollers::follow::{MAX_LINE, split};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&read_size, bytes)) = data.split_first() else {
        return;
    };
    let (mut partial, mut skipping) = (Vec::new(), false);
    for chunk in bytes.chunks(usize::from(read_size).max(1)) {
        split(chunk, &mut partial, &mut skipping, &mut |line| {
            // Lossy decoding may turn one byte into three.
            assert!(line.len() <= MAX_LINE * 3, "a line of {} bytes", line.len());
        });
        assert!(partial.len() <= MAX_LINE);
    }
});
