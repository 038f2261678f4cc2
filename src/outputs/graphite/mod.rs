//! Graphite (carbon): metric paths, the plaintext and pickle encoders, a client, and the output.
//!
//! The client is usable on its own, without the agent:
//!
//! ```no_run
//! use std::time::{SystemTime, UNIX_EPOCH};
//!
//! use pipit::outputs::graphite::{Datapoint, GraphiteClient, Protocol, Timeouts, decode_path, encode_path};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
//! let mut carbon = GraphiteClient::connect("127.0.0.1:2004", Protocol::Pickle, Timeouts::default())?;
//! carbon.send(&Datapoint::new("lab.router.load", 0.42, now)?)?;
//!
//! // Any text as path sections, each one path node, encoded reversibly.
//! let path = encode_path(&["lab", "rüter.lan", "temp"]);
//! assert_eq!(path, "lab.xn--rter%2Elan-65a.temp");
//! assert_eq!(decode_path(&path)?, ["lab", "rüter.lan", "temp"]);
//! let many: Vec<Datapoint> = (0..1000).map(|i| Datapoint::new(path.as_str(), i, now - i)).collect::<Result<_, _>>()?;
//! carbon.send_many(&many)?;
//! carbon.close()?;
//! # Ok(())
//! # }
//! ```

pub mod batch;
pub mod client;
mod cursor;
pub mod datapoint;
pub mod output;
pub mod path;
pub mod pickle;
pub mod plaintext;
pub mod punycode;

pub use client::{GraphiteClient, GraphiteError, Protocol, Timeouts};
pub use datapoint::{Datapoint, DatapointError};
pub use output::TYPE;
pub use path::{DecodeError, decode_path, decode_section, encode_path, encode_section};

/// A path a property test can send, from its arbitrary `len` and `name`: `p` repeated, a dot and
/// the name without whitespace or control characters, cut to [`datapoint::MAX_PATH`] bytes.
#[cfg(test)]
fn test_path(len: u16, name: &str) -> String {
    use datapoint::MAX_PATH;
    let name: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    let mut path = format!("{}.{name}", "p".repeat(usize::from(len) % MAX_PATH));
    while path.len() > MAX_PATH {
        path.pop();
    }
    path
}
