//! Delivery: the queue in front of each output ([`queue`]) and the writer thread that drains it in batches,
//! and the pieces every output shares (targets and strategies, retries with backoff, circuit
//! breaker, consistent hashing, rate limit, disk spool, fallback). Written once, shared by every
//! output; see docs/delivery.md for the settings and the guarantees.

pub mod backoff;
pub mod breaker;
pub mod c_relay_ch;
pub mod carbon_ch;
pub mod config;
mod py_printable;
pub mod queue;
pub mod rate_limit;
pub mod spool;
pub mod targets;
pub mod writer;

pub use config::OutputConfig;
pub use writer::{OutputHandle, wire_fallbacks};

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

#[cfg(test)]
mod tests {
    use crate::config_file;

    fn errors(outputs: &str) -> Vec<String> {
        let text = format!(r#"{{"outputs": [{outputs}]}}"#);
        match config_file::parse("t.json", &text) {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("{e:?}")],
        }
    }

    #[test]
    fn a_fallback_must_name_another_output_without_a_circle() {
        let a = r#"{"type": "stdout", "name": "a", "fallback": "b"}"#;
        let b = r#"{"type": "stdout", "name": "b"}"#;
        assert!(errors(&format!("{a}, {b}")).is_empty());
        let e = errors(a);
        assert!(
            e[0].contains("fallback \\\"b\\\" is not an output"),
            "{e:?}"
        );
        let e = errors(r#"{"type": "stdout", "name": "a", "fallback": "a"}"#);
        assert!(e[0].contains("go round in a circle"), "{e:?}");
        let b = r#"{"type": "stdout", "name": "b", "fallback": "a"}"#;
        let e = errors(&format!("{a}, {b}"));
        assert!(e[0].contains("go round in a circle (a -> b -> a)"), "{e:?}");
    }
}
