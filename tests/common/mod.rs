//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod browser;
pub mod certs;
pub mod disk;
pub mod netns;
pub mod outputs;
pub mod peers;
pub mod pipit;
pub mod random;
pub mod sources;
