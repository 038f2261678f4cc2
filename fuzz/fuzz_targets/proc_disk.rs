//! The `disk` source on a fuzzed file tree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pipit_fuzz::source(
        r#"{"type": "disk", "partitions": true}"#,
        &["proc/diskstats", "sys/class/block/sda1/partition"],
        data,
    );
});
