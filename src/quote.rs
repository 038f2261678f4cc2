//! Quoting text pipit did not write (a check's output, a command's stderr, a config value) in
//! messages: in double quotes, control characters escaped, cut short so that one bad line cannot
//! flood a log.

/// The most characters quoted.
pub const QUOTE_CHARS: usize = 60;

/// `text` in double quotes with quotes, backslashes and control characters escaped, cut after
/// [`QUOTE_CHARS`] characters (marked with `…`).
pub fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i == QUOTE_CHARS {
            out.push('…');
            break;
        }
        if c == '"' || c == '\\' || c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_escape_and_truncate() {
        assert_eq!(quote("a\tb\"c"), r#""a\tb\"c""#);
        let long = "x".repeat(100);
        let q = quote(&long);
        assert_eq!(q.chars().count(), QUOTE_CHARS + 3);
        assert!(q.ends_with("…\""));
        assert_eq!(quote("\u{fffd}\u{0}"), "\"\u{fffd}\\0\"");
    }
}
