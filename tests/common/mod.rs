//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod certs;
pub mod disk;
pub mod netns;
pub mod outputs;
pub mod peers;
pub mod pipit;
pub mod sources;
