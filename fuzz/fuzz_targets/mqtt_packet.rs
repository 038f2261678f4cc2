//! Bytes from an MQTT broker: every packet is decoded in turn until the bytes run out or one is
//! refused, and none may claim more bytes than it was given or than the limit.
#![no_main]

use pipit::outputs::mqtt::codec::{MAX_INCOMING, decode};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((_, used))) = decode(rest) {
        assert!(used > 0 && used <= rest.len() && used <= MAX_INCOMING + 5);
        rest = &rest[used..];
    }
});
