//! Delivery: the queue in front of each output and the writer thread that drains it in batches,
//! and the pieces every output shares (targets and strategies, retries with backoff, circuit
//! breaker, consistent hashing, rate limit, disk spool, fallback). Written once, shared by every
//! output; see docs/delivery.md for the settings and the guarantees.

pub mod backoff;
pub mod breaker;
pub mod carbon_ch;
pub mod config;
pub mod rate_limit;
pub mod spool;
pub mod targets;
pub mod writer;

pub use writer::{OutputHandle, wire_fallbacks};

use crate::event::Event;
use crate::outputs::OutputConfig;

/// An estimate of the memory an event holds: its own size and the text it points to. The queue's
/// byte bound counts with it.
pub fn event_bytes(event: &Event) -> u64 {
    let text = event.service.len()
        + event.host.len()
        + event.description.as_ref().map_or(0, String::len)
        + event.tags.iter().map(|t| t.len() + 24).sum::<usize>()
        + event
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + 64)
            .sum::<usize>();
    (std::mem::size_of::<Event>() + text) as u64
}

/// Checks every `fallback`: it names another output, and following fallbacks never comes back.
pub fn check_fallbacks(outputs: &[OutputConfig]) -> Result<(), String> {
    for o in outputs {
        let mut seen = vec![o.name.as_str()];
        let mut next = o.delivery.fallback.as_deref();
        while let Some(name) = next {
            let Some(target) = outputs.iter().find(|t| t.name == name) else {
                return Err(format!(
                    "output \"{}\": fallback \"{name}\" is not an output of this config",
                    o.name
                ));
            };
            if seen.contains(&name) {
                return Err(format!(
                    "output \"{}\": fallbacks go round in a circle ({} -> {name})",
                    o.name,
                    seen.join(" -> ")
                ));
            }
            seen.push(name);
            next = target.delivery.fallback.as_deref();
        }
    }
    Ok(())
}
