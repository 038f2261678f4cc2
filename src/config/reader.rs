//! The second stage of config loading: typed values out of the [`json`](super::json) tree.
//!
//! Every component reads its own section through a [`Table`], which remembers the key path and
//! which keys were asked for, so that an unknown key is refused with the list of known ones. Errors
//! are collected in [`Problems`] rather than returned at the first one: `pipit check` shows them all.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::duration;
use super::error::ConfigError;
use super::json::{Node, Value};

/// The errors found so far in one config file.
#[derive(Debug)]
pub struct Problems {
    file: String,
    errors: Vec<ConfigError>,
}

impl Problems {
    /// An empty list for the file shown as `file` in messages.
    pub fn new(file: &str) -> Problems {
        Problems {
            file: file.to_owned(),
            errors: Vec::new(),
        }
    }

    /// Records that the value at `field` is wrong, with a message saying what was expected.
    pub fn at(&mut self, field: &Field<'_>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            pos: Some(field.node.pos),
            path: field.path.clone(),
            message: message.into(),
        });
    }

    /// Records a wrong value: `expected <expected>, got <what was there>`, where a secret is
    /// shown by its kind alone ([`super::secret`]).
    pub fn expected(&mut self, field: &Field<'_>, expected: &str) {
        let got = super::secret::describe(&field.path, &field.node.value);
        self.at(field, format!("expected {expected}, got {got}"));
    }

    /// True when nothing was wrong.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors, in the order found.
    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}

/// A value in the tree together with its key path, such as `sources[2].interval`.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    /// The value and its position.
    pub node: &'a Node,
    /// The key path from the top of the file.
    pub path: String,
}

impl<'a> Field<'a> {
    /// The top of the document.
    pub fn root(node: &'a Node) -> Field<'a> {
        Field {
            node,
            path: String::new(),
        }
    }

    fn child(&self, key: &str, node: &'a Node) -> Field<'a> {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Field { node, path }
    }

    /// The field as an object whose keys are read one by one; `None` (and an error) otherwise.
    pub fn table(&self, problems: &mut Problems) -> Option<Table<'a>> {
        match &self.node.value {
            Value::Object(entries) => Some(Table {
                field: self.clone(),
                entries,
                used: vec![false; entries.len()],
                known: Vec::new(),
            }),
            _ => {
                problems.expected(self, "an object");
                None
            }
        }
    }

    /// The field as an array of fields; `None` (and an error) otherwise.
    pub fn items(&self, problems: &mut Problems) -> Option<Vec<Field<'a>>> {
        match &self.node.value {
            Value::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, node)| Field {
                        node,
                        path: format!("{}[{i}]", self.path),
                    })
                    .collect(),
            ),
            _ => {
                problems.expected(self, "an array");
                None
            }
        }
    }

    /// The field as a non-empty array, each item read by `read` (which records its own errors);
    /// `None` when the field is not an array, is empty (an error naming `what` it should hold),
    /// or an item did not read.
    pub fn non_empty_list<T>(
        &self,
        what: &str,
        problems: &mut Problems,
        mut read: impl FnMut(&Field<'a>, &mut Problems) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.items(problems)?;
        if items.is_empty() {
            problems.expected(self, &format!("at least one {what}"));
            return None;
        }
        let values: Vec<T> = items
            .iter()
            .filter_map(|item| read(item, problems))
            .collect();
        (values.len() == items.len()).then_some(values)
    }

    /// The field as a typed value; `None` (and an error) when it does not fit.
    pub fn parse<T: FromJson>(&self, problems: &mut Problems) -> Option<T> {
        T::from_json(self, problems)
    }

    /// The field as a string, if it is one, without recording an error.
    pub fn as_str(&self) -> Option<&'a str> {
        match &self.node.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// An object being read key by key.
#[derive(Debug)]
pub struct Table<'a> {
    field: Field<'a>,
    entries: &'a [(String, Node)],
    used: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'a> Table<'a> {
    /// The key path of the object itself.
    pub fn path(&self) -> &str {
        &self.field.path
    }

    /// The object as a field, for errors about the object as a whole.
    pub fn as_field(&self) -> &Field<'a> {
        &self.field
    }

    /// The raw field under `key`, marked as known and used; `None` when absent.
    pub fn field(&mut self, key: &'static str) -> Option<Field<'a>> {
        self.known.push(key);
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        self.used[i] = true;
        Some(self.field.child(key, &self.entries[i].1))
    }

    /// The value under `key`, or `None` when absent or wrong (wrong values are recorded).
    pub fn get<T: FromJson>(&mut self, key: &'static str, problems: &mut Problems) -> Option<T> {
        self.field(key)?.parse(problems)
    }

    /// The value under `key`, or `default` when absent (or wrong: then an error is recorded).
    pub fn get_or<T: FromJson>(
        &mut self,
        key: &'static str,
        default: T,
        problems: &mut Problems,
    ) -> T {
        self.get(key, problems).unwrap_or(default)
    }

    /// The value under `key`; records `missing required key` when absent.
    pub fn require<T: FromJson>(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<T> {
        match self.field(key) {
            Some(f) => f.parse(problems),
            None => {
                problems.at(&self.field, format!("missing required key \"{key}\""));
                None
            }
        }
    }

    /// One of a fixed set of words under `key`, or `default` when absent.
    pub fn choice(
        &mut self,
        key: &'static str,
        choices: &[&'static str],
        default: &'static str,
        problems: &mut Problems,
    ) -> &'static str {
        let Some(field) = self.field(key) else {
            return default;
        };
        if let Some(found) = field
            .as_str()
            .and_then(|s| choices.iter().find(|c| **c == s))
        {
            return found;
        }
        let list: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
        problems.expected(&field, &format!("one of {}", list.join(", ")));
        default
    }

    /// A duration under `key` that must be at least `min`; `default` when absent.
    pub fn duration_at_least(
        &mut self,
        key: &'static str,
        default: Duration,
        min: Duration,
        problems: &mut Problems,
    ) -> Duration {
        let Some(field) = self.field(key) else {
            return default;
        };
        match field.parse::<Duration>(problems) {
            Some(d) if d >= min => d,
            Some(_) => {
                problems.expected(
                    &field,
                    &format!("a duration of at least {}", duration::format(min)),
                );
                default
            }
            None => default,
        }
    }

    /// A whole number under `key` within `min..=max`; `default` when absent.
    pub fn number_in(
        &mut self,
        key: &'static str,
        default: u64,
        min: u64,
        max: u64,
        problems: &mut Problems,
    ) -> u64 {
        let Some(field) = self.field(key) else {
            return default;
        };
        match field.parse::<u64>(problems) {
            Some(n) if (min..=max).contains(&n) => n,
            Some(_) => {
                problems.expected(&field, &format!("a whole number from {min} to {max}"));
                default
            }
            None => default,
        }
    }

    /// Records every key that no reader asked for, naming the keys that are known here.
    pub fn finish(&self, problems: &mut Problems) {
        for (i, (key, node)) in self.entries.iter().enumerate() {
            if !self.used[i] {
                let mut known = self.known.clone();
                known.sort_unstable();
                known.dedup();
                let field = self.field.child(key, node);
                problems.at(
                    &field,
                    format!("unknown key; expected one of: {}", known.join(", ")),
                );
            }
        }
    }
}

/// Reads the `type` key of a `what` section ("source", "output"), which must name an entry of
/// `registry`; a name in `left_out` (type, Cargo feature) is a type this build leaves out.
pub fn registry_type<T>(
    t: &mut Table<'_>,
    what: &str,
    registry: &'static [T],
    name_of: fn(&T) -> &'static str,
    left_out: &[(&str, &str)],
    problems: &mut Problems,
) -> Option<&'static T> {
    let names: Vec<String> = registry
        .iter()
        .map(|e| format!("\"{}\"", name_of(e)))
        .collect();
    let Some(field) = t.field("type") else {
        problems.at(
            t.as_field(),
            format!("missing required key \"type\"; one of {}", names.join(", ")),
        );
        return None;
    };
    let found = field
        .as_str()
        .and_then(|s| registry.iter().find(|e| name_of(e) == s));
    let missing = field
        .as_str()
        .and_then(|s| left_out.iter().find(|(name, _)| *name == s));
    match (found, missing) {
        (None, Some((name, feature))) => problems.at(
            &field,
            format!("{what} type \"{name}\" is not in this build (feature {feature})"),
        ),
        (None, None) => problems.expected(&field, &format!("one of {}", names.join(", "))),
        _ => {}
    }
    found
}

/// Reads an array of component sections with `read`, refusing two with the same name.
pub fn named_list<T>(
    field: &Field<'_>,
    problems: &mut Problems,
    mut read: impl FnMut(&mut Table<'_>, &mut Problems) -> Option<T>,
    name_of: impl Fn(&T) -> &str,
) -> Vec<T> {
    let Some(items) = field.items(problems) else {
        return Vec::new();
    };
    let mut list: Vec<T> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    for item in items {
        let Some(mut table) = item.table(problems) else {
            continue;
        };
        let Some(value) = read(&mut table, problems) else {
            continue;
        };
        if let Some(first) = list.iter().position(|v| name_of(v) == name_of(&value)) {
            let at = Field {
                node: item.node,
                path: format!("{}.name", item.path),
            };
            let message = format!(
                "\"{}\" is taken by {}; give each its own \"name\"",
                name_of(&value),
                paths[first]
            );
            problems.at(&at, message);
        }
        list.push(value);
        paths.push(item.path.clone());
    }
    list
}

/// A type that can be read from a config value.
pub trait FromJson: Sized {
    /// Reads the value, recording an error and returning `None` when it does not fit.
    fn from_json(field: &Field<'_>, problems: &mut Problems) -> Option<Self>;
}

impl FromJson for bool {
    fn from_json(field: &Field<'_>, problems: &mut Problems) -> Option<bool> {
        match field.node.value {
            Value::Bool(b) => Some(b),
            _ => {
                problems.expected(field, "true or false");
                None
            }
        }
    }
}

impl FromJson for String {
    fn from_json(field: &Field<'_>, problems: &mut Problems) -> Option<String> {
        match field.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                problems.expected(field, "a string");
                None
            }
        }
    }
}

impl FromJson for PathBuf {
    fn from_json(field: &Field<'_>, problems: &mut Problems) -> Option<PathBuf> {
        match field.as_str() {
            Some(s) if !s.is_empty() => Some(PathBuf::from(s)),
            _ => {
                problems.expected(field, "a path");
                None
            }
        }
    }
}

impl FromJson for u64 {
    fn from_json(field: &Field<'_>, problems: &mut Problems) -> Option<u64> {
        match &field.node.value {
            Value::Number { text } => match text.parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    problems.expected(field, "a whole number of 0 or more");
                    None
                }
            },
            _ => {
                problems.expected(field, "a whole number");
                None
            }
        }
    }
}

impl FromJson for f64 {
    fn from_json(field: &Field<'_>, problems: &mut Problems) -> Option<f64> {
        match &field.node.value {
            Value::Number { text } => match text.parse::<f64>() {
                Ok(n) if n.is_finite() => Some(n),
                _ => {
                    problems.expected(field, "a finite number");
                    None
                }
            },
            _ => {
                problems.expected(field, "a number");
                None
            }
        }
    }
}

impl FromJson for Duration {
    fn from_json(field: &Field<'_>, problems: &mut Problems) -> Option<Duration> {
        match field.as_str().and_then(duration::parse) {
            Some(d) => Some(d),
            None => {
                problems.expected(field, duration::EXPECTED);
                None
            }
        }
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(field: &Field<'_>, problems: &mut Problems) -> Option<Vec<T>> {
        let items = field.items(problems)?;
        let before = problems.errors.len();
        let values: Vec<T> = items
            .iter()
            .filter_map(|item| item.parse(problems))
            .collect();
        (problems.errors.len() == before).then_some(values)
    }
}

impl FromJson for BTreeMap<String, String> {
    fn from_json(field: &Field<'_>, problems: &mut Problems) -> Option<BTreeMap<String, String>> {
        let Value::Object(entries) = &field.node.value else {
            problems.expected(field, "an object of strings");
            return None;
        };
        let before = problems.errors.len();
        let map = entries
            .iter()
            .filter_map(|(k, node)| {
                Some((k.clone(), field.child(k, node).parse::<String>(problems)?))
            })
            .collect();
        (problems.errors.len() == before).then_some(map)
    }
}

/// Reads the JSON object `text` with `read`, as a component's config section: the value, or every
/// error found (with unknown keys). For tests of component readers.
#[cfg(test)]
pub(crate) fn read_section<T>(
    text: &str,
    read: impl FnOnce(&mut Table<'_>, &mut Problems) -> Option<T>,
) -> Result<T, Vec<String>> {
    let doc = super::json::parse(text).map_err(|e| vec![format!("{e:?}")])?;
    let mut problems = Problems::new("t.json");
    let value = Field::root(&doc).table(&mut problems).and_then(|mut t| {
        let value = read(&mut t, &mut problems);
        t.finish(&mut problems);
        value
    });
    match value {
        Some(v) if problems.is_empty() => Ok(v),
        _ => Err(problems
            .into_errors()
            .iter()
            .map(|e| e.to_string())
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::json::parse;
    use super::*;

    fn messages(problems: Problems) -> Vec<String> {
        problems
            .into_errors()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_registry_type_tells_a_type_left_out_of_the_build_from_an_unknown_one() {
        const REGISTRY: &[&str] = &["cpu", "load"];
        let read = |text: &str| {
            let doc = parse(text).unwrap();
            let mut p = Problems::new("t.json");
            let mut t = Field::root(&doc).table(&mut p).unwrap();
            let found = registry_type(
                &mut t,
                "source",
                REGISTRY,
                |n| n,
                &[("exec", "exec")],
                &mut p,
            );
            (found.copied(), messages(p))
        };
        assert_eq!(read(r#"{"type": "load"}"#), (Some("load"), vec![]));
        let (found, e) = read(r#"{"type": "exec"}"#);
        assert_eq!(found, None);
        assert_eq!(
            e,
            ["t.json:1:10: type: source type \"exec\" is not in this build (feature exec)"]
        );
        let (found, e) = read(r#"{"type": "nope"}"#);
        assert_eq!(found, None);
        assert!(
            e[0].ends_with(r#"expected one of "cpu", "load", got "nope""#),
            "{e:?}"
        );
    }

    #[test]
    fn reads_typed_values_and_defaults() {
        let doc = parse(r#"{"n": 3, "d": "5m", "tags": ["a", "b"], "attrs": {"k": "v"}}"#).unwrap();
        let mut p = Problems::new("t.json");
        let mut t = Field::root(&doc).table(&mut p).unwrap();
        assert_eq!(t.get_or("n", 0u64, &mut p), 3);
        assert_eq!(
            t.get_or("d", Duration::ZERO, &mut p),
            Duration::from_secs(300)
        );
        assert_eq!(t.get_or("missing", 7u64, &mut p), 7);
        assert_eq!(
            t.get::<Vec<String>>("tags", &mut p).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(
            t.get::<BTreeMap<String, String>>("attrs", &mut p).unwrap()["k"],
            "v"
        );
        t.finish(&mut p);
        assert!(p.is_empty(), "{:?}", messages(p));
    }

    #[test]
    fn every_error_names_file_position_path_and_expectation() {
        let doc = parse(
            "{\n \"a\": {\"interval\": \"ten\", \"typo\": 1},\n \"n\": -1,\n \"f\": \"x\"\n}",
        )
        .unwrap();
        let mut p = Problems::new("pipit.json");
        let mut top = Field::root(&doc).table(&mut p).unwrap();
        let mut a = top.field("a").unwrap().table(&mut p).unwrap();
        let _ = a.get::<Duration>("interval", &mut p);
        a.finish(&mut p);
        let _ = top.get::<u64>("n", &mut p);
        let _ = top.choice("f", &["json", "graphite"], "json", &mut p);
        top.finish(&mut p);
        assert_eq!(
            messages(p),
            vec![
                "pipit.json:2:20: a.interval: expected a duration such as \"500ms\", \"10s\", \"5m\", \"1h\" or \"1d\", got \"ten\"",
                "pipit.json:2:35: a.typo: unknown key; expected one of: interval",
                "pipit.json:3:7: n: expected a whole number of 0 or more, got the number -1",
                "pipit.json:4:7: f: expected one of \"json\", \"graphite\", got \"x\"",
            ]
        );
    }

    #[test]
    fn array_items_have_indexed_paths() {
        let doc = parse(r#"{"list": ["a", 2]}"#).unwrap();
        let mut p = Problems::new("c.json");
        let mut t = Field::root(&doc).table(&mut p).unwrap();
        assert_eq!(t.get::<Vec<String>>("list", &mut p), None);
        assert_eq!(
            messages(p),
            vec!["c.json:1:16: list[1]: expected a string, got the number 2"]
        );
    }

    #[test]
    fn range_checks_say_the_range() {
        let doc = parse(r#"{"q": 0, "i": "0s"}"#).unwrap();
        let mut p = Problems::new("c.json");
        let mut t = Field::root(&doc).table(&mut p).unwrap();
        assert_eq!(t.number_in("q", 5, 1, 10, &mut p), 5);
        assert_eq!(
            t.duration_at_least(
                "i",
                Duration::from_secs(1),
                Duration::from_millis(10),
                &mut p
            ),
            Duration::from_secs(1)
        );
        assert_eq!(
            messages(p),
            vec![
                "c.json:1:7: q: expected a whole number from 1 to 10, got the number 0",
                "c.json:1:15: i: expected a duration of at least 10ms, got \"0s\"",
            ]
        );
    }
}
