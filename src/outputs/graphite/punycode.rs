//! Punycode (RFC 3492): any Unicode text as letters, digits and `-`, and back.
//!
//! Used by the `percent` naming mode for path sections with non-ASCII characters. Unlike IDNA's
//! ToASCII there is no nameprep step (no case folding or normalisation), so decoding gives back
//! exactly the text that was encoded.

const BASE: u32 = 36;
const T_MIN: u32 = 1;
const T_MAX: u32 = 26;
const SKEW: u32 = 38;
const DAMP: u32 = 700;
const INITIAL_BIAS: u32 = 72;
const INITIAL_N: u32 = 128;

/// Appends the Punycode form of `input` to `out`: its ASCII characters in order, then (if there
/// were any) `-`, then the positions and values of the others as base-36 digits.
pub fn encode(input: &str, out: &mut String) {
    let code_points: Vec<u32> = input.chars().map(u32::from).collect();
    let basic = code_points.iter().filter(|&&c| c < INITIAL_N).count();
    out.extend(input.chars().filter(char::is_ascii));
    if basic > 0 {
        out.push('-');
    }
    // u64 so that no input a router could hold overflows (RFC 3492 section 6.4).
    let (mut n, mut delta, mut bias) = (u64::from(INITIAL_N), 0u64, INITIAL_BIAS);
    let mut handled = basic;
    while handled < code_points.len() {
        let m = code_points
            .iter()
            .map(|&c| u64::from(c))
            .filter(|&c| c >= n)
            .min()
            .unwrap_or(n);
        delta += (m - n) * (handled as u64 + 1);
        n = m;
        for &c in &code_points {
            let c = u64::from(c);
            if c < n {
                delta += 1;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = u64::from(threshold(k, bias));
                    if q < t {
                        break;
                    }
                    out.push(digit((t + (q - t) % (u64::from(BASE) - t)) as u32));
                    q = (q - t) / (u64::from(BASE) - t);
                    k += BASE;
                }
                out.push(digit(q as u32));
                bias = adapt(delta, handled as u64 + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta += 1;
        n += 1;
    }
}

/// The text whose Punycode form is `input`; `None` when `input` is not valid Punycode.
pub fn decode(input: &str) -> Option<String> {
    let (basic, digits) = match input.rfind('-') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => ("", input),
    };
    if !basic.is_ascii() {
        return None;
    }
    let mut output: Vec<char> = basic.chars().collect();
    let (mut n, mut i, mut bias) = (INITIAL_N, 0u32, INITIAL_BIAS);
    let mut digits = digits.bytes();
    while let Some(first) = digits.next() {
        let old_i = i;
        let mut w = 1u32;
        let mut k = BASE;
        let mut byte = first;
        loop {
            let d = digit_value(byte)?;
            i = i.checked_add(d.checked_mul(w)?)?;
            let t = threshold(k, bias);
            if d < t {
                break;
            }
            w = w.checked_mul(BASE - t)?;
            k += BASE;
            byte = digits.next()?;
        }
        let len = output.len() as u32 + 1;
        bias = adapt(u64::from(i - old_i), u64::from(len), old_i == 0);
        n = n.checked_add(i / len)?;
        i %= len;
        if n < INITIAL_N {
            return None;
        }
        output.insert(i as usize, char::from_u32(n)?);
        i += 1;
    }
    Some(output.into_iter().collect())
}

fn threshold(k: u32, bias: u32) -> u32 {
    if k <= bias {
        T_MIN
    } else if k >= bias + T_MAX {
        T_MAX
    } else {
        k - bias
    }
}

fn adapt(delta: u64, points: u64, first: bool) -> u32 {
    let mut delta = if first {
        delta / u64::from(DAMP)
    } else {
        delta / 2
    };
    delta += delta / points;
    let mut k = 0;
    while delta > u64::from((BASE - T_MIN) * T_MAX / 2) {
        delta /= u64::from(BASE - T_MIN);
        k += BASE;
    }
    k + (u64::from(BASE - T_MIN + 1) * delta / (delta + u64::from(SKEW))) as u32
}

fn digit(d: u32) -> char {
    match d {
        0..=25 => char::from(b'a' + d as u8),
        _ => char::from(b'0' + (d - 26) as u8),
    }
}

fn digit_value(b: u8) -> Option<u32> {
    match b {
        b'a'..=b'z' => Some(u32::from(b - b'a')),
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 26),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(s: &str) -> String {
        let mut out = String::new();
        encode(s, &mut out);
        out
    }

    #[test]
    fn matches_the_rfc_samples() {
        // RFC 3492 section 7.1, samples (A), (B) and (L).
        assert_eq!(
            encoded(
                "\u{644}\u{64A}\u{647}\u{645}\u{627}\u{628}\u{62A}\u{643}\u{644}\u{645}\u{648}\u{634}\u{639}\u{631}\u{628}\u{64A}\u{61F}"
            ),
            "egbpdaj6bu4bxfgehfvwxn"
        );
        assert_eq!(
            encoded("\u{4ED6}\u{4EEC}\u{4E3A}\u{4EC0}\u{4E48}\u{4E0D}\u{8BF4}\u{4E2D}\u{6587}"),
            "ihqwcrb4cv8a8dqg056pqjye"
        );
        assert_eq!(
            encoded("3\u{5E74}B\u{7D44}\u{91D1}\u{516B}\u{5148}\u{751F}"),
            "3B-ww4c5e180e575a65lsy2b"
        );
        assert_eq!(encoded("bücher"), "bcher-kva");
        assert_eq!(encoded("abc"), "abc-");
        assert_eq!(encoded(""), "");
    }

    #[test]
    fn decodes_what_it_encodes() {
        for s in [
            "bücher",
            "münchen.de",
            "日本語",
            "a b%c.d",
            "😀",
            "ÀÁÂ-x-",
            "--ü--",
            "\u{10FFFF}",
        ] {
            assert_eq!(decode(&encoded(s)).as_deref(), Some(s), "{s}");
        }
        assert_eq!(
            decode("egbpdaj6bu4bxfgehfvwxn").unwrap().chars().count(),
            17
        );
    }

    #[test]
    fn refuses_what_is_not_punycode() {
        assert_eq!(decode("bcher-kv!"), None);
        assert_eq!(decode("ü-abc"), None);
        assert_eq!(decode("99999999999999"), None, "overflow");
        assert_eq!(decode("bcher-kv"), None, "cut short");
    }
}
