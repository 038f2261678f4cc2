//! Delivery: the queue in front of each output and the writer thread that drains it in batches.
//! Written once, shared by every output.

pub mod writer;

pub use writer::OutputHandle;
