//! Bytes from an MQTT broker, as a publisher and as a subscriber reads them: every packet is
//! decoded in turn until the bytes run out or one is refused, and none may claim more bytes than
//! it was given or than the role's limit.
#![no_main]

use pipit::mqtt::codec::{Role, decode};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for role in [Role::Publisher, Role::Subscriber { max_packet: 4096 }] {
        let mut rest = data;
        while let Ok(Some((_, used))) = decode(rest, role) {
            assert!(used > 0 && used <= rest.len() && used <= role.max_packet() + 5);
            rest = &rest[used..];
        }
    }
});
