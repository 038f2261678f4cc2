//! Delivery: the queue in front of each output and the writer thread that drains it in batches,
//! and the pieces every output shares (backoff, circuit breaker, consistent hashing, rate limit,
//! disk spool). Written once, shared by every output.

pub mod backoff;
pub mod breaker;
pub mod carbon_ch;
pub mod rate_limit;
pub mod spool;
pub mod writer;

pub use writer::OutputHandle;
