//! The control protocol: one JSON request per line in, one JSON response per line out.
//!
//! A request is an object whose `call` names what is asked: `get_metrics`, `status`, `reload` or
//! `stop`. A response is either `{"result": …}` or `{"error": {"code": …, "message": …}}`.
//! docs/control.md shows every request and response.
//!
//! [`parse_request`] is a pure function of the bytes of one line: it never panics, whatever the
//! input.

use serde::Serialize;

use crate::config::json;
use crate::config::reader::{Field, Problems};
use crate::event::Metric;
use crate::telemetry::catalogue::{Catalogue, Query, Row, Select};

/// The longest request line accepted, in bytes; a longer one is answered with
/// [`Code::TooLarge`] and the connection is closed.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The most memory a compiled selector regex may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The deepest nesting of groups a selector regex may have.
const REGEX_NEST_LIMIT: u32 = 32;

/// What a request asks for.
#[derive(Debug, Clone)]
pub enum Request {
    /// The metrics a query selects, with their metadata unless `metadata` is false.
    GetMetrics {
        /// Which metrics.
        query: Query,
        /// Whether each metric comes with its metadata (else names only).
        metadata: bool,
    },
    /// The agent's version, uptime, config, and per-source and per-output counters.
    Status,
    /// Re-read the config file, as SIGHUP does; the answer carries the errors of a refused one.
    Reload,
    /// Stop gracefully, as SIGTERM does.
    Stop,
}

/// Why a request failed, as the `code` of an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Code {
    /// The line is not JSON (or not UTF-8); fix the client.
    InvalidJson,
    /// The JSON is not a known request or has a wrong or unknown field; the message says which.
    InvalidRequest,
    /// The `selector` regex does not compile or is too big.
    BadRegex,
    /// The request line is longer than [`MAX_REQUEST_BYTES`]; the connection is closed.
    TooLarge,
    /// No complete request arrived within `control.request_timeout`; the connection is closed.
    Timeout,
    /// The peer's uid is not in `control.allowed_uids`; the connection is closed.
    Forbidden,
    /// Too many connections are open at once; try again.
    Busy,
    /// The new config was refused; the running one stays. The message lists the errors.
    ReloadFailed,
    /// The agent is stopping or did not answer in time.
    Unavailable,
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtocolError {
    /// What kind of failure.
    pub code: Code,
    /// What went wrong, in words.
    pub message: String,
}

impl ProtocolError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = serde_json::to_value(self.code).map_err(|_| std::fmt::Error)?;
        write!(f, "{}: {}", code.as_str().unwrap_or("error"), self.message)
    }
}

impl std::error::Error for ProtocolError {}

/// The calls, as the error for an unknown one lists them.
const CALLS: &str = "one of \"get_metrics\", \"status\", \"reload\", \"stop\"";

/// The name requests go by in error messages, in place of a file name.
const REQUEST: &str = "request";

/// Parses one request line (without or with its newline).
///
/// The line is read with the config's own JSON parser and typed reader, so errors name the
/// place and key the way config errors do (`request:1:31: limit: expected a whole number…`) and
/// unknown keys are refused.
pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    let text = std::str::from_utf8(line)
        .map_err(|e| ProtocolError::new(Code::InvalidJson, format!("not UTF-8: {e}")))?;
    let doc = json::parse(text).map_err(|e| {
        ProtocolError::new(
            Code::InvalidJson,
            format!("{REQUEST}:{}: not JSON: {}", e.pos, e.message),
        )
    })?;
    let mut problems = Problems::new(REQUEST);
    let request = read(&doc, &mut problems);
    match request {
        Some(request) if problems.is_empty() => request,
        _ => {
            let errors: Vec<String> = problems
                .into_errors()
                .iter()
                .map(|e| e.to_string())
                .collect();
            Err(ProtocolError::new(Code::InvalidRequest, errors.join("; ")))
        }
    }
}

/// A selector as written, compiled once the request is known to be valid.
enum Selector {
    Regex(String),
    Names(Vec<String>),
}

fn read(doc: &json::Node, problems: &mut Problems) -> Option<Result<Request, ProtocolError>> {
    let mut t = Field::root(doc).table(problems)?;
    let Some(field) = t.field("call") else {
        problems.at(t.as_field(), format!("missing \"call\": {CALLS}"));
        return None;
    };
    let request = match field.as_str() {
        Some("get_metrics") => {
            let selector = match t.field("selector") {
                None => None,
                Some(f) => match &f.node.value {
                    json::Value::String(re) => Some(Selector::Regex(re.clone())),
                    json::Value::Array(_) => f.parse(problems).map(Selector::Names),
                    _ => {
                        problems.expected(
                            &f,
                            "a regex (a string) or exact names (an array of strings)",
                        );
                        None
                    }
                },
            };
            let prefix = t.get("prefix", problems);
            let infix = t.get("infix", problems);
            let limit = t.get::<u64>("limit", problems);
            let metadata = t.get_or("metadata", true, problems);
            let hidden = t.get_or("hidden", false, problems);
            t.finish(problems);
            if !problems.is_empty() {
                return None;
            }
            let select = match selector {
                None => Select::All,
                Some(Selector::Names(names)) => Select::Names(names),
                Some(Selector::Regex(re)) => match compile(&re) {
                    Ok(re) => Select::Regex(re),
                    Err(e) => return Some(Err(e)),
                },
            };
            let query = Query {
                select,
                prefix,
                infix,
                limit: limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                hidden,
            };
            Request::GetMetrics { query, metadata }
        }
        Some("status") => Request::Status,
        Some("reload") => Request::Reload,
        Some("stop") => Request::Stop,
        _ => {
            problems.expected(&field, CALLS);
            return None;
        }
    };
    t.finish(problems);
    Some(Ok(request))
}

fn compile(re: &str) -> Result<regex_lite::Regex, ProtocolError> {
    regex_lite::RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| ProtocolError::new(Code::BadRegex, format!("selector: {e}")))
}

/// A success response line, newline included.
pub fn result_line(result: &impl Serialize) -> String {
    #[derive(Serialize)]
    struct Ok<'a, T> {
        result: &'a T,
    }
    match serde_json::to_string(&Ok { result }) {
        Ok(mut line) => {
            line.push('\n');
            line
        }
        Err(e) => error_line(&ProtocolError::new(
            Code::Unavailable,
            format!("cannot encode the answer: {e}"),
        )),
    }
}

/// An error response line, newline included.
pub fn error_line(error: &ProtocolError) -> String {
    #[derive(Serialize)]
    struct Err<'a> {
        error: &'a ProtocolError,
    }
    let mut line = serde_json::to_string(&Err { error })
        .unwrap_or_else(|_| r#"{"error":{"code":"unavailable","message":""}}"#.to_owned());
    line.push('\n');
    line
}

/// The result of a successful `reload`.
#[derive(Debug, Serialize)]
pub struct Reloaded<'a> {
    /// Always true.
    pub reloaded: bool,
    /// What now runs, such as `reloaded /etc/pipit/pipit.json: 3 source(s), 1 output(s)`.
    pub message: &'a str,
}

/// The result of `stop`.
#[derive(Debug, Serialize)]
pub struct Stopping {
    /// Always true.
    pub stopping: bool,
}

/// A metric with its metadata, as `get_metrics` returns it.
#[derive(Debug, Serialize)]
pub struct MetricRow<'a> {
    /// The service name.
    pub name: &'a str,
    /// The source instance that emitted it.
    pub source: &'a str,
    /// The source's type.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The declared unit (empty for a plain number), or null when undeclared.
    pub unit: Option<&'static str>,
    /// The declared meaning, or null when undeclared.
    pub description: Option<&'static str>,
    /// The source's interval, in seconds.
    pub interval: f64,
    /// The time to live of its events, in seconds.
    pub ttl: f64,
    /// The last value, or null for a state-only event.
    pub value: Option<Value>,
    /// When the last value was measured, in seconds since the Unix epoch.
    pub time: f64,
    /// The tags on its events.
    pub tags: &'a [String],
    /// Whether it is hidden (listed only with `hidden: true`).
    pub hidden: bool,
}

/// A metric value in JSON: integers stay integers.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl From<Metric> for Value {
    fn from(m: Metric) -> Value {
        match m {
            Metric::Int(v) => Value::Int(v),
            Metric::Float(v) => Value::Float(v),
        }
    }
}

impl<'a> From<&'a Row> for MetricRow<'a> {
    fn from(r: &'a Row) -> MetricRow<'a> {
        MetricRow {
            name: &r.name,
            source: &r.source.name,
            kind: r.source.kind,
            unit: r.info.map(|i| i.unit),
            description: r.info.map(|i| i.description),
            interval: r.source.interval.as_secs_f64(),
            ttl: r.source.ttl.as_secs_f64(),
            value: r.value.map(Value::from),
            time: r.time_us as f64 / 1e6,
            tags: &r.source.tags,
            hidden: r.source.hidden(),
        }
    }
}

/// Writes the result line of `get_metrics` (rows with metadata, or names only) for `query` to
/// `out` one row at a time, as [`Catalogue::walk`] hands them over: the answer is never held
/// whole in memory; with a buffered `out`, what is held is one chunk of rows and the buffer.
pub fn write_metrics_result(
    out: &mut impl std::io::Write,
    catalogue: &Catalogue,
    query: &Query,
    metadata: bool,
) -> std::io::Result<()> {
    out.write_all(br#"{"result":{"metrics":["#)?;
    let mut first = true;
    let matched = catalogue.walk(query, |row| {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        if metadata {
            serde_json::to_writer(&mut *out, &MetricRow::from(&row))?;
        } else {
            serde_json::to_writer(&mut *out, row.name.as_str())?;
        }
        Ok::<(), std::io::Error>(())
    })?;
    writeln!(out, r#"],"matched":{matched}}}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_reads_as_its_code_and_words() {
        let e = ProtocolError::new(Code::ReloadFailed, "pipit.json:3:4: bad");
        assert_eq!(e.to_string(), "reload_failed: pipit.json:3:4: bad");
    }

    fn error(line: &str) -> ProtocolError {
        parse_request(line.as_bytes()).unwrap_err()
    }

    #[test]
    fn the_four_calls_parse() {
        assert!(matches!(
            parse_request(br#"{"call":"status"}"#),
            Ok(Request::Status)
        ));
        assert!(matches!(
            parse_request(b"{\"call\":\"reload\"}\n"),
            Ok(Request::Reload)
        ));
        assert!(matches!(
            parse_request(br#"{"call":"stop"}"#),
            Ok(Request::Stop)
        ));
        let Ok(Request::GetMetrics { query, metadata }) = parse_request(
            br#"{"call":"get_metrics","selector":"^cpu\\.","prefix":"cpu.","infix":"us","limit":3,"metadata":false,"hidden":true}"#,
        ) else {
            panic!("get_metrics did not parse");
        };
        assert!(!metadata);
        assert!(query.hidden);
        assert_eq!(query.limit, Some(3));
        assert_eq!(query.prefix.as_deref(), Some("cpu."));
        assert_eq!(query.infix.as_deref(), Some("us"));
        assert!(matches!(query.select, Select::Regex(re) if re.is_match("cpu.0")));
        let Ok(Request::GetMetrics { query, metadata }) =
            parse_request(br#"{"call":"get_metrics","selector":["a","b"]}"#)
        else {
            panic!("get_metrics did not parse");
        };
        assert!(metadata);
        assert!(!query.hidden);
        assert!(matches!(query.select, Select::Names(n) if n == ["a", "b"]));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(
            error("nope").message,
            "request:1:1: not JSON: expected a value, found 'n'"
        );
        assert_eq!(error("\u{0}").code, Code::InvalidJson);
        assert_eq!(
            parse_request(b"\xff\xfe").unwrap_err().code,
            Code::InvalidJson
        );
        assert_eq!(
            error("[1]").message,
            "request:1:1: expected an object, got an array"
        );
        assert_eq!(
            error("{}").message,
            "request:1:1: missing \"call\": one of \"get_metrics\", \"status\", \"reload\", \"stop\""
        );
        let e = error(r#"{"call":"dance"}"#);
        assert_eq!(e.code, Code::InvalidRequest);
        assert_eq!(
            e.message,
            "request:1:9: call: expected one of \"get_metrics\", \"status\", \"reload\", \"stop\", got \"dance\""
        );
        assert_eq!(
            error(r#"{"call":"get_metrics","limt":3}"#).message,
            "request:1:30: limt: unknown key; expected one of: call, hidden, infix, limit, metadata, prefix, selector"
        );
        assert_eq!(
            error(r#"{"call":"status","verbose":true}"#).message,
            "request:1:28: verbose: unknown key; expected one of: call"
        );
        assert_eq!(
            error(r#"{"call":"get_metrics","limit":-1,"hidden":"yes"}"#).message,
            "request:1:31: limit: expected a whole number of 0 or more, got the number -1; \
             request:1:43: hidden: expected true or false, got \"yes\""
        );
        assert_eq!(
            error(r#"{"call":"get_metrics","selector":3}"#).message,
            "request:1:34: selector: expected a regex (a string) or exact names (an array of strings), got the number 3"
        );
        assert_eq!(
            error(r#"{"call":"get_metrics","selector":["a",1]}"#).message,
            "request:1:39: selector[1]: expected a string, got the number 1"
        );
        let e = error(r#"{"call":"get_metrics","selector":"(unclosed"}"#);
        assert_eq!(e.code, Code::BadRegex);
        let deep = format!(
            r#"{{"call":"get_metrics","selector":"{}"}}"#,
            "(".repeat(40) + &")".repeat(40)
        );
        assert_eq!(error(&deep).code, Code::BadRegex);
        let huge = r#"{"call":"get_metrics","selector":"(?:a{1000}){1000}"}"#;
        assert_eq!(error(huge).code, Code::BadRegex);
    }

    /// Mangled variants of valid requests never panic and always get an answer.
    #[test]
    fn mangled_requests_never_panic() {
        const VALID: &[&[u8]] = &[
            br#"{"call":"get_metrics","selector":"^cpu\\.","prefix":"c","limit":3,"hidden":true}"#,
            br#"{"call":"get_metrics","selector":["a","b"],"metadata":false}"#,
            br#"{"call":"status"}"#,
        ];
        // Each edit: where, what (replace, remove, insert a special character), which byte.
        fn prop(which: usize, edits: Vec<(usize, u8, u8)>) -> bool {
            let mut line = VALID[which % VALID.len()].to_vec();
            for (at, what, byte) in edits.into_iter().take(4) {
                let at = at % line.len();
                match what % 3 {
                    0 => line[at] = byte,
                    1 => {
                        line.remove(at);
                    }
                    _ => {
                        let specials = b"{}[]\",:\\x0";
                        line.insert(at, specials[byte as usize % specials.len()]);
                    }
                }
                if line.is_empty() {
                    line.push(b'{');
                }
            }
            let _ = parse_request(&line);
            true
        }
        quickcheck::QuickCheck::new()
            .tests(20_000)
            .max_tests(20_000)
            .quickcheck(prop as fn(usize, Vec<(usize, u8, u8)>) -> bool);
    }

    #[test]
    fn deeply_nested_json_is_refused_without_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(error(&deep).code, Code::InvalidJson);
    }

    #[test]
    fn responses_are_one_line() {
        assert_eq!(
            error_line(&ProtocolError::new(Code::TooLarge, "too long\nreally")),
            "{\"error\":{\"code\":\"too_large\",\"message\":\"too long\\nreally\"}}\n"
        );
        assert_eq!(
            result_line(&Stopping { stopping: true }),
            "{\"result\":{\"stopping\":true}}\n"
        );
    }
}
