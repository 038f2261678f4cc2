//! Durations as written in config: a number and a unit, such as `"500ms"`, `"10s"`, `"1.5m"`.

use std::time::Duration;

/// What a duration looks like, for error messages.
pub const EXPECTED: &str = "a duration such as \"500ms\", \"10s\", \"5m\", \"1h\" or \"1d\"";

/// Parses `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`; the number may have a fraction.
///
/// Returns `None` for anything else, including negative numbers and values over 100 years.
pub fn parse(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let unit_seconds = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    let seconds = value * unit_seconds;
    (seconds <= 100.0 * 365.0 * 86400.0).then(|| Duration::from_secs_f64(seconds))
}

/// Formats a duration the way config writes it, in the largest unit that keeps it whole.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse("1.5m"), Some(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "ten",
            "10",
            "s",
            "-1s",
            "1.s",
            ".5s",
            "10 s",
            "10sec",
            "1e3s",
            "",
            "99999999999d",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        assert_eq!(format(Duration::from_secs(10)), "10s");
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(
            parse(&format(Duration::from_secs(86400))),
            Some(Duration::from_secs(86400))
        );
    }
}
