//! A kernel's answer to a WireGuard device dump: one datagram of generic netlink messages, read
//! into one device as the peers of several messages are.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use pipit::netlink::{genl, wireguard};
    let mut device = wireguard::Device::default();
    let _ = pipit::netlink::read_datagram(data, 0x1d, 7, &mut |m| {
        if let Some(attributes) = genl::attributes_of(m) {
            let _ = wireguard::parse_device(attributes, &mut device);
        }
    });
    for pair in device.peers.windows(2) {
        assert_ne!(pair[0].public_key, pair[1].public_key);
    }
});
