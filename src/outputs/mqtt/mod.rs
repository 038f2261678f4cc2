//! MQTT: events published to an MQTT 3.1.1 broker, one message per event or per collection, at
//! QoS 0 or 1, over TCP or TLS.
//!
//! [`output`] is the `mqtt` output type the delivery layer drives, on the protocol of
//! `crate::mqtt`; [`discovery`] announces its metrics to Home Assistant. See
//! docs/outputs-mqtt.md.

pub mod discovery;
pub mod output;

pub use output::TYPE;
