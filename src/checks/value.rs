//! A single number on stdout, surrounded by any white space.

use super::{number, quote};
use crate::event::Metric;

/// Reads the number; the error says what was there instead.
pub fn parse(text: &str) -> Result<Metric, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("expected a number, got no output".to_owned());
    }
    number(text).ok_or_else(|| format!("expected a single finite number, got {}", quote(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_number() {
        assert_eq!(parse("42\n"), Ok(Metric::Int(42)));
        assert_eq!(parse("  -0.5 \n\n"), Ok(Metric::Float(-0.5)));
    }

    #[test]
    fn anything_else_is_an_error_quoting_it() {
        assert_eq!(parse(""), Err("expected a number, got no output".into()));
        assert_eq!(
            parse("1 2"),
            Err("expected a single finite number, got \"1 2\"".into())
        );
        assert_eq!(
            parse("NaN"),
            Err("expected a single finite number, got \"NaN\"".into())
        );
        assert!(parse("\u{fffd}\u{0}").is_err());
    }
}
