//! From an event to a Graphite metric path, in one of three naming modes.
//!
//! * `underscore` (the default): `[prefix.]host.service`. Dots in the host name are replaced with
//!   `host_dot` (`_` by default) so the host stays one path node. In every part, a character
//!   other than a letter or digit (of any script) or one of `- _ : # + @ ~ %` becomes `_`, as does
//!   an empty node and a `~` that would start the path (carbon strips it). Short and readable,
//!   but not reversible.
//! * `strict`: as `underscore`, but only ASCII letters, digits and `- _ : #` are kept (what
//!   carbon-c-relay keeps by default): every other byte that `underscore` would keep becomes `_`,
//!   so a path is the same whether it went through carbon-c-relay or not.
//! * `percent`: the path is a list of sections (the prefix's and the service's dot-separated
//!   nodes, and the whole host name as one section), each encoded on its own by
//!   [`encode_section`] so that it becomes exactly one path node, and [`decode_path`] gives the
//!   sections back exactly (an empty section is the node `%`).
//! * `tags`: a Graphite 1.1 tagged series, `[prefix.]service;host=h;k=v…`, with the event's
//!   attributes as tags, in the order carbon stores them (the `;tag=value` strings sorted).

use std::fmt;

use super::datapoint::{self, DatapointError};
use super::punycode;
use crate::config::reader::{Problems, Table};
use crate::event::{Event, Kind, Metric};

/// How the path nodes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameMode {
    /// Unsafe characters replaced with `_`; dots in the host name with `host_dot`.
    #[default]
    Underscore,
    /// As `Underscore`, keeping only what carbon-c-relay keeps by default: ASCII letters, digits
    /// and `- _ : #`; each byte of anything else `Underscore` keeps becomes `_`.
    Strict,
    /// Each section encoded reversibly (Punycode for non-ASCII, then percent-encoding).
    Percent,
    /// A tagged series: `name;host=h;k=v`.
    Tags,
}

/// How paths are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Put before every path, without a trailing dot; empty for none.
    pub prefix: String,
    /// Replaces each dot of the host name in `underscore` mode; default `_`.
    pub host_dot: String,
    /// The naming mode; default `underscore`.
    pub mode: NameMode,
}

impl Default for Naming {
    fn default() -> Naming {
        Naming {
            prefix: String::new(),
            host_dot: "_".to_owned(),
            mode: NameMode::Underscore,
        }
    }
}

/// Why an event does not become a datapoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unencodable {
    /// The event has no metric (a state or a log line): Graphite stores only numbers.
    NoMetric,
    /// The path cannot be sent.
    Path(DatapointError),
}

impl Naming {
    /// Reads `prefix`, `host_dot` and `naming` from an output's section.
    pub fn read(t: &mut Table<'_>, problems: &mut Problems) -> Naming {
        let d = Naming::default();
        let prefix = t.get_or("prefix", d.prefix, problems);
        let host_dot = match t.field("host_dot") {
            Some(field) => match field.parse::<String>(problems) {
                Some(s) if s.chars().all(|c| c == '.' || keeps(c)) => s,
                Some(_) => {
                    problems.expected(&field, "letters, digits, dots or \"- _ : # + @ ~ %\"");
                    d.host_dot
                }
                None => d.host_dot,
            },
            None => d.host_dot,
        };
        let mode = match t.choice(
            "naming",
            &["underscore", "strict", "percent", "tags"],
            "underscore",
            problems,
        ) {
            "strict" => NameMode::Strict,
            "percent" => NameMode::Percent,
            "tags" => NameMode::Tags,
            _ => NameMode::Underscore,
        };
        if mode == NameMode::Strict && !host_dot.chars().all(|c| c == '.' || strict_keeps(c)) {
            problems.at(
                t.as_field(),
                "with \"naming\": \"strict\", \"host_dot\" may hold only ASCII letters, digits, dots or \"- _ : #\"",
            );
        }
        Naming {
            prefix,
            host_dot,
            mode,
        }
    }

    /// Writes the path of `event` into `out` (which is cleared first).
    pub fn path_into(&self, event: &Event, out: &mut String) {
        out.clear();
        match self.mode {
            NameMode::Underscore | NameMode::Strict => {
                let strict = self.mode == NameMode::Strict;
                if !self.prefix.is_empty() {
                    push_cleaned(out, &self.prefix, true, strict);
                    out.push('.');
                }
                for (i, part) in event.host.split('.').enumerate() {
                    if i > 0 {
                        out.push_str(&self.host_dot);
                    }
                    push_cleaned(out, part, false, strict);
                }
                out.push('.');
                push_cleaned(out, &event.service, true, strict);
                // carbon-cache strips a leading `~` from every name it stores (and a relay
                // normalising tags does too): keep the path as carbon stores it.
                if out.starts_with('~') {
                    out.replace_range(..1, "_");
                }
            }
            NameMode::Percent => {
                let prefix = self.prefix.split('.').filter(|_| !self.prefix.is_empty());
                let sections = prefix
                    .chain([event.host.as_str()])
                    .chain(event.service.split('.'));
                for (i, section) in sections.enumerate() {
                    if i > 0 {
                        out.push('.');
                    }
                    encode_section(section, out);
                }
            }
            NameMode::Tags => self.tagged_into(event, out),
        }
    }

    fn tagged_into(&self, event: &Event, out: &mut String) {
        if !self.prefix.is_empty() {
            push_cleaned(out, &self.prefix, true, false);
            out.push('.');
        }
        push_cleaned(out, &event.service, true, false);
        if out.starts_with('~') {
            out.replace_range(..1, "_");
        }
        let mut tags: Vec<(String, String)> = Vec::with_capacity(event.attributes.len() + 1);
        tags.push(("host".to_owned(), tag_value(&event.host)));
        for (name, value) in &event.attributes {
            let name: String = name
                .chars()
                .map(|c| if bad_in_tag_name(c) { '_' } else { c })
                .collect();
            // `name` is the series name itself and `host` is set above: neither can be a tag.
            if !name.is_empty() && !value.is_empty() && name != "name" && name != "host" {
                tags.push((name, tag_value(value)));
            }
        }
        // One value per tag name (the first, in name order), then in carbon's order: it sorts
        // the `;name=value` strings, so `a-b=1` comes before `a=2`.
        tags.sort();
        tags.dedup_by(|a, b| a.0 == b.0);
        let mut tags: Vec<String> = tags
            .into_iter()
            .map(|(name, value)| format!(";{name}={value}"))
            .collect();
        tags.sort();
        tags.iter().for_each(|tag| out.push_str(tag));
    }

    /// The path of `event`.
    pub fn path(&self, event: &Event) -> String {
        let mut out = String::new();
        self.path_into(event, &mut out);
        out
    }

    /// Writes the path of `event` into `path` and returns its value, or says why the event cannot
    /// be sent to carbon.
    pub fn prepare(&self, event: &Event, path: &mut String) -> Result<Metric, Unencodable> {
        let metric = match (event.kind, event.metric) {
            (Kind::Metric, Some(metric)) => metric,
            _ => return Err(Unencodable::NoMetric),
        };
        self.path_into(event, path);
        datapoint::check_path(path).map_err(Unencodable::Path)?;
        Ok(metric)
    }
}

/// True for characters the `underscore` mode keeps.
fn keeps(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '#' | '+' | '@' | '~' | '%')
}

/// True for characters the `strict` mode keeps: carbon-c-relay's default `[A-Za-z0-9-_:#]`.
fn strict_keeps(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '#')
}

/// Appends `text` with unsafe characters replaced; with `dots`, dots separate nodes (an empty
/// node becomes `_`), without, they are unsafe too. With `strict`, a character `underscore`
/// keeps but carbon-c-relay does not becomes one `_` per byte, as carbon-c-relay writes it.
fn push_cleaned(out: &mut String, text: &str, dots: bool, strict: bool) {
    let mut node_empty = true;
    for c in text.chars() {
        if c == '.' && dots {
            if node_empty {
                out.push('_');
            }
            out.push('.');
            node_empty = true;
        } else {
            if !keeps(c) {
                out.push('_');
            } else if strict && !strict_keeps(c) {
                (0..c.len_utf8()).for_each(|_| out.push('_'));
            } else {
                out.push(c);
            }
            node_empty = false;
        }
    }
    if node_empty {
        out.push('_');
    }
}

fn bad_in_tag_name(c: char) -> bool {
    matches!(c, ';' | '!' | '^' | '=') || c.is_whitespace() || c.is_control()
}

/// A tag value as carbon takes it: no `;`, white space or control character, not starting with `~`.
fn tag_value(value: &str) -> String {
    let mut out: String = value
        .chars()
        .map(|c| {
            if c == ';' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if out.starts_with('~') {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Appends the `percent` encoding of one section, which is then exactly one path node made of
/// ASCII letters, digits, `-`, `_` and `%`:
///
/// 1. A section with a non-ASCII character is written as `xn--` followed by its Punycode
///    (RFC 3492, without IDNA's lossy nameprep). An ASCII section that itself starts with `xn--`
///    (in any case) has its first letter percent-encoded, so the two cannot be confused.
/// 2. Every byte other than an ASCII letter, digit, `-` or `_` becomes `%XX` (upper-case hex):
///    dots become `%2E`, `%` becomes `%25`, a space `%20`.
///
/// An empty section becomes the node `%` (which no other section gives), so that it stays a node
/// of its own that carbon stores and reads back: `a..b` is `a.%.b`, not `a/b`.
pub fn encode_section(section: &str, out: &mut String) {
    if section.is_empty() {
        out.push('%');
    } else if section.is_ascii() {
        let rest = match section.get(..4) {
            Some(head) if head.eq_ignore_ascii_case("xn--") => {
                push_escaped(out, section.as_bytes()[0]);
                &section[1..]
            }
            _ => section,
        };
        push_percent(out, rest);
    } else {
        let mut puny = String::with_capacity(section.len() * 2);
        punycode::encode(section, &mut puny);
        out.push_str("xn--");
        push_percent(out, &puny);
    }
}

fn push_percent(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            push_escaped(out, b);
        }
    }
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// The sections joined by dots, each encoded by [`encode_section`].
pub fn encode_path<S: AsRef<str>>(sections: &[S]) -> String {
    let mut out = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        encode_section(section.as_ref(), &mut out);
    }
    out
}

/// Why a node could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A `%` not followed by two hex digits, at this byte offset of the node.
    BadEscape(usize),
    /// The node decodes to bytes that are not UTF-8 text.
    NotUtf8,
    /// The node starts with `xn--` but the rest is not Punycode.
    BadPunycode,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadEscape(at) => {
                write!(f, "'%' at byte {at} is not followed by two hex digits")
            }
            DecodeError::NotUtf8 => f.write_str("decoded bytes are not UTF-8"),
            DecodeError::BadPunycode => f.write_str("text after \"xn--\" is not Punycode"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The original section of a node written by [`encode_section`].
pub fn decode_section(node: &str) -> Result<String, DecodeError> {
    if node == "%" {
        return Ok(String::new());
    }
    match node.get(..4) {
        Some(head) if head.eq_ignore_ascii_case("xn--") => {
            let bytes = percent_decode(&node[4..])?;
            let text = std::str::from_utf8(&bytes).map_err(|_| DecodeError::BadPunycode)?;
            punycode::decode(text).ok_or(DecodeError::BadPunycode)
        }
        _ => String::from_utf8(percent_decode(node)?).map_err(|_| DecodeError::NotUtf8),
    }
}

fn percent_decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let b = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(DecodeError::BadEscape(i))?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The sections of a path written in `percent` mode (or by [`encode_path`]).
pub fn decode_path(path: &str) -> Result<Vec<String>, DecodeError> {
    path.split('.').map(decode_section).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::reader::read_section;

    fn naming(mode: NameMode) -> Naming {
        Naming {
            mode,
            ..Naming::default()
        }
    }

    #[test]
    fn underscore_builds_prefix_host_service() {
        let e = Event::new("interface.eth0.rx_bytes", "gw.example.net");
        assert_eq!(
            Naming::default().path(&e),
            "gw_example_net.interface.eth0.rx_bytes"
        );
        let n = Naming {
            prefix: "routers".into(),
            host_dot: "-".into(),
            mode: NameMode::Underscore,
        };
        assert_eq!(n.path(&e), "routers.gw-example-net.interface.eth0.rx_bytes");
    }

    #[test]
    fn underscore_never_emits_white_space_or_empty_nodes() {
        let e = Event::new("disk.My Disk\t1..(x);y", "h\nost");
        assert_eq!(Naming::default().path(&e), "h_ost.disk.My_Disk_1._._x__y");
        assert_eq!(Naming::default().path(&Event::new("", "")), "_._");
        assert_eq!(
            Naming::default().path(&Event::new("temp.küche", "r1")),
            "r1.temp.küche"
        );
        assert_eq!(Naming::default().path(&Event::new("a", "~gw")), "_gw.a");
    }

    #[test]
    fn percent_sections_are_one_node_each() {
        let e = Event::new("disk./var/log.used", "gw.example.net");
        let n = Naming {
            prefix: "eu.routers".into(),
            ..naming(NameMode::Percent)
        };
        let path = n.path(&e);
        assert_eq!(path, "eu.routers.gw%2Eexample%2Enet.disk.%2Fvar%2Flog.used");
        assert_eq!(
            decode_path(&path).unwrap(),
            [
                "eu",
                "routers",
                "gw.example.net",
                "disk",
                "/var/log",
                "used"
            ]
        );
        assert_eq!(
            encode_path(&["bücher", "xn--a", "50%"]),
            "xn--bcher-kva.%78n--a.50%25"
        );
        // The examples of docs/outputs-graphite.md.
        assert_eq!(
            encode_path(&["r1", "temp", "wohnzimmer °C"]),
            "r1.temp.xn--wohnzimmer%20C-fsa"
        );
        let e = Event::new("disk./var/log.used", "gw.exämple.net");
        let n = Naming {
            prefix: "lab".into(),
            ..naming(NameMode::Percent)
        };
        assert_eq!(
            n.path(&e),
            "lab.xn--gw%2Eexmple%2Enet-ffb.disk.%2Fvar%2Flog.used"
        );
    }

    #[test]
    fn percent_round_trips_any_text() {
        let samples = [
            "",
            " ",
            ".",
            "..",
            "%",
            "%25",
            "a.b",
            "a b",
            "xn--",
            "XN--abc",
            "xn-",
            "-",
            "_",
            "ünï.cøde",
            "日本語 テキスト",
            "😀.%.😀",
            "tab\there",
            "new\nline",
            "semi;colon=eq",
            "~tilde",
            "a\u{0}b",
            "\u{10FFFF}",
            "mixed-ASCII-ß-end",
            "xn--bcher-kva",
            "%zz",
            "Ölß",
            "a..b..",
            "\u{7f}\u{80}",
            ".lead",
            "trail.",
        ];
        for s in samples {
            let mut node = String::new();
            encode_section(s, &mut node);
            assert!(
                node.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_%".contains(&b)),
                "{s:?} -> {node}"
            );
            assert_eq!(decode_section(&node).as_deref(), Ok(s), "{s:?} -> {node}");
        }
        let sections: Vec<&str> = samples.to_vec();
        assert_eq!(decode_path(&encode_path(&sections)).unwrap(), sections);
        // Empty sections stay nodes of their own: `a.b`, `a..b`, `.lead` and `trail.` as labels
        // give four different paths, none with an empty node.
        let split = |label: &'static str| label.split('.').collect::<Vec<_>>();
        let paths: Vec<String> = ["a.b", "a..b", ".lead", "trail."]
            .map(|label| encode_path(&split(label)))
            .to_vec();
        assert_eq!(paths, ["a.b", "a.%.b", "%.lead", "trail.%"]);
        for label in ["a.b", "a..b", ".lead", "trail.", "", "."] {
            let path = encode_path(&split(label));
            assert!(!path.split('.').any(str::is_empty), "{label:?} -> {path}");
            assert_eq!(decode_path(&path).unwrap(), split(label));
        }
        // Every short string over a small awkward alphabet.
        let alphabet = ['a', '.', '%', ' ', 'é', 'x', 'n', '-', '😀'];
        let mut count = 0;
        for len in 0..=4u32 {
            for mut i in 0..alphabet.len().pow(len) {
                let mut s = String::new();
                for _ in 0..len {
                    s.push(alphabet[i % alphabet.len()]);
                    i /= alphabet.len();
                }
                assert_eq!(
                    decode_path(&encode_path(&[&s, "", &s])).unwrap(),
                    [s.as_str(), "", s.as_str()]
                );
                count += 1;
            }
        }
        assert_eq!(count, 1 + 9 + 81 + 729 + 6561);
    }

    #[test]
    fn percent_decode_refuses_broken_nodes() {
        assert_eq!(decode_section("a%2"), Err(DecodeError::BadEscape(1)));
        assert_eq!(decode_section("a%g0"), Err(DecodeError::BadEscape(1)));
        assert_eq!(decode_section("%FF"), Err(DecodeError::NotUtf8));
        assert_eq!(decode_section("xn--ab!"), Err(DecodeError::BadPunycode));
    }

    #[test]
    fn tags_follow_graphite_rules() {
        let mut e = Event::new("interface.rx bytes", "gw.example.net");
        e.attributes = BTreeMap::from([
            ("if;ace".to_owned(), "eth0 wan".to_owned()),
            ("dir".to_owned(), "~in;x".to_owned()),
            ("a=b!^".to_owned(), "v".to_owned()),
            ("empty".to_owned(), String::new()),
            ("name".to_owned(), "x".to_owned()),
            ("host".to_owned(), "other".to_owned()),
        ]);
        let n = Naming {
            prefix: "net".into(),
            ..naming(NameMode::Tags)
        };
        assert_eq!(
            n.path(&e),
            "net.interface.rx_bytes;a_b__=v;dir=_in_x;host=gw.example.net;if_ace=eth0_wan"
        );
        assert_eq!(
            naming(NameMode::Tags).path(&Event::new("~x", "h")),
            "_x;host=h"
        );
        // Carbon sorts the `;tag=value` strings: `;a-b=1` before `;a=2` (`-` sorts before `=`).
        let mut e = Event::new("m", "h");
        e.attributes = BTreeMap::from([
            ("a".to_owned(), "2".to_owned()),
            ("a-b".to_owned(), "1".to_owned()),
        ]);
        assert_eq!(naming(NameMode::Tags).path(&e), "m;a-b=1;a=2;host=h");
    }

    #[test]
    fn strict_is_what_carbon_c_relay_makes_of_an_underscore_path() {
        // carbon-c-relay's default: each byte outside [A-Za-z0-9-_:#] (dots aside) becomes `_`.
        fn c_relay(path: &str) -> String {
            path.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_:#.".contains(&b) {
                        char::from(b)
                    } else {
                        '_'
                    }
                })
                .collect()
        }
        let n = Naming {
            prefix: "eu+1".into(),
            ..naming(NameMode::Strict)
        };
        let e = Event::new("temp.küche °C.a+b@c~d%e", "gw.ä.lan");
        assert_eq!(n.path(&e), "eu_1.gw____lan.temp.k__che__C.a_b_c_d_e");
        let underscore = Naming {
            mode: NameMode::Underscore,
            ..n.clone()
        };
        for (service, host) in [
            ("temp.küche °C.a+b@c~d%e", "gw.ä.lan"),
            ("disk./var/log..x", "r1"),
            ("日本.😀\u{a0}x", "h\u{200b}"),
            ("", ""),
        ] {
            let e = Event::new(service, host);
            let strict = n.path(&e);
            assert_eq!(strict, c_relay(&underscore.path(&e)), "{service:?}");
            assert_eq!(strict, c_relay(&strict), "{service:?}");
        }
        let e = read_section(r#"{"naming": "strict", "host_dot": "+"}"#, |t, p| {
            Some(Naming::read(t, p))
        })
        .unwrap_err();
        assert!(e[0].contains("\"strict\""), "{e:?}");
    }

    #[test]
    fn prepare_says_why_an_event_is_left_out() {
        let n = Naming::default();
        let mut path = String::new();
        assert_eq!(
            n.prepare(&Event::new("state.only", "h"), &mut path),
            Err(Unencodable::NoMetric)
        );
        let long = Event::new("x".repeat(datapoint::MAX_PATH), "h").with_metric(1i64);
        assert!(matches!(
            n.prepare(&long, &mut path),
            Err(Unencodable::Path(DatapointError::PathTooLong(_)))
        ));
        assert_eq!(
            n.prepare(&Event::new("a", "h").with_metric(2i64), &mut path),
            Ok(Metric::Int(2))
        );
        assert_eq!(path, "h.a");
    }
}
