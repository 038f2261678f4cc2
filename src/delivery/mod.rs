//! Delivery: the queue in front of each output and the writer thread that drains it in batches,
//! and the pieces every output shares. Written once, shared by every output.

pub mod carbon_ch;
pub mod writer;

pub use writer::OutputHandle;
