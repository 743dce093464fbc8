//! Server pushback: `Retry-After` (RFC 9110 §10.2.3) and gRPC's `grpc-retry-pushback-ms`
//! (gRFC A6). Pure parsing: the wall-clock "now" needed for HTTP-dates is an argument.
//!
//! * `Retry-After: 120` (delta-seconds) and `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`
//!   (HTTP-date, all three RFC 9110 formats, parsed with the `httpdate` crate) give a delay;
//!   a date in the past gives zero. Values too large for a `Duration` saturate; the layer
//!   then does not retry at all when the delay is above its `max_pushback` (it never retries
//!   before the server's time).
//! * Anything else is garbage: it is ignored (the layer falls back to its own backoff) and
//!   logged at `debug` level.
//! * `grpc-retry-pushback-ms: 250` gives 250 ms. Per gRFC A6 a negative or unparseable value
//!   means "do not retry": [`Pushback::Stop`].

use std::time::{Duration, SystemTime};

/// What the server said about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pushback {
    /// No hint: use the layer's backoff.
    #[default]
    None,
    /// Wait at least this long. Longer than the layer's `max_pushback` (or than the time
    /// left): not retried at all.
    After(Duration),
    /// Do not retry at all.
    Stop,
}

/// Parses a `Retry-After` value; `None` for garbage (logged at debug level).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_pressure::retry::parse_retry_after;
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
/// assert_eq!(parse_retry_after(b"3", now), Some(Duration::from_secs(3)));
/// assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after(b"soon", now), None);
/// ```
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let v = value.trim_ascii();
    if !v.is_empty() && v.iter().all(u8::is_ascii_digit) {
        // Saturating: "99999999999999999999999" is a (huge) delay, not garbage.
        let secs = v.iter().fold(0u64, |acc, d| {
            acc.saturating_mul(10).saturating_add((d - b'0') as u64)
        });
        return Some(Duration::from_secs(secs));
    }
    match std::str::from_utf8(v).ok().map(httpdate::parse_http_date) {
        Some(Ok(at)) => Some(at.duration_since(now).unwrap_or(Duration::ZERO)),
        _ => {
            tracing::debug!(target: "tower_pressure::retry", value = %String::from_utf8_lossy(value), "ignoring unparseable Retry-After");
            None
        }
    }
}

/// Parses a `grpc-retry-pushback-ms` value: a delay, or [`Pushback::Stop`] for negative or
/// unparseable values (gRFC A6).
///
/// ```
/// use std::time::Duration;
/// use tower_pressure::retry::{Pushback, parse_grpc_pushback};
/// assert_eq!(parse_grpc_pushback(b"250"), Pushback::After(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_pushback(b"-1"), Pushback::Stop);
/// ```
pub fn parse_grpc_pushback(value: &[u8]) -> Pushback {
    let v = value.trim_ascii();
    if !v.is_empty() && v.iter().all(u8::is_ascii_digit) {
        let ms = v.iter().fold(0u64, |acc, d| {
            acc.saturating_mul(10).saturating_add((d - b'0') as u64)
        });
        Pushback::After(Duration::from_millis(ms))
    } else {
        tracing::debug!(target: "tower_pressure::retry", value = %String::from_utf8_lossy(value), "grpc-retry-pushback-ms says do not retry");
        Pushback::Stop
    }
}

/// `d` as a `Retry-After` value in whole seconds: rounded up, at least 1 (a client told "0"
/// retries at once). Every layer's HTTP mapping uses this one rounding.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        // Wed, 21 Oct 2015 07:27:50 GMT
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470)
    }

    #[test]
    fn delta_seconds() {
        assert_eq!(parse_retry_after(b"0", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(b" 42 ", now()),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            parse_retry_after(b"99999999999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn http_dates_all_formats() {
        let ten = Some(Duration::from_secs(10));
        assert_eq!(
            parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT", now()),
            ten
        );
        assert_eq!(
            parse_retry_after(b"Wednesday, 21-Oct-15 07:28:00 GMT", now()),
            ten
        );
        assert_eq!(parse_retry_after(b"Wed Oct 21 07:28:00 2015", now()), ten);
        // In the past: retry now.
        assert_eq!(
            parse_retry_after(b"Wed, 21 Oct 2015 07:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn garbage_is_ignored() {
        for g in [
            &b""[..],
            b"-5",
            b"1.5",
            b"soon",
            b"\xff\xfe",
            b"Wed, 32 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(parse_retry_after(g, now()), None, "{g:?}");
        }
    }

    #[test]
    fn grpc() {
        assert_eq!(parse_grpc_pushback(b"0"), Pushback::After(Duration::ZERO));
        assert_eq!(
            parse_grpc_pushback(b"1500"),
            Pushback::After(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_pushback(b"-1"), Pushback::Stop);
        assert_eq!(parse_grpc_pushback(b"abc"), Pushback::Stop);
    }
}
