//! MQTT: events published to an MQTT 3.1.1 broker, one message per event or per collection, at
//! QoS 0 or 1, over TCP or TLS.
//!
//! [`codec`] encodes and decodes the packets, [`client`] holds one connection, [`topic`] builds
//! topics and payloads from events, and [`output`] is the `mqtt` output type the delivery layer
//! drives. See docs/outputs-mqtt.md.

pub mod client;
pub mod codec;
pub mod discovery;
pub mod output;
pub mod topic;

pub use output::TYPE;
