//! A glob (from config: selectors, `body_pattern`) matched against any text. The input is the
//! pattern, a NUL byte, then the text.
#![no_main]

use pipit::pattern::Pattern;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, name) = text.split_once('\0').unwrap_or((&text, ""));
    let pattern = Pattern::new(pattern);
    let matched = pattern.matches(name);
    // A pattern without wildcards matches exactly itself.
    if !pattern.as_str().contains(['*', '?']) {
        assert_eq!(matched, pattern.as_str() == name);
    }
});
