//! pipit: a small, dependable monitoring agent for routers and edge boxes.
//!
//! Sources collect [`Event`]s on their own threads; a router fans them out to one bounded queue per
//! output; each output's writer thread delivers them. Everything is synchronous and thread-based.
//!
//! The library holds the whole agent; the `pipit` binary only parses arguments and calls it.

// `unsafe` is allowed only in `sys`, which wraps the few system calls std lacks.
#![deny(unsafe_code)]

pub mod agent;
pub mod aggregate;
pub mod base64;
pub mod cache;
#[cfg(feature = "exec")]
pub mod checks;
pub mod complain;
pub mod config;
pub mod config_file;
pub mod control;
pub mod crc32;
pub mod delivery;
pub mod dns;
pub mod event;
pub mod fault;
pub mod files;
#[cfg(feature = "http")]
pub mod http_client;
pub mod http_server;
#[cfg(feature = "http")]
pub mod http_tcp;
pub mod lifeline;
pub mod liveness;
pub mod logging;
pub mod md5;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod netlink;
pub mod once;
pub mod outputs;
pub mod pattern;
#[cfg(feature = "watch")]
pub mod pollers;
pub mod procfs;
pub mod prometheus_name;
#[cfg(any(feature = "riemann", feature = "remote_write"))]
pub mod protobuf;
pub mod quote;
pub mod router;
pub mod run;
pub mod schedule;
pub mod sources;
pub mod supervisor;
#[allow(unsafe_code)]
pub mod sys;
pub mod telemetry;
pub mod timed_read;
#[cfg(any(feature = "riemann", feature = "mqtt", feature = "tls"))]
pub mod tls;
pub mod udp;

pub use event::{Event, Kind, Metric, State};
