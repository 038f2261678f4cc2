//! One Graphite datapoint: a metric path, a value and a Unix timestamp, checked once so that every
//! encoder can write it without asking again.

use std::fmt;

use super::plaintext::MAX_LINE;
use crate::event::Metric;

/// The longest metric path, in bytes: a line of this path with the longest value and timestamp
/// still fits under carbon's [`MAX_LINE`].
pub const MAX_PATH: usize = MAX_LINE - 64;

/// A datapoint carbon will take: a path without white space, a finite value, a timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Datapoint {
    path: String,
    value: Metric,
    timestamp: i64,
}

/// Why a datapoint was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatapointError {
    /// The path is empty; give every datapoint a name.
    EmptyPath,
    /// The path is longer than [`MAX_PATH`] bytes, so carbon would drop the connection.
    PathTooLong(usize),
    /// The path holds white space or a control character, which would split carbon's line.
    UnsafePath,
    /// The value is NaN or infinite; carbon drops NaN silently and cannot store the infinities.
    NotFinite,
}

impl fmt::Display for DatapointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatapointError::EmptyPath => f.write_str("empty metric path"),
            DatapointError::PathTooLong(n) => {
                write!(f, "metric path of {n} bytes is longer than {MAX_PATH}")
            }
            DatapointError::UnsafePath => {
                f.write_str("metric path holds white space or a control character")
            }
            DatapointError::NotFinite => f.write_str("value is not a finite number"),
        }
    }
}

impl std::error::Error for DatapointError {}

impl Datapoint {
    /// A datapoint, or why carbon would not take it.
    pub fn new(
        path: impl Into<String>,
        value: impl Into<Metric>,
        timestamp: i64,
    ) -> Result<Datapoint, DatapointError> {
        let path = path.into();
        let value = value.into();
        check_path(&path)?;
        check_value(value)?;
        Ok(Datapoint {
            path,
            value,
            timestamp,
        })
    }

    /// The metric path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The value.
    pub fn value(&self) -> Metric {
        self.value
    }

    /// Seconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
}

/// Checks that carbon can take `path`.
pub fn check_path(path: &str) -> Result<(), DatapointError> {
    if path.is_empty() {
        return Err(DatapointError::EmptyPath);
    }
    if path.len() > MAX_PATH {
        return Err(DatapointError::PathTooLong(path.len()));
    }
    // Bytes first: the common all-ASCII path never decodes characters.
    if path
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        || (!path.is_ascii() && path.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(DatapointError::UnsafePath);
    }
    Ok(())
}

/// Checks that `value` is finite.
pub fn check_value(value: Metric) -> Result<(), DatapointError> {
    match value {
        Metric::Float(v) if !v.is_finite() => Err(DatapointError::NotFinite),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_carbon_would_drop() {
        assert_eq!(Datapoint::new("", 1i64, 0), Err(DatapointError::EmptyPath));
        assert_eq!(
            Datapoint::new("a b", 1i64, 0),
            Err(DatapointError::UnsafePath)
        );
        assert_eq!(
            Datapoint::new("a\u{a0}b", 1i64, 0),
            Err(DatapointError::UnsafePath)
        );
        assert_eq!(
            Datapoint::new("a\u{85}b", 1i64, 0),
            Err(DatapointError::UnsafePath)
        );
        assert_eq!(
            Datapoint::new("a\x0bb", 1i64, 0),
            Err(DatapointError::UnsafePath)
        );
        assert_eq!(
            Datapoint::new("a", f64::NAN, 0),
            Err(DatapointError::NotFinite)
        );
        assert_eq!(
            Datapoint::new("x".repeat(MAX_PATH + 1), 1i64, 0),
            Err(DatapointError::PathTooLong(MAX_PATH + 1))
        );
        let d = Datapoint::new("ünï.cøde", 2.5, 7).unwrap();
        assert_eq!(
            (d.path(), d.value(), d.timestamp()),
            ("ünï.cøde", Metric::Float(2.5), 7)
        );
    }
}
