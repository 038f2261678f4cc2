//! Typed configuration, the ground floor every room reads its section with: JSON in with
//! positions kept ([`json`]), keys read into typed values with every error carrying file, place and
//! key path ([`reader`]), durations, secrets, and the `agent` section ([`agent`]).
//!
//! The whole file is assembled a floor higher, in [`crate::config_file`], from each room's reader.

pub mod agent;
pub mod duration;
pub mod error;
pub mod json;
pub mod reader;
pub mod secret;

pub use agent::AgentConfig;
pub use error::{ConfigError, ConfigErrors};

/// Where `pipit run` looks for its config when no `-c` is given.
pub const DEFAULT_PATH: &str = "/etc/pipit/pipit.json";
