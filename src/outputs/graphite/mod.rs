//! Graphite (carbon): metric paths and the plaintext line format.

pub mod path;
pub mod plaintext;
