//! The head of an HTTP/1.x request: its request line and the one header the server reads
//! (`Authorization`), under limits on size and header count.

/// The request line and the header the server needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path, without a query string.
    pub path: String,
    /// The `Authorization` header's value, if sent.
    pub authorization: Option<String>,
}

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an HTTP/1.x request head.
    Malformed,
    /// Larger than the size limit.
    TooLarge,
    /// More header lines than the limit.
    TooManyHeaders,
}

/// Reads the request head at the start of `buf`: `Ok(None)` while it is incomplete and under
/// `max_bytes`; a refusal once it breaks a limit or the syntax.
pub fn parse(buf: &[u8], max_bytes: usize, max_headers: usize) -> Result<Option<Request>, Refusal> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() >= max_bytes {
            return Err(Refusal::TooLarge);
        }
        if buf.split(|&b| b == b'\n').count() > max_headers + 2 {
            return Err(Refusal::TooManyHeaders);
        }
        return Ok(None);
    };
    if end + 4 > max_bytes {
        return Err(Refusal::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| Refusal::Malformed)?;
    let mut lines = head.split("\r\n");
    let mut words = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(Refusal::Malformed);
    };
    if !version.starts_with("HTTP/1.")
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
    {
        return Err(Refusal::Malformed);
    }
    let mut authorization = None;
    let mut count = 0;
    for line in lines {
        count += 1;
        if count > max_headers {
            return Err(Refusal::TooManyHeaders);
        }
        let (name, value) = line.split_once(':').ok_or(Refusal::Malformed)?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(Refusal::Malformed);
        }
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_owned());
        }
    }
    Ok(Some(Request {
        method: method.to_owned(),
        path: target.split('?').next().unwrap_or(target).to_owned(),
        authorization,
    }))
}

/// Compares two byte strings in time that depends on their lengths only, not on where they
/// differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_head_gives_the_method_path_and_authorization() {
        let head = b"GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\nauthorization:  Basic YTpi \r\n\r\n";
        assert_eq!(
            parse(head, 1024, 8),
            Ok(Some(Request {
                method: "GET".into(),
                path: "/metrics".into(),
                authorization: Some("Basic YTpi".into()),
            }))
        );
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost", 1024, 8), Ok(None));
    }

    #[test]
    fn limits_and_syntax_are_enforced() {
        assert_eq!(parse(&[b'a'; 64], 64, 8), Err(Refusal::TooLarge));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(9));
        assert_eq!(
            parse(many.as_bytes(), 1024, 8),
            Err(Refusal::TooManyHeaders)
        );
        let unfinished = format!("GET / HTTP/1.1\r\n{}", "A: b\r\n".repeat(11));
        assert_eq!(
            parse(unfinished.as_bytes(), 1024, 8),
            Err(Refusal::TooManyHeaders)
        );
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/2\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nA b: c\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse(bad, 1024, 8), Err(Refusal::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn secrets_are_compared_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
