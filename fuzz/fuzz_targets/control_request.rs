//! One request line on the control socket.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = pipit::control::protocol::parse_request(data);
});
