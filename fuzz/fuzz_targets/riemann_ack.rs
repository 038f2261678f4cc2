//! A Riemann server's answer to a message.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = pipit::outputs::riemann::proto::decode_ack(data);
});
