//! Parsing of the rate-limit headers LLM providers send. Pure functions, no clock: times
//! come in as arguments. Every parser returns `None` on a malformed value (the caller logs it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// One budget (tokens or requests) as one response reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Budget {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Time until the budget is full again, from the response.
    pub(crate) reset_in: Option<Duration>,
}

/// What one response said about both budgets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Reported {
    pub(crate) tokens: Option<Budget>,
    pub(crate) requests: Option<Budget>,
}

/// Parses an OpenAI-style duration: `"6m0s"`, `"1s"`, `"20ms"`, `"1h2m3.5s"`, `"0.5s"`.
/// Units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`; at least one component; no sign.
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Parses an RFC 3339 timestamp (`2026-12-06T13:05:30Z`, `...30.250+01:00`).
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        let digits = &s[start..end.min(start + 9)];
        nanos = digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32);
        i = end;
    }
    let offset_secs: i64 = match b.get(i..) {
        Some([b'Z' | b'z']) => 0,
        Some([sign @ (b'+' | b'-'), ..]) if b.len() == i + 6 && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, u32::try_from(nanos).ok()?))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let v = h.get(name)?;
    match v.to_str() {
        Ok(s) => Some(s),
        Err(_) => {
            tracing::debug!(target: "tower_pressure::provider_limits", header = name, "ignored non-ASCII rate-limit header");
            None
        }
    }
}

fn int(h: &HeaderMap, name: &str) -> Option<u64> {
    let s = header(h, name)?;
    match s.trim().parse::<u64>() {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::debug!(target: "tower_pressure::provider_limits", header = name, value = s, "ignored malformed rate-limit header");
            None
        }
    }
}

fn budget(
    h: &HeaderMap,
    limit: &str,
    remaining: &str,
    reset: &str,
    reset_in: impl FnOnce(&str) -> Option<Duration>,
) -> Option<Budget> {
    let (l, r) = (int(h, limit), int(h, remaining));
    let (limit_v, remaining_v) = match (l, r) {
        (Some(l), Some(r)) => (l, r),
        (None, None) => return None,
        _ => {
            tracing::debug!(target: "tower_pressure::provider_limits", limit = limit, remaining = remaining, "ignored rate-limit budget: limit or remaining missing");
            return None;
        }
    };
    if limit_v == 0 || remaining_v > limit_v {
        tracing::debug!(target: "tower_pressure::provider_limits", limit = limit_v, remaining = remaining_v, header = limit, "ignored contradictory rate-limit budget");
        return None;
    }
    let reset_in = header(h, reset).and_then(|s| {
        let d = reset_in(s);
        if d.is_none() {
            tracing::debug!(target: "tower_pressure::provider_limits", header = reset, value = s, "ignored malformed rate-limit reset");
        }
        d
    });
    Some(Budget {
        limit: limit_v,
        remaining: remaining_v,
        reset_in,
    })
}

/// Reads the OpenAI (`x-ratelimit-*`) and Anthropic (`anthropic-ratelimit-*`) headers;
/// `now` is the wall clock used for Anthropic's absolute reset times. OpenAI's headers win
/// when a response carries both.
pub(crate) fn read(h: &HeaderMap, now: SystemTime) -> Reported {
    let abs = |s: &str| {
        let t = parse_rfc3339(s)?;
        Some(t.duration_since(now).unwrap_or(Duration::ZERO))
    };
    let tokens = budget(
        h,
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        parse_go_duration,
    )
    .or_else(|| {
        budget(
            h,
            "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
            abs,
        )
    });
    let requests = budget(
        h,
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        parse_go_duration,
    )
    .or_else(|| {
        budget(
            h,
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
            abs,
        )
    });
    Reported { tokens, requests }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "s", "5", "-1s", "1x", "1.2.3s", "ms5", "NaNs", "1e400s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339() {
        let t = parse_rfc3339("2026-12-06T13:05:30Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_562_330
        );
        let u = parse_rfc3339("2026-12-06T14:05:30.5+01:00").unwrap();
        assert_eq!(
            u.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_796_562_330_500)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        for bad in [
            "",
            "2026-12-06",
            "2026-13-06T13:05:30Z",
            "2026-12-06T25:05:30Z",
            "2026-12-06T13:05:30",
            "2026-12-06T13:05:30+0100",
            "1960-01-01T00:00:00Z",
            "2026-12-06T13:05:30.Z",
            "２026-12-06T13:05:30Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn openai_and_anthropic() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_562_300);
        let r = read(
            &map(&[
                ("x-ratelimit-limit-tokens", "40000"),
                ("x-ratelimit-remaining-tokens", "1000"),
                ("x-ratelimit-reset-tokens", "6m0s"),
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "59"),
                ("x-ratelimit-reset-requests", "1s"),
            ]),
            now,
        );
        assert_eq!(
            r.tokens,
            Some(Budget {
                limit: 40000,
                remaining: 1000,
                reset_in: Some(Duration::from_secs(360))
            })
        );
        assert_eq!(r.requests.unwrap().remaining, 59);
        let a = read(
            &map(&[
                ("anthropic-ratelimit-tokens-limit", "100"),
                ("anthropic-ratelimit-tokens-remaining", "10"),
                ("anthropic-ratelimit-tokens-reset", "2026-12-06T13:05:30Z"),
            ]),
            now,
        );
        assert_eq!(a.tokens.unwrap().reset_in, Some(Duration::from_secs(30)));
        assert_eq!(a.requests, None);
    }

    #[test]
    fn malformed_and_contradictory_are_ignored() {
        let now = UNIX_EPOCH;
        for pairs in [
            &[
                ("x-ratelimit-limit-tokens", "abc"),
                ("x-ratelimit-remaining-tokens", "1"),
            ][..],
            &[
                ("x-ratelimit-limit-tokens", "10"),
                ("x-ratelimit-remaining-tokens", "11"),
            ][..],
            &[
                ("x-ratelimit-limit-tokens", "0"),
                ("x-ratelimit-remaining-tokens", "0"),
            ][..],
            &[("x-ratelimit-limit-tokens", "10")][..],
            &[
                ("x-ratelimit-limit-tokens", "-5"),
                ("x-ratelimit-remaining-tokens", "-1"),
            ][..],
        ] {
            assert_eq!(read(&map(pairs), now).tokens, None, "{pairs:?}");
        }
        // A bad reset keeps the budget, without a reset time.
        let r = read(
            &map(&[
                ("x-ratelimit-limit-tokens", "10"),
                ("x-ratelimit-remaining-tokens", "5"),
                ("x-ratelimit-reset-tokens", "soon"),
            ]),
            now,
        );
        assert_eq!(r.tokens.unwrap().reset_in, None);
        // Non-ASCII bytes.
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-limit-tokens",
            http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        h.insert("x-ratelimit-remaining-tokens", "1".parse().unwrap());
        assert_eq!(read(&h, now).tokens, None);
    }
}
