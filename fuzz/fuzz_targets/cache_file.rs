//! The persistent cache file as a power cut (or anything else) may have left it.
#![no_main]

use std::time::Duration;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = pipit_fuzz::scratch("cache");
    std::fs::write(dir.join(pipit::cache::FILE_NAME), data).expect("the cache file is written");
    let cache = pipit::cache::Cache::open(&dir);
    // Claiming an instance's samples and writing them back must work on whatever was read.
    let _rates = cache.rates("cpu", Duration::from_secs(20));
    cache.flush().expect("the cache is written");
});
