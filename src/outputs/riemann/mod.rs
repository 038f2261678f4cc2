//! Riemann: events as protobuf messages over TCP, UDP or TLS.
//!
//! [`RiemannClient`] is usable on its own, without the agent; the `riemann` output type
//! ([`output`]) drives one from an output's writer thread.
//!
//! ```no_run
//! use std::time::Duration;
//! use pipit::Event;
//! use pipit::outputs::riemann::{RiemannClient, Timeouts, Transport};
//!
//! let timeouts = Timeouts { connect: Duration::from_secs(2), write: Duration::from_secs(2), ack: Duration::from_secs(5) };
//! let mut client = RiemannClient::connect("riemann.example:5555", Transport::Tcp, timeouts)?;
//! client.send(&Event::new("cpu.user", "r1").with_metric(12.5).with_state("ok"))?;
//! client.close()?;
//! # Ok::<(), pipit::outputs::riemann::RiemannError>(())
//! ```

pub mod client;
pub mod output;
pub mod proto;

#[cfg(feature = "tls")]
pub use crate::tls::TlsSettings;
pub use client::{
    DEFAULT_PORT, DEFAULT_TLS_PORT, MAX_DATAGRAM, MAX_REPLY, RiemannClient, RiemannError, Timeouts,
    Transport,
};
pub use output::TYPE;
