//! The `conntrack` source on a fuzzed file tree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pipit_fuzz::source(
        r#"{"type": "conntrack"}"#,
        &[
            "proc/sys/net/netfilter/nf_conntrack_count",
            "proc/sys/net/netfilter/nf_conntrack_max",
        ],
        data,
    );
});
