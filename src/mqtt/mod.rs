//! MQTT 3.1.1, the protocol the `mqtt` output and the `mqtt` source both speak: [`codec`] encodes
//! and decodes the packets, [`client`] holds one connection to a broker (as a publisher or a
//! subscriber), and [`topic`] maps events to topics and payloads and topics back to service names.
//! See docs/outputs-mqtt.md and docs/sources.md.

pub mod client;
pub mod codec;
pub mod topic;

/// The port of MQTT over TCP.
pub const DEFAULT_PORT: u16 = 1883;

/// The port of MQTT over TLS.
pub const DEFAULT_TLS_PORT: u16 = 8883;
