//! A kernel's answer to a queue discipline dump: one datagram of netlink messages, each read as
//! `tcmsg` and its attributes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = pipit::netlink::read_datagram(data, pipit::netlink::qdisc::RTM_NEWQDISC, 7, &mut |m| {
        let _ = pipit::netlink::qdisc::parse(m);
    });
});
