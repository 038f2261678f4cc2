//! The `dhcp_leases` source on a fuzzed dnsmasq lease file and odhcpd state file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pipit_fuzz::source(
        r#"{"type": "dhcp_leases", "networks": {"lan": "192.168.1.0/24", "ula": "fd00::/8"}}"#,
        &["tmp/dhcp.leases", "tmp/hosts/odhcpd"],
        data,
    );
});
