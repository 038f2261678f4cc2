//! Reading an error answer of InfluxDB (or VictoriaMetrics): how many lines it refused, and its
//! reason in a few words.
//!
//! InfluxDB 1.x stores what it can of a batch and answers 400 with `partial write:` when it
//! refused some lines: `... dropped=N` counts points it refused (a field type conflict, a tag it
//! does not take), and each line it could not parse is quoted after `unable to parse '`. An answer
//! without `partial write:` refused the whole batch. The answer can be long (it quotes every bad
//! line, about 70 KB for one overlong key), so it is read as a stream: its beginning is kept for
//! the reason, its end for `dropped=`, and the `unable to parse` marks are counted on the way.

use std::io::Read;

/// The start of the answer kept for the reason, in bytes.
const HEAD: usize = 1024;
/// The end of the answer kept for `dropped=N`, in bytes.
const TAIL: usize = 64;
/// The most of an answer read; the rest is not waited for.
const MAX_ANSWER: u64 = 1 << 20;

const PARTIAL: &[u8] = b"partial write:";
const UNPARSED: &[u8] = b"unable to parse '";
const DROPPED: &[u8] = b"dropped=";

/// What an error answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The first bytes of the answer, as text.
    pub head: String,
    /// How many lines the server refused when it says it stored the others; `None` when the answer
    /// is not a partial write (all of the batch was refused).
    pub refused: Option<u64>,
}

/// Reads an answer from `body`, up to 1 MiB; a read error ends it where it is.
pub fn read(body: impl Read) -> Answer {
    let mut scan = Scan::default();
    let mut chunk = [0u8; 4096];
    let mut body = body.take(MAX_ANSWER);
    while let Ok(n) = body.read(&mut chunk) {
        if n == 0 {
            break;
        }
        scan.feed(&chunk[..n]);
    }
    scan.finish()
}

/// The state of an answer read so far.
#[derive(Debug, Default)]
struct Scan {
    head: Vec<u8>,
    /// The last bytes seen: the answer's end once it is all read, and the overlap that lets a
    /// mark split between two chunks be found.
    tail: Vec<u8>,
    unparsed: u64,
}

impl Scan {
    fn feed(&mut self, chunk: &[u8]) {
        let room = HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        // Marks wholly in the bytes carried over were counted with the chunk before; the tail
        // carried is longer than a mark, so one split between two chunks is found whole.
        let carried = self.tail.len();
        self.tail.extend_from_slice(chunk);
        self.unparsed += count(&self.tail, UNPARSED) - count(&self.tail[..carried], UNPARSED);
        if self.tail.len() > TAIL {
            self.tail.drain(..self.tail.len() - TAIL);
        }
    }

    fn finish(self) -> Answer {
        let partial = self.head.windows(PARTIAL.len()).any(|w| w == PARTIAL);
        let refused = partial.then(|| dropped(&self.tail) + self.unparsed);
        Answer {
            head: String::from_utf8_lossy(&self.head).into_owned(),
            refused,
        }
    }
}

/// How many times `mark` occurs in `text`.
fn count(text: &[u8], mark: &[u8]) -> u64 {
    text.windows(mark.len()).filter(|w| *w == mark).count() as u64
}

/// The `N` of the last `dropped=N` in `tail`, or 0.
fn dropped(tail: &[u8]) -> u64 {
    let Some(at) = tail.windows(DROPPED.len()).rposition(|w| w == DROPPED) else {
        return 0;
    };
    let digits = &tail[at + DROPPED.len()..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end])
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Answer {
        read(text.as_bytes())
    }

    #[test]
    fn a_partial_write_says_how_many_it_refused() {
        let conflict = r#"{"error":"partial write: field type conflict: input field \"value\" on measurement \"t\" is type integer, already exists as type float dropped=2"}"#;
        assert_eq!(answer(conflict).refused, Some(2));
        let unparsed = r#"{"error":"partial write: unable to parse 'd,host value=1 1': missing tag value\nunable to parse 'f value=1 xx': bad timestamp dropped=0"}"#;
        assert_eq!(answer(unparsed).refused, Some(2));
        let whole = r#"{"error":"unable to parse 'd,host value=1 1': missing tag value"}"#;
        assert_eq!(answer(whole).refused, None);
        assert_eq!(answer(whole).head, whole);
    }

    #[test]
    fn a_long_answer_keeps_its_start_and_its_count() {
        // Marks land across every chunk boundary, and dropped= only at the very end.
        let line = format!(
            "unable to parse '{}': max key length exceeded\\n",
            "k".repeat(997)
        );
        let text = format!(
            "{{\"error\":\"partial write: {} dropped=3\"}}",
            line.repeat(300)
        );
        assert!(text.len() > 300_000);
        let a = answer(&text);
        assert_eq!(a.refused, Some(303));
        assert_eq!(a.head.len(), HEAD);
        assert!(
            a.head
                .starts_with("{\"error\":\"partial write: unable to parse 'kkk")
        );
    }
}
