//! The `thermal` source on a fuzzed file tree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pipit_fuzz::source(
        r#"{"type": "thermal"}"#,
        &[
            "sys/class/thermal/thermal_zone0/temp",
            "sys/class/thermal/thermal_zone0/type",
            "sys/class/thermal/thermal_zone1/temp",
            "sys/class/thermal/thermal_zone1/type",
            "sys/class/hwmon/hwmon0/name",
            "sys/class/hwmon/hwmon0/temp1_input",
            "sys/class/hwmon/hwmon0/temp1_label",
        ],
        data,
    );
});
