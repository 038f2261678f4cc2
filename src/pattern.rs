//! Name patterns for selectors: `*` matches any run of characters, `?` exactly one.

/// A compiled glob pattern over service names, such as `interface.*.rx_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    /// A pattern from its text; every string is a valid pattern.
    pub fn new(text: &str) -> Pattern {
        Pattern {
            text: text.to_owned(),
        }
    }

    /// A declared metric name such as `cpu.<core>.user` as a pattern: each `<placeholder>`
    /// matches one or more characters (dots included: an interface may be called `eth0.100`).
    pub fn declared(declared: &str) -> Pattern {
        let mut glob = String::with_capacity(declared.len());
        let mut rest = declared;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            glob.push_str(&rest[..open]);
            glob.push_str("?*");
            rest = &rest[open + close + 1..];
        }
        glob.push_str(rest);
        Pattern::new(&glob)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        // Iterative glob match with one backtrack point: linear in practice, no recursion.
        let (p, n) = (self.text.as_bytes(), name.as_bytes());
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ni));
                pi += 1;
            } else if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
                if p[pi] == b'?' {
                    // `?` takes one character, not one byte.
                    ni += utf8_len(n[ni]);
                } else {
                    ni += 1;
                }
                pi += 1;
            } else if let Some((sp, sn)) = star {
                pi = sp + 1;
                ni = sn + utf8_len(n[sn]);
                star = Some((sp, ni));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

/// Include and exclude patterns: a name passes when it matches an include (or there are none)
/// and matches no exclude.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Names to take; empty takes all.
    pub include: Vec<Pattern>,
    /// Names to leave out, even when included.
    pub exclude: Vec<Pattern>,
}

impl Selector {
    /// A selector from lists of pattern texts, as config gives them.
    pub fn from_lists(include: &[String], exclude: &[String]) -> Selector {
        Selector {
            include: include.iter().map(|p| Pattern::new(p)).collect(),
            exclude: exclude.iter().map(|p| Pattern::new(p)).collect(),
        }
    }

    /// True when `name` passes.
    pub fn accepts(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(name)))
            && !self.exclude.iter().any(|p| p.matches(name))
    }
}

/// A pattern over free text such as a log line or a response body: a plain substring, or a glob
/// over the whole text when it has a `*` or a `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextPattern {
    /// Matches text that contains it.
    Contains(String),
    /// Matches text that it matches whole.
    Glob(Pattern),
}

impl TextPattern {
    /// The pattern for `text`: a glob when it has a wildcard, else a substring.
    pub fn new(text: &str) -> TextPattern {
        if text.contains(['*', '?']) {
            TextPattern::Glob(Pattern::new(text))
        } else {
            TextPattern::Contains(text.to_owned())
        }
    }

    /// True when `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            TextPattern::Contains(s) => text.contains(s.as_str()),
            TextPattern::Glob(p) => p.matches(text),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        match self {
            TextPattern::Contains(s) => s,
            TextPattern::Glob(p) => p.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_match_one_or_more_characters() {
        let p = Pattern::declared("cpu.<core>.user");
        assert!(p.matches("cpu.0.user"));
        assert!(p.matches("cpu.eth0.100.user"));
        assert!(!p.matches("cpu..user"));
        assert!(Pattern::declared("load.1").matches("load.1"));
        assert!(!Pattern::declared("load.1").matches("load.15"));
    }

    #[test]
    fn globs_match_whole_names() {
        let p = Pattern::new("interface.*.rx_*");
        assert!(p.matches("interface.eth0.rx_bytes"));
        assert!(p.matches("interface.br-lan.rx_packets"));
        assert!(!p.matches("interface.eth0.tx_bytes"));
        assert!(!p.matches("xinterface.eth0.rx_bytes"));
        assert!(Pattern::new("cpu.?").matches("cpu.0"));
        assert!(Pattern::new("t?mp").matches("tämp"));
        assert!(!Pattern::new("cpu.?").matches("cpu.10"));
        assert!(Pattern::new("*").matches(""));
        assert!(Pattern::new("a*b*c").matches("aXbYbZc"));
        assert!(!Pattern::new("a*b*c").matches("aXbYbZ"));
    }

    #[test]
    fn many_stars_stay_fast() {
        let p = Pattern::new(&"*a".repeat(50));
        assert!(!p.matches(&"a".repeat(49)));
    }

    #[test]
    fn selectors_include_then_exclude() {
        let s = Selector {
            include: vec![Pattern::new("cpu.*")],
            exclude: vec![Pattern::new("cpu.idle")],
        };
        assert!(s.accepts("cpu.user"));
        assert!(!s.accepts("cpu.idle"));
        assert!(!s.accepts("load.1"));
        assert!(Selector::default().accepts("anything"));
    }

    #[test]
    fn text_patterns_are_substrings_unless_they_have_wildcards() {
        assert!(TextPattern::new("ok").matches("status: ok\n"));
        assert!(!TextPattern::new("ok").matches("status: down"));
        assert!(TextPattern::new("*\"status\": \"up\"*").matches("{\"status\": \"up\"}"));
        assert!(!TextPattern::new("up*").matches("{\"status\": \"up\"}"));
        assert_eq!(TextPattern::new("a*").as_str(), "a*");
    }
}
