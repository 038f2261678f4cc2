//! What check commands print, read into values: one pure parser per output format.
//!
//! The parsers never fail as a whole: what they can read they return, and each part they cannot
//! read becomes a [`Problem`] that quotes it (truncated), so one bad line costs only itself.

pub mod graphite;
pub mod json;
pub mod nagios;
pub mod value;

use std::fmt;

use crate::event::Metric;
pub use crate::quote::quote;

/// The output format of a check command, as config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Nagios plugin: exit code for the state, text and performance data on stdout.
    Nagios,
    /// Graphite plaintext lines: `path value [timestamp]`.
    Graphite,
    /// JSON events: one object per line, or one array.
    Json,
    /// A single number.
    Value,
}

impl Format {
    /// The config names, in the order of [`Format::ALL`].
    pub const NAMES: [&'static str; 4] = ["nagios", "graphite", "json", "value"];
    /// Every format.
    pub const ALL: [Format; 4] = [
        Format::Nagios,
        Format::Graphite,
        Format::Json,
        Format::Value,
    ];

    /// The format called `name` in config.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Format::ALL[i])
    }
}

/// A part of the output that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line it is on, from 1; 0 when the message itself says where (an item of an array).
    pub line: usize,
    /// What was wrong, quoting the offending text.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => f.write_str(&self.message),
            n => write!(f, "line {n}: {}", self.message),
        }
    }
}

/// Reads each line of `text` with `parse_line` (which gives `None` for a line to skip) into `out`,
/// and what it refuses into `problems` with its line number.
fn each_line<T>(
    text: &str,
    parse_line: impl Fn(&str) -> Result<Option<T>, String>,
    out: &mut Vec<T>,
    problems: &mut Vec<Problem>,
) {
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(item)) => out.push(item),
            Ok(None) => {}
            Err(message) => problems.push(Problem {
                line: i + 1,
                message,
            }),
        }
    }
}

/// A number as check output writes it: a whole number when it is one, else a finite float.
/// `nan` and the infinities are refused.
pub fn number(text: &str) -> Option<Metric> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(Metric::Int(n));
    }
    // Rust's float parser also takes "inf" and "nan"; Metric::float refuses them.
    text.parse::<f64>().ok().and_then(Metric::float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_ints_when_whole() {
        assert_eq!(number("42"), Some(Metric::Int(42)));
        assert_eq!(number("-1.5"), Some(Metric::Float(-1.5)));
        assert_eq!(number("1e3"), Some(Metric::Float(1000.0)));
        assert_eq!(number("99999999999999999999"), Some(Metric::Float(1e20)));
        for bad in ["nan", "inf", "-infinity", "", "1,5", "0x10", "1 2"] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }

    #[test]
    fn format_names_round_trip() {
        for (name, format) in Format::NAMES.iter().zip(Format::ALL) {
            assert_eq!(Format::from_name(name), Some(format));
        }
        assert_eq!(Format::from_name("xml"), None);
    }
}
