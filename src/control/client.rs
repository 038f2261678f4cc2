//! The client side of the control socket, as `pipit ctl` uses it: finding the socket, one call,
//! and the tables printed from the answers.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::config::DEFAULT_PATH;

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
    /// The agent answered with an error.
    Agent {
        /// The error code, such as `reload_failed`.
        code: String,
        /// The agent's words.
        message: String,
    },
    /// The connection failed otherwise.
    Io {
        /// The socket.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// The answer was not what the protocol promises.
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

impl std::error::Error for ClientError {}

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
        let doc: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: invalid JSON ({e}); name the socket with --socket",
                file.display()
            )
        })?;
        if let Some(socket) = doc.pointer("/control/socket").and_then(Value::as_str) {
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

/// Sends one request and returns the `result` of the answer, waiting at most `timeout`.
pub fn call(path: &Path, request: &Value, timeout: Duration) -> Result<Value, ClientError> {
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
    let mut line = request.to_string();
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
    let answer: Value = serde_json::from_str(&answer)
        .map_err(|e| ClientError::BadAnswer(format!("not JSON: {e}")))?;
    if let Some(error) = answer.get("error") {
        let code = error["code"].as_str().unwrap_or("unknown").to_owned();
        let message = error["message"].as_str().unwrap_or("").to_owned();
        return Err(if code == "forbidden" {
            ClientError::Forbidden {
                path: path.to_owned(),
                message,
            }
        } else {
            ClientError::Agent { code, message }
        });
    }
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| ClientError::BadAnswer("neither a result nor an error".into()))
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

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `get_metrics` result as a table (or one name per line when it holds names only).
pub fn metrics_table(result: &Value) -> String {
    let empty = Vec::new();
    let metrics = result["metrics"].as_array().unwrap_or(&empty);
    let mut out = if metrics.iter().all(Value::is_string) {
        metrics.iter().map(|m| text(m) + "\n").collect()
    } else {
        let now = now();
        let rows: Vec<Vec<String>> = metrics
            .iter()
            .map(|m| {
                vec![
                    text(&m["name"]),
                    text(&m["value"]),
                    text(&m["unit"]),
                    m["time"].as_f64().map_or("-".into(), |t| age(now - t)),
                    text(&m["source"]),
                    text(&m["description"]),
                ]
            })
            .collect();
        table(
            &["NAME", "VALUE", "UNIT", "AGE", "SOURCE", "DESCRIPTION"],
            &rows,
        )
    };
    let matched = result["matched"].as_u64().unwrap_or(0);
    if matched > metrics.len() as u64 {
        out += &format!("({} of {matched} matching metrics shown)\n", metrics.len());
    }
    out
}

/// The `status` result as text and two tables.
pub fn status_table(result: &Value) -> String {
    let now = now();
    let empty = Vec::new();
    let mut out = format!(
        "pipit {} (pid {}), up {}\nconfig {}, loaded {} ago\n{} metric(s) in the catalogue\n\n",
        text(&result["version"]),
        text(&result["pid"]),
        age(result["uptime"].as_f64().unwrap_or(0.0)),
        text(&result["config"]["file"]),
        age(now - result["config"]["loaded"].as_f64().unwrap_or(now)),
        text(&result["metrics"]),
    );
    let sources: Vec<Vec<String>> = result["sources"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|s| {
            vec![
                text(&s["name"]),
                text(&s["type"]),
                format!("{}s", text(&s["interval"])),
                text(&s["runs"]),
                s["last_run"]
                    .as_f64()
                    .map_or("never".into(), |t| format!("{} ago", age(now - t))),
                format!(
                    "{:.1}ms",
                    s["last_duration"].as_f64().unwrap_or(0.0) * 1000.0
                ),
                text(&s["skipped_ticks"]),
                text(&s["errors"]),
                text(&s["restarts"]),
                text(&s["dropped"]),
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
    let outputs: Vec<Vec<String>> = result["outputs"]
        .as_array()
        .unwrap_or(&empty)
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
            .map(|k| text(&o[*k]))
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
    use serde_json::json;

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
    }

    #[test]
    fn metrics_print_as_names_or_a_table() {
        let names = json!({"metrics": ["a", "b"], "matched": 3});
        assert_eq!(
            metrics_table(&names),
            "a\nb\n(2 of 3 matching metrics shown)\n"
        );
        let rows = json!({"matched": 1, "metrics": [{"name": "load.1", "value": 0.5, "unit": "",
            "time": now(), "source": "load", "description": "run-queue length"}]});
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
        let e = call(path, &json!({"call": "status"}), Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipit is not running (no socket at /nonexistent/pipit.sock)"
        );
    }
}
