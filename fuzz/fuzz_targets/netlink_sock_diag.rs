//! A kernel's answer to a socket diagnostics dump: one datagram of netlink messages, each socket
//! read as `inet_diag_msg`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = pipit::netlink::read_datagram(data, 18, 7, &mut |m| {
        let _ = pipit::netlink::sock_diag::parse(m);
    });
});
