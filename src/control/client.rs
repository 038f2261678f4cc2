//! The client side of the control socket, as `pipit ctl` uses it: finding the socket, one call,
//! and the tables printed from the answers.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::DEFAULT_PATH;
use crate::config::json::{self, Node, Value};

/// The longest answer read, in bytes (100,000 metrics with metadata fit).
const MAX_ANSWER_BYTES: u64 = 128 << 20;

/// Why a call did not get a result.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// No socket file: the agent is not running (or uses another `control.socket`).
    NotRunning(PathBuf),
    /// The socket file exists but nothing listens: the agent is not running.
    Stale(PathBuf),
    /// The socket (or its directory) is not accessible to this user.
    PermissionDenied(PathBuf),
    /// The agent refused this user's uid (it is not in `control.allowed_uids`).
    Forbidden {
        /// The socket.
        path: PathBuf,
        /// The agent's words.
        message: String,
    },
    /// The agent answered with an error; its words say what to fix (a reload's config errors,
    /// say).
    Agent {
        /// The error code, such as `reload_failed`.
        code: String,
        /// The agent's words.
        message: String,
    },
    /// The connection failed otherwise: the error says why; is pipit stopping?
    Io {
        /// The socket.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// The answer was not what the protocol promises: this `pipit` and the running agent are
    /// probably different versions.
    BadAnswer(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const WHO: &str = "run as root or as a uid in control.allowed_uids";
        match self {
            ClientError::NotRunning(p) => {
                write!(f, "pipit is not running (no socket at {})", p.display())
            }
            ClientError::Stale(p) => write!(
                f,
                "pipit is not running (nothing answers on {})",
                p.display()
            ),
            ClientError::PermissionDenied(p) => {
                write!(f, "permission denied on {} ({WHO})", p.display())
            }
            ClientError::Forbidden { path, message } => write!(
                f,
                "permission denied on {}: {message} ({WHO})",
                path.display()
            ),
            ClientError::Agent { code, message } => write!(f, "{code}: {message}"),
            ClientError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            ClientError::BadAnswer(what) => write!(f, "unexpected answer from pipit: {what}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The socket to use: `named` if given; else the `control.socket` of the config file (`config`,
/// or the default config file if it exists); else the first default socket that exists.
pub fn socket_path(named: Option<&Path>, config: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = named {
        return Ok(path.to_owned());
    }
    let file = match config {
        Some(file) => Some(file),
        None => Some(Path::new(DEFAULT_PATH)).filter(|p| p.exists()),
    };
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let doc = json::parse(&text).map_err(|e| {
            format!(
                "{}:{}: invalid JSON ({}); name the socket with --socket",
                file.display(),
                e.pos,
                e.message
            )
        })?;
        if let Some(socket) = member(Some(&doc), "control")
            .and_then(|c| member(Some(c), "socket"))
            .and_then(as_str)
        {
            return Ok(PathBuf::from(socket));
        }
    }
    let defaults = super::default_sockets();
    Ok(defaults
        .iter()
        .find(|p| p.exists())
        .unwrap_or(&defaults[0])
        .clone())
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The answer line as received, without its newline: `{"result": …}`.
    pub line: String,
    /// The `result`.
    pub result: Node,
}

/// Sends one request (a JSON object) and returns the answer, waiting at most `timeout`.
pub fn call(path: &Path, request: &str, timeout: Duration) -> Result<Answer, ClientError> {
    let mut stream = UnixStream::connect(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => ClientError::NotRunning(path.to_owned()),
        io::ErrorKind::ConnectionRefused => ClientError::Stale(path.to_owned()),
        io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(path.to_owned()),
        _ => ClientError::Io {
            path: path.to_owned(),
            error,
        },
    })?;
    let io_error = |error| ClientError::Io {
        path: path.to_owned(),
        error,
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(io_error)?;
    let mut line = request.to_owned();
    line.push('\n');
    // A refused peer gets its answer and a closed socket: read it even when the write failed.
    let written = stream.write_all(line.as_bytes());
    let mut answer = String::new();
    let read = BufReader::new((&stream).take(MAX_ANSWER_BYTES)).read_line(&mut answer);
    if answer.is_empty() {
        return Err(match (written, read) {
            (Err(e), _) | (_, Err(e)) => io_error(e),
            _ => ClientError::BadAnswer("the connection closed without an answer".into()),
        });
    }
    let line = answer.trim_end().to_owned();
    let doc = json::parse(&line)
        .map_err(|e| ClientError::BadAnswer(format!("not JSON: {}", e.message)))?;
    if let Some(error) = member(Some(&doc), "error") {
        let code = text(member(Some(error), "code"));
        let message = member(Some(error), "message")
            .and_then(as_str)
            .unwrap_or("")
            .to_owned();
        return Err(if code == "forbidden" {
            ClientError::Forbidden {
                path: path.to_owned(),
                message,
            }
        } else {
            ClientError::Agent { code, message }
        });
    }
    match member(Some(&doc), "result") {
        Some(result) => Ok(Answer {
            result: result.clone(),
            line,
        }),
        None => Err(ClientError::BadAnswer(
            "neither a result nor an error".into(),
        )),
    }
}

/// The member `key` of an object.
fn member<'a>(node: Option<&'a Node>, key: &str) -> Option<&'a Node> {
    match &node?.value {
        Value::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, n)| n),
        _ => None,
    }
}

fn as_str(node: &Node) -> Option<&str> {
    match &node.value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn number(node: Option<&Node>) -> Option<f64> {
    match &node?.value {
        Value::Number { text } => text.parse().ok(),
        _ => None,
    }
}

fn items(node: Option<&Node>) -> &[Node] {
    match node.map(|n| &n.value) {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

/// A value as a table cell: strings bare, numbers as sent, `-` for null or missing.
fn text(node: Option<&Node>) -> String {
    match node.map(|n| &n.value) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number { text }) => text.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Array(_) | Value::Object(_)) => "…".into(),
    }
}

/// Lays out rows under a header, each column as wide as its widest cell; the last column is not
/// padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

/// Seconds as a short age such as `45s`, `3m20s`, `2h5m` or `4d3h`.
fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// Seconds as a short duration such as `85us`, `3.2ms` or `1.50s`.
fn took(seconds: f64) -> String {
    match seconds {
        s if s < 0.001 => format!("{:.0}us", s * 1e6),
        s if s < 1.0 => format!("{:.1}ms", s * 1e3),
        s => format!("{s:.2}s"),
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The `get_metrics` result as a table (or one name per line when it holds names only).
pub fn metrics_table(result: &Node) -> String {
    let metrics = items(member(Some(result), "metrics"));
    let names_only = metrics.iter().all(|m| matches!(m.value, Value::String(_)));
    let mut out = if names_only {
        metrics.iter().map(|m| text(Some(m)) + "\n").collect()
    } else {
        let now = now();
        let rows: Vec<Vec<String>> = metrics
            .iter()
            .map(|m| {
                let field = |key| member(Some(m), key);
                vec![
                    text(field("name")),
                    text(field("value")),
                    text(field("unit")),
                    number(field("time")).map_or("-".into(), |t| age(now - t)),
                    text(field("source")),
                    text(field("description")),
                ]
            })
            .collect();
        table(
            &["NAME", "VALUE", "UNIT", "AGE", "SOURCE", "DESCRIPTION"],
            &rows,
        )
    };
    let matched = number(member(Some(result), "matched")).unwrap_or(0.0) as usize;
    if matched > metrics.len() {
        out += &format!("({} of {matched} matching metrics shown)\n", metrics.len());
    }
    out
}

/// The `reload` result: its message.
pub fn reload_text(result: &Node) -> String {
    text(member(Some(result), "message")) + "\n"
}

/// The `status` result as text and two tables.
pub fn status_table(result: &Node) -> String {
    let now = now();
    let field = |key| member(Some(result), key);
    let config = |key| member(field("config"), key);
    let mut out = format!(
        "pipit {} (pid {}), up {}\nconfig {}, loaded {} ago\n{} metric(s) in the catalogue\n\n",
        text(field("version")),
        text(field("pid")),
        age(number(field("uptime")).unwrap_or(0.0)),
        text(config("file")),
        age(now - number(config("loaded")).unwrap_or(now)),
        text(field("metrics")),
    );
    let sources: Vec<Vec<String>> = items(field("sources"))
        .iter()
        .map(|s| {
            let field = |key| member(Some(s), key);
            vec![
                text(field("name")),
                text(field("type")),
                format!("{}s", text(field("interval"))),
                text(field("runs")),
                number(field("last_run"))
                    .map_or("never".into(), |t| format!("{} ago", age(now - t))),
                took(number(field("last_duration")).unwrap_or(0.0)),
                text(field("skipped_ticks")),
                text(field("errors")),
                text(field("restarts")),
                text(field("dropped")),
            ]
        })
        .collect();
    out += &table(
        &[
            "SOURCE", "TYPE", "INTERVAL", "RUNS", "LAST RUN", "DURATION", "SKIPPED", "ERRORS",
            "RESTARTS", "DROPPED",
        ],
        &sources,
    );
    out.push('\n');
    let outputs: Vec<Vec<String>> = items(field("outputs"))
        .iter()
        .map(|o| {
            [
                "name",
                "type",
                "events_in",
                "events_out",
                "failed",
                "dropped_queue_full",
                "dropped_shutdown",
                "queue_depth",
            ]
            .iter()
            .map(|k| text(member(Some(o), k)))
            .collect()
        })
        .collect();
    out += &table(
        &[
            "OUTPUT", "TYPE", "IN", "OUT", "FAILED", "DROPPED", "SHUTDOWN", "QUEUE",
        ],
        &outputs,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Node {
        json::parse(text).unwrap()
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["long".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        );
        assert_eq!(t, "A     BB\nlong  x\ns     y\n");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(5.9), "5s");
        assert_eq!(age(200.0), "3m20s");
        assert_eq!(age(7500.0), "2h5m");
        assert_eq!(age(-3.0), "0s");
        assert_eq!(took(0.000085), "85us");
        assert_eq!(took(0.0032), "3.2ms");
        assert_eq!(took(1.5), "1.50s");
    }

    #[test]
    fn metrics_print_as_names_or_a_table() {
        let names = node(r#"{"metrics": ["a", "b"], "matched": 3}"#);
        assert_eq!(
            metrics_table(&names),
            "a\nb\n(2 of 3 matching metrics shown)\n"
        );
        let rows = node(&format!(
            r#"{{"matched": 1, "metrics": [{{"name": "load.1", "value": 0.5, "unit": "",
            "time": {}, "source": "load", "description": "run-queue length"}}]}}"#,
            now()
        ));
        let t = metrics_table(&rows);
        assert!(
            t.starts_with("NAME    VALUE  UNIT  AGE  SOURCE  DESCRIPTION\n"),
            "{t}"
        );
        assert!(t.contains("load.1  0.5"), "{t}");
    }

    #[test]
    fn a_missing_socket_says_so() {
        let path = Path::new("/nonexistent/pipit.sock");
        let e = call(path, r#"{"call": "status"}"#, Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipit is not running (no socket at /nonexistent/pipit.sock)"
        );
    }
}
