//! How pipit names a series for Prometheus: a metric family and its labels from a service name,
//! its declaration (when it has one), its source's prefix, host, tags and attributes. The
//! `/metrics` endpoint and the `prometheus_remote_write` output both name series this way.
//!
//! The rule (docs/http-server.md, "Names"): the source's prefix and the declared name are joined
//! with `_`; a `<placeholder>` that is a whole dot-separated part of the declared name is taken out
//! of the name and becomes a label named after it (`cpu.<core>.<state>` gives
//! `cpu_percent{core="0",state="user"}`); every character other than an ASCII letter, digit or `_`
//! becomes `_`, and a name starting with a digit gets a leading `_`. The declaration's unit, in
//! lower case and as a base unit (`ms_per_second` becomes `seconds_per_second`, its values
//! divided by 1000), is appended (`_bytes`, `_seconds`, `_percent`, `_per_second`, …) unless it
//! is `count`, `state` or empty, or the name holds it already. A metric without a declaration, or
//! whose declared name would keep no literal part, is named after its whole service name. Every
//! family is a gauge: a declared name ending in `_total` (kept for counters) ends in `_all`.
//!
//! Labels, in this order: the placeholders, `host`, `tags` (the tags joined with `,`) when there
//! are any, then the attributes. Label names are sanitised like metric names, a name starting
//! with `__` (reserved) gets `label` in front, and a label whose name is already taken is left out.

use std::collections::BTreeMap;

use crate::pattern::Pattern;

/// Units that add no suffix: a plain number, a count of things, a state code.
const NO_SUFFIX_UNITS: [&str; 3] = ["", "count", "state"];

/// What a metric's declaration says of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared<'a> {
    /// The declared name without the prefix, with `<placeholders>`, such as `cpu.<core>.user`.
    pub name: &'a str,
    /// The declared unit, such as `bytes_per_second`.
    pub unit: &'a str,
}

/// Where a series comes from: everything its name and labels are made of.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The service name, as emitted (with the prefix).
    pub service: &'a str,
    /// The source's prefix (empty for none).
    pub prefix: &'a str,
    /// The metric's declaration, when it has one.
    pub declared: Option<Declared<'a>>,
    /// The host.
    pub host: &'a str,
    /// The tags.
    pub tags: &'a [String],
    /// The attributes.
    pub attributes: &'a BTreeMap<String, String>,
}

/// The name and labels of one series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    /// The metric family's name.
    pub family: String,
    /// The labels, sanitised names with their values, in the rule's order.
    pub labels: Vec<(String, String)>,
}

/// The declared metrics of one configured source instance: what an output that sees only events
/// finds a service name's declaration in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceNames {
    /// The instance's prefix (empty for none).
    pub prefix: String,
    /// Its type's declarations, each with the pattern of the names it covers.
    pub declared: Vec<(Pattern, Declared<'static>)>,
}

impl SourceNames {
    /// The names of an instance with `prefix` whose type declares `declared` (name and unit).
    pub fn new(
        prefix: &str,
        declared: impl IntoIterator<Item = (&'static str, &'static str)>,
    ) -> SourceNames {
        SourceNames {
            prefix: prefix.to_owned(),
            declared: declared
                .into_iter()
                .map(|(name, unit)| (Pattern::declared(name), Declared { name, unit }))
                .collect(),
        }
    }
}

/// The prefix and declaration of `service`, as the metric catalogue finds them for the source
/// that emitted it: the first of `sources` (in config order) whose prefix `service` starts with
/// and one of whose declared names it matches. `None` when no source declares it.
pub fn declaration<'a>(
    sources: &'a [SourceNames],
    service: &str,
) -> Option<(&'a str, Declared<'static>)> {
    sources.iter().find_map(|source| {
        let name = if source.prefix.is_empty() {
            service
        } else {
            service
                .strip_prefix(source.prefix.as_str())?
                .strip_prefix('.')?
        };
        let (_, declared) = source.declared.iter().find(|(p, _)| p.matches(name))?;
        Some((source.prefix.as_str(), *declared))
    })
}

/// The family and labels of a series, by the rule in the module docs.
pub fn series(origin: &Origin<'_>) -> Series {
    let unprefixed = if origin.prefix.is_empty() {
        Some(origin.service)
    } else {
        origin
            .service
            .strip_prefix(origin.prefix)
            .and_then(|n| n.strip_prefix('.'))
    };
    let mut labels = Labels::default();
    let declared = origin
        .declared
        .zip(unprefixed)
        .and_then(|(d, name)| Some((d, split_declared(d.name, name)?)));
    let family = match declared {
        Some((d, (literal, holes))) => {
            for (label, value) in holes {
                labels.push(&label, &value);
            }
            let base = if origin.prefix.is_empty() {
                literal
            } else {
                format!("{}.{literal}", origin.prefix)
            };
            with_unit(sanitise(&base), d.unit)
        }
        None => {
            let name = sanitise(origin.service);
            origin
                .declared
                .map_or(name.clone(), |d| with_unit(name, d.unit))
        }
    };
    labels.push("host", origin.host);
    if !origin.tags.is_empty() {
        labels.push("tags", &origin.tags.join(","));
    }
    for (key, value) in origin.attributes {
        labels.push(key, value);
    }
    Series {
        family,
        labels: labels.0,
    }
}

/// A declared unit as Prometheus names it, with the factor that turns a value into it: base
/// units, lower case (`ms_per_second` becomes `seconds_per_second`, `dBm` becomes `dbm`).
pub fn base_unit(unit: &str) -> (String, f64) {
    match unit {
        "ms_per_second" => ("seconds_per_second".to_owned(), 0.001),
        _ => (sanitise(unit).to_ascii_lowercase(), 1.0),
    }
}

/// `name` with its unit appended unless the unit adds none or the name holds it already; words
/// the name ends with are not repeated (`rx_bytes` in `bytes_per_second` becomes
/// `rx_bytes_per_second`). A gauge never ends in `_total`, which Prometheus keeps for counters:
/// that last word becomes `_all`.
fn with_unit(name: String, unit: &str) -> String {
    let mut name = match name.strip_suffix("_total") {
        Some(head) => format!("{head}_all"),
        None if name == "total" => "all".to_owned(),
        None => name,
    };
    if NO_SUFFIX_UNITS.contains(&unit) {
        return name;
    }
    let unit = base_unit(unit).0;
    if format!("_{name}_").contains(&format!("_{unit}_")) {
        return name;
    }
    let words: Vec<&str> = unit.split('_').collect();
    let shared = (1..=words.len())
        .rev()
        .find(|&n| {
            let head = words[..n].join("_");
            name == head || name.ends_with(&format!("_{head}"))
        })
        .unwrap_or(0);
    for word in &words[shared..] {
        name.push('_');
        name.push_str(word);
    }
    name
}

/// Label pairs being built; a name already taken is skipped.
#[derive(Debug, Default)]
struct Labels(Vec<(String, String)>);

impl Labels {
    fn push(&mut self, name: &str, value: &str) {
        let mut name = sanitise(name);
        if name.starts_with("__") {
            // Reserved for Prometheus's own use.
            name.insert_str(0, "label");
        }
        if self.0.iter().any(|(taken, _)| *taken == name) {
            return;
        }
        self.0.push((name, value.to_owned()));
    }
}

/// `name` as a metric or label name: characters other than ASCII letters, digits and `_` become
/// `_`, and a leading digit gets a `_` before it.
fn sanitise(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// One part of a declared name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part<'a> {
    Literal(&'a str),
    Hole(&'a str),
}

/// Splits `name` (a service name without its prefix) by its `declared` name: the literal parts
/// joined with `.`, and each placeholder's name with the value it holds in `name`. `None` when a
/// placeholder is not a whole dot-separated part, no literal part is left, or `name` does not
/// match.
fn split_declared(declared: &str, name: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut parts = Vec::new();
    for segment in declared.split('.') {
        match segment.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
            Some(hole) if !hole.contains(['<', '>']) => parts.push(Part::Hole(hole)),
            _ if segment.contains(['<', '>']) => return None,
            _ => parts.push(Part::Literal(segment)),
        }
    }
    if !parts.iter().any(|p| matches!(p, Part::Literal(_))) {
        return None;
    }
    let mut values = Vec::new();
    if !match_parts(&parts, name, &mut values) {
        return None;
    }
    let literal: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Literal(l) => Some(*l),
            Part::Hole(_) => None,
        })
        .collect();
    let holes = parts
        .iter()
        .filter_map(|p| match p {
            Part::Hole(h) => Some((*h).to_owned()),
            Part::Literal(_) => None,
        })
        .zip(values.into_iter().map(str::to_owned))
        .collect();
    Some((literal.join("."), holes))
}

/// Matches `name` against `parts` (joined by dots; a hole takes one or more characters, dots
/// included), pushing each hole's value; the first match from the left wins.
fn match_parts<'n>(parts: &[Part<'_>], name: &'n str, values: &mut Vec<&'n str>) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return name.is_empty();
    };
    // What follows the part: nothing when it is the last, else a dot and the rest.
    let next = |after: &'n str, values: &mut Vec<&'n str>| {
        if rest.is_empty() {
            after.is_empty()
        } else {
            after
                .strip_prefix('.')
                .is_some_and(|after| match_parts(rest, after, values))
        }
    };
    match first {
        Part::Literal(l) => name
            .strip_prefix(l)
            .is_some_and(|after| next(after, values)),
        Part::Hole(_) => {
            let ends = name
                .char_indices()
                .skip(1)
                .map(|(i, _)| i)
                .chain([name.len()]);
            for end in ends.filter(|&e| e > 0) {
                let depth = values.len();
                values.push(&name[..end]);
                if next(&name[end..], values) {
                    return true;
                }
                values.truncate(depth);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_names_split_into_literal_parts_and_labels() {
        let s = |d, n| split_declared(d, n);
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(
            s("interface.<name>.rx_bytes", "interface.eth0.100.rx_bytes"),
            Some(("interface.rx_bytes".into(), pairs(&[("name", "eth0.100")])))
        );
        assert_eq!(
            s(
                "self.output.<name>.breaker.<target>",
                "self.output.g.breaker.10.0.0.1:2003"
            ),
            Some((
                "self.output.breaker".into(),
                pairs(&[("name", "g"), ("target", "10.0.0.1:2003")])
            ))
        );
        assert_eq!(s("<name>.<label>", "a.b"), None, "no literal part");
        assert_eq!(s("x<a>", "xy"), None, "a placeholder inside a part");
        assert_eq!(s("load.1", "load.15"), None);
        assert_eq!(s("cpu.<core>.user", "cpu..user"), None);
    }

    #[test]
    fn names_are_sanitised_and_suffixed_once() {
        assert_eq!(sanitise("1a.b-c"), "_1a_b_c");
        assert_eq!(sanitise("é"), "_");
        assert_eq!(with_unit("rx_bytes".into(), "bytes"), "rx_bytes");
        assert_eq!(
            with_unit("rx".into(), "bytes_per_second"),
            "rx_bytes_per_second"
        );
        assert_eq!(with_unit("procs".into(), "count"), "procs");
        assert_eq!(
            with_unit("processes_total".into(), "count"),
            "processes_all"
        );
        assert_eq!(
            with_unit("memory_percent_used".into(), "percent"),
            "memory_percent_used"
        );
        assert_eq!(with_unit("signal".into(), "dBm"), "signal_dbm");
        assert_eq!(
            with_unit("disk_io_time".into(), "ms_per_second"),
            "disk_io_time_seconds_per_second"
        );
        assert_eq!(base_unit("ms_per_second").1, 0.001);
        let mut l = Labels::default();
        l.push("__name__", "x");
        l.push("a b", "1");
        l.push("a-b", "2");
        assert_eq!(
            l.0,
            [
                ("label__name__".to_owned(), "x".to_owned()),
                ("a_b".to_owned(), "1".to_owned())
            ]
        );
    }

    #[test]
    fn a_service_finds_its_declaration_past_the_prefix() {
        let sources = [
            SourceNames::new("edge", [("load.1", ""), ("load.5", "")]),
            SourceNames::new(
                "",
                [
                    ("interface.<name>.rx_bytes", "bytes_per_second"),
                    ("<name>", ""),
                ],
            ),
        ];
        let found = |service| declaration(&sources, service).map(|(p, d)| (p, d.name));
        assert_eq!(found("edge.load.5"), Some(("edge", "load.5")));
        assert_eq!(found("load.5"), Some(("", "<name>")));
        assert_eq!(
            found("interface.eth0.100.rx_bytes"),
            Some(("", "interface.<name>.rx_bytes"))
        );
        assert_eq!(declaration(&sources[..1], "edge.load.15"), None);
        assert_eq!(declaration(&sources[..1], "edgeload.1"), None);
    }

    #[test]
    fn a_series_takes_its_labels_in_order_and_skips_taken_names() {
        let attributes = BTreeMap::from([
            ("host".to_owned(), "shadowed".to_owned()),
            ("site name".to_owned(), "lab".to_owned()),
        ]);
        let tags = ["a".to_owned(), "b".to_owned()];
        let origin = Origin {
            service: "edge.cpu.0.user",
            prefix: "edge",
            declared: Some(Declared {
                name: "cpu.<core>.<state>",
                unit: "percent",
            }),
            host: "gw",
            tags: &tags,
            attributes: &attributes,
        };
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            series(&origin),
            Series {
                family: "edge_cpu_percent".into(),
                labels: vec![
                    pair("core", "0"),
                    pair("state", "user"),
                    pair("host", "gw"),
                    pair("tags", "a,b"),
                    pair("site_name", "lab"),
                ],
            }
        );
        let undeclared = Origin {
            service: "router.wan-1.rtt",
            prefix: "",
            declared: None,
            tags: &[],
            ..origin
        };
        assert_eq!(
            series(&undeclared),
            Series {
                family: "router_wan_1_rtt".into(),
                labels: vec![pair("host", "gw"), pair("site_name", "lab")],
            }
        );
    }
}
