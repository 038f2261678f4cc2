//! What the watch and probe sources share: the instance name in their service names, and metrics
//! that carry a verdict.

use super::Emitter;
use crate::config::reader::Table;
use crate::event::{Kind, Metric, State};

/// The instance name as the source list reads it: `name`, or the type's name when unset. The
/// list itself reports a `name` that is not a string; here it counts as unset.
pub fn name(t: &mut Table<'_>, kind: &str) -> String {
    t.field("name")
        .and_then(|f| f.as_str())
        .unwrap_or(kind)
        .to_owned()
}

/// Emits a probe's metric carrying the probe's verdict: `state` and the `description` saying why.
/// A non-finite float is left out, as [`Emitter::metric`] does.
pub fn judged(
    emit: &mut Emitter<'_>,
    service: &str,
    metric: Metric,
    state: &str,
    description: &str,
) {
    let Some(metric) = (match metric {
        Metric::Float(v) => Metric::float(v),
        m => Some(m),
    }) else {
        return;
    };
    let e = emit.event(service, Kind::Metric);
    e.metric = Some(metric);
    e.state = Some(State::new(state));
    e.description = Some(description.to_owned());
}
