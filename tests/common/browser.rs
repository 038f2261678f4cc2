//! A real browser for page tests: Debian's headless Chromium, driven over the DevTools protocol
//! on a pipe (`--remote-debugging-pipe`: messages are JSON ended by a NUL byte, read on the
//! browser's descriptor 3 and written on its descriptor 4). No WebSocket, no driver program.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, unbounded};
use serde_json::{Value, json};

use super::peers::{TempDir, wait_until};

/// Where tests/install-deps.sh puts Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one DevTools call may take.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// One headless Chromium with one page open; closed (and its process reaped) when dropped.
pub struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Console errors and warnings, uncaught exceptions and failed loads seen so far.
    problems: Vec<String>,
    _profile: TempDir,
}

impl Browser {
    /// Starts Chromium with a fresh profile and a page of `width` × `height` CSS pixels (as a
    /// phone when `mobile`), and opens `url` in it.
    pub fn open(url: &str, width: u32, height: u32, mobile: bool) -> Browser {
        let profile = TempDir::new("chromium");
        // The shell hands the browser its stdin as descriptor 3 and its stdout as descriptor 4.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}; run tests/install-deps.sh"));
        let to_browser = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, from_browser) = unbounded();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop();
                if let Ok(value) = serde_json::from_slice(&message) {
                    if tx.send(value).is_err() {
                        return;
                    }
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            to_browser,
            from_browser,
            next_id: 0,
            session: String::new(),
            problems: Vec::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(domain, json!({}));
        }
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        browser.call("Page.navigate", json!({"url": url}));
        browser
    }

    /// Sends one call (to the page once it is attached) and returns its result, keeping the
    /// problems reported meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("chromium is gone: {e}"));
        let deadline = Instant::now() + CALL_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = match self.from_browser.recv_timeout(left) {
                Ok(answer) => answer,
                Err(RecvTimeoutError::Timeout) => panic!("chromium did not answer {method}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium closed during {method}"),
            };
            if answer["id"] == id {
                if let Some(error) = answer.get("error") {
                    panic!("{method}: {error}");
                }
                return answer["result"].clone();
            }
            self.note(&answer);
        }
    }

    /// Keeps an event that reports a problem on the page.
    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        let problem = match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => Some(params["exceptionDetails"].to_string()),
            Some("Runtime.consoleAPICalled")
                if matches!(
                    params["type"].as_str(),
                    Some("error" | "warning" | "assert")
                ) =>
            {
                Some(params["args"].to_string())
            }
            Some("Log.entryAdded")
                if matches!(params["entry"]["level"].as_str(), Some("error" | "warning")) =>
            {
                Some(params["entry"].to_string())
            }
            _ => None,
        };
        self.problems.extend(problem);
    }

    /// The value of the script expression `js` in the page.
    pub fn eval(&mut self, js: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true}),
        );
        if let Some(e) = result.get("exceptionDetails") {
            panic!("{js}: {e}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `js` until it gives something other than `null` or `false`, and returns that;
    /// panics naming `what` after `deadline`.
    pub fn wait_for(&mut self, what: &str, deadline: Duration, js: &str) -> Value {
        wait_until(what, deadline, || {
            let v = self.eval(js);
            (!v.is_null() && v != false).then_some(v)
        })
    }

    /// Console errors and warnings, uncaught exceptions and failed loads reported so far.
    pub fn problems(&mut self) -> Vec<String> {
        while let Ok(event) = self.from_browser.try_recv() {
            self.note(&event);
        }
        self.problems.clone()
    }

    /// A PNG of the page as it is shown.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64_decode(shot["data"].as_str().unwrap())
    }
}

impl Drop for Browser {
    /// Asks the browser to close, and kills it by its pid if it does not within a few seconds.
    fn drop(&mut self) {
        self.session.clear();
        let mut close = serde_json::to_vec(&json!({"id": 0, "method": "Browser.close"})).unwrap();
        close.push(0);
        let _ = self.to_browser.write_all(&close);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c != b'=')
            .fold(0u32, |n, (i, &c)| n | u32::from(value(c)) << (18 - 6 * i));
        let bytes = chunk.iter().filter(|&&c| c != b'=').count() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..=bytes]);
    }
    out
}
