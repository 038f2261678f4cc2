//! The `openvpn` source on fuzzed status files: two servers' or clients' files of any version,
//! written twice so that rates are taken between two writings.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pipit::sources::openvpn::status::parse(text);
    }
    pipit_fuzz::source(
        r#"{"type": "openvpn"}"#,
        &["var/run/openvpn.a.status", "var/run/openvpn.b.status"],
        data,
    );
});
