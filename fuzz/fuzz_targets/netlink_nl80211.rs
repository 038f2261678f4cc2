//! A kernel's answer to an nl80211 dump: one datagram of generic netlink messages, each read as
//! an interface, a station and a channel survey.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use pipit::netlink::{genl, nl80211};
    let _ = pipit::netlink::read_datagram(data, 0x1c, 7, &mut |m| {
        if let Some(attributes) = genl::attributes_of(m) {
            let _ = nl80211::parse_interface(attributes);
            if let Some(s) = nl80211::parse_station(attributes) {
                assert_eq!(s.mac_text().len(), 17);
            }
            if let Some(s) = nl80211::parse_survey(attributes) {
                let _ = nl80211::channel(s.frequency);
            }
        }
    });
});
