//! Deliberate panics at named points, to test that pipit survives them or exits so that its init
//! system restarts it. Only a build with the `fault-injection` feature (tests, never a package)
//! has them; elsewhere [`point`] does nothing.
//!
//! `PIPIT_FAULTS` lists the panics, comma-separated, each `POINT@N`: panic the N-th time (from 1)
//! the point is reached. `writer.write@3,router@5` panics in the third output write and the fifth
//! batch the router routes.

/// Panics here if `PIPIT_FAULTS` asks for it at this pass.
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    use std::sync::{Mutex, OnceLock};

    /// Each planned panic: the point, the pass it fires at, and the passes so far.
    static PLAN: OnceLock<Mutex<Vec<(String, u64, u64)>>> = OnceLock::new();
    let plan = PLAN.get_or_init(|| {
        let spec = std::env::var("PIPIT_FAULTS").unwrap_or_default();
        let plan = spec
            .split(',')
            .filter_map(|item| {
                let (point, at) = item.trim().split_once('@')?;
                Some((point.to_owned(), at.parse().ok()?, 0))
            })
            .collect();
        Mutex::new(plan)
    });
    let fire = {
        let mut plan = plan.lock().unwrap_or_else(|e| e.into_inner());
        plan.iter_mut()
            .filter(|(point, _, _)| point == name)
            .any(|(_, at, seen)| {
                *seen += 1;
                *seen == *at
            })
    };
    if fire {
        panic!("fault injected at {name}");
    }
}

/// Does nothing: this build has no fault injection.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}
