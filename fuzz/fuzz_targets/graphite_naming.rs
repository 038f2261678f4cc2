//! An event's Graphite path in each naming mode. The input, split at NUL bytes, is the host, the
//! service, the prefix, then attribute names and values. In `percent` mode the path decodes to
//! the prefix's nodes, the host and the service's nodes; in `strict` mode the path holds only what
//! carbon-c-relay keeps by default (ASCII letters, digits, `- _ : # .`).
#![no_main]

use pipit::Event;
use pipit::outputs::graphite::path::{NameMode, Naming, decode_path};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let (host, service, prefix) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut event = Event::new(service, host).with_metric(1u64);
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        event.attributes.insert(name.to_owned(), value.to_owned());
    }
    let mut path = String::new();
    for mode in [
        NameMode::Underscore,
        NameMode::Strict,
        NameMode::Percent,
        NameMode::Tags,
    ] {
        let naming = Naming {
            prefix: prefix.to_owned(),
            host_dot: "_".to_owned(),
            mode,
        };
        let _ = naming.prepare(&event, &mut path);
        if mode == NameMode::Strict {
            let path = naming.path(&event);
            assert!(
                path.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_:#.".contains(&b)),
                "{path:?}"
            );
        }
        if mode == NameMode::Percent {
            let path = naming.path(&event);
            let expected: Vec<&str> = prefix
                .split('.')
                .filter(|_| !prefix.is_empty())
                .chain([host])
                .chain(service.split('.'))
                .collect();
            assert_eq!(
                decode_path(&path).expect("a percent path decodes"),
                expected
            );
        }
    }
});
