//! The Graphite `percent` name encoding: for any sections (the input split at NUL bytes), the
//! path has one node per section, only safe characters, and decodes to exactly the sections; and
//! decoding any text ends without a panic.
#![no_main]

use pipit::outputs::graphite::path::{decode_path, encode_path};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = decode_path(&text);
    let sections: Vec<&str> = text.split('\0').collect();
    let path = encode_path(&sections);
    assert!(
        path.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_%.".contains(&b)),
        "{path:?}"
    );
    assert_eq!(path.split('.').count(), sections.len());
    assert_eq!(
        decode_path(&path).expect("an encoded path decodes"),
        sections
    );
});
