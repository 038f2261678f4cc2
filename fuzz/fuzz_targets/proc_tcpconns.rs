//! The `tcpconns` source on a fuzzed file tree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pipit_fuzz::source(
        r#"{"type": "tcpconns", "local_ports": [22, 80]}"#,
        &["proc/net/tcp", "proc/net/tcp6"],
        data,
    );
});
