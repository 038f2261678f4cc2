//! A kernel's answers to nf_tables dumps: one datagram of netlink messages, read as counter
//! objects (sequence number 7) and as rules (sequence number 8), each `nfgenmsg` and attributes
//! nested three deep, with a rule's user data inside.
#![no_main]

use pipit::netlink::nftables::{NFT_MSG_NEWOBJ, NFT_MSG_NEWRULE, parse_object, parse_rule};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = pipit::netlink::read_datagram(data, NFT_MSG_NEWOBJ, 7, &mut |m| {
        let _ = parse_object(m);
    });
    let _ = pipit::netlink::read_datagram(data, NFT_MSG_NEWRULE, 8, &mut |m| {
        let _ = parse_rule(m);
    });
});
