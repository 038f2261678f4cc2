//! The one helper through which sources build events.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::aggregate::Rates;
use crate::event::{Event, Kind, Metric, State};

/// What every event of one source instance carries, from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Put before every service name, joined with a dot; empty for none.
    pub prefix: String,
    /// The host name.
    pub host: String,
    /// Tags on every event.
    pub tags: Vec<String>,
    /// The time to live; by default twice the source's interval.
    pub ttl: Duration,
    /// Attributes on every event.
    pub attributes: BTreeMap<String, String>,
}

/// Collects the events of one collection, applying the instance's [`Template`].
#[derive(Debug)]
pub struct Emitter<'a> {
    template: &'a Template,
    time: SystemTime,
    events: Vec<Event>,
}

impl<'a> Emitter<'a> {
    /// An emitter whose events are timed at `time` (a source may override it per event).
    pub fn new(template: &'a Template, time: SystemTime) -> Emitter<'a> {
        Emitter {
            template,
            time,
            events: Vec::new(),
        }
    }

    /// Emits a metric event; a non-finite value is left out (NaN never leaves the agent).
    pub fn metric(&mut self, service: &str, value: impl Into<Metric>) {
        if let Some(metric) = value.into().finite() {
            self.event(service, Kind::Metric).metric = Some(metric);
        }
    }

    /// Emits a metric that carries a verdict: `state` and the `description` saying why. A
    /// non-finite value is left out, as with [`Emitter::metric`].
    pub fn judged(
        &mut self,
        service: &str,
        value: impl Into<Metric>,
        state: &str,
        description: &str,
    ) {
        if let Some(metric) = value.into().finite() {
            let e = self.event(service, Kind::Metric);
            e.metric = Some(metric);
            e.state = Some(State::new(state));
            e.description = Some(description.to_owned());
        }
    }

    /// Records the counter `service` in `rates` and, once it has a rate, emits it per second.
    pub fn rate(&mut self, rates: &mut Rates, service: &str, value: u64) {
        if let Some(rate) = rates.rate(service, value, self.time) {
            self.metric(service, rate);
        }
    }

    /// When this collection was made.
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// Emits an event with no metric yet and returns it, for a state, a description or a log line.
    pub fn event(&mut self, service: &str, kind: Kind) -> &mut Event {
        let t = self.template;
        let service = if t.prefix.is_empty() {
            service.to_owned()
        } else {
            format!("{}.{service}", t.prefix)
        };
        self.events.push(Event {
            service,
            host: t.host.clone(),
            state: None,
            description: None,
            metric: None,
            ttl: Some(t.ttl),
            tags: t.tags.clone(),
            attributes: t.attributes.clone(),
            time: self.time,
            kind,
        });
        self.events.last_mut().expect("just pushed")
    }

    /// Sets the attribute `key` to `value` on every event emitted since the first `from` (as
    /// [`Emitter::len`] gave it before them): the station, peer or client they are about.
    pub fn attribute_since(&mut self, from: usize, key: &str, value: &str) {
        for e in self.events.iter_mut().skip(from) {
            e.attributes.insert(key.to_owned(), value.to_owned());
        }
    }

    /// How many events were emitted so far.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events emitted, in order.
    pub fn into_events(self) -> Vec<Event> {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_the_template_and_drops_non_finite_values() {
        let template = Template {
            prefix: "edge".into(),
            host: "r1".into(),
            tags: vec!["lab".into()],
            ttl: Duration::from_secs(20),
            attributes: BTreeMap::from([("site".into(), "a".into())]),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut emit = Emitter::new(&template, t0);
        emit.metric("load.1", 0.5);
        emit.metric("bad", f64::NAN);
        emit.event("note", Kind::Log).description = Some("hi".into());
        emit.attribute_since(1, "peer", "x");
        let events = emit.into_events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].service, "edge.load.1");
        assert_eq!(events[0].host, "r1");
        assert_eq!(events[0].tags, vec!["lab"]);
        assert_eq!(events[0].ttl, Some(Duration::from_secs(20)));
        assert_eq!(events[0].attributes["site"], "a");
        assert_eq!(events[0].time, t0);
        assert_eq!(events[1].kind, Kind::Log);
        assert_eq!(events[1].attributes["peer"], "x");
        assert!(!events[0].attributes.contains_key("peer"));
    }
}
