//! Bad input: malformed headers and kernel files, absurd configuration. Every case must give
//! a clear error (naming the field or file) or a documented fallback, never a panic. The
//! property tests feed the same parsers arbitrary strings; `fuzz/` does the same with
//! coverage guidance on nightly.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use tower_pressure::__fuzz as parse;
use tower_pressure::circuit_breaker::CircuitBreakerLayer;
use tower_pressure::pressure::{PressureMonitor, Signal, Thresholds};
use tower_pressure::priority::HeaderPriority;
use tower_pressure::retry::{Backoff, Pushback, RetryBudget, RetryLayer};
use tower_pressure::{ConfigError, Priority};

fn field<T: std::fmt::Debug>(r: Result<T, ConfigError>) -> String {
    let e = r.expect_err("must be refused");
    let shown = e.to_string();
    assert!(
        shown.contains(e.field()),
        "display names the field: {shown}"
    );
    assert!(!e.reason().is_empty());
    e.field().to_owned()
}

const NOW_SECS: u64 = 1_445_412_470;
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

#[test]
fn malformed_retry_after_is_ignored_not_fatal() {
    use tower_pressure::retry::parse_retry_after as ra;
    for bad in [
        &b""[..],
        b"   ",
        b"-5",
        b"1.5",
        b"+3",
        b"0x10",
        b"soon",
        b"Wed, 99 Oct 2015 07:28:00 GMT",
        b"Wed, 21 Oct 2015 25:28:00 GMT",
        b"\xff\xfe\x00",
        b"3 4",
    ] {
        assert_eq!(ra(bad, now()), None, "{:?}", String::from_utf8_lossy(bad));
    }
    // Huge delays saturate instead of overflowing; dates in the past mean "now".
    assert_eq!(
        ra(b"99999999999999999999999999", now()),
        Some(Duration::from_secs(u64::MAX))
    );
    assert_eq!(
        ra(b"Thu, 01 Jan 1970 00:00:00 GMT", now()),
        Some(Duration::ZERO)
    );
    assert_eq!(ra(b" 7 ", now()), Some(Duration::from_secs(7)));
}

#[test]
fn malformed_grpc_pushback_stops() {
    use tower_pressure::retry::parse_grpc_pushback as gp;
    for bad in [&b""[..], b"-1", b"abc", b"1.5", b"\xff", b"--3"] {
        assert_eq!(
            gp(bad),
            Pushback::Stop,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(matches!(gp(b"99999999999999999999999"), Pushback::After(_)));
}

#[test]
fn malformed_psi_files() {
    for bad in [
        "some avg10=abc avg60=0 avg300=0 total=0",
        "some avg10=-1 avg60=0 avg300=0 total=0",
        "some avg10=101 avg60=0 avg300=0 total=0",
        "some avg10=NaN",
        "some avg10=inf",
        "some avg10",
        "some garbage",
        "full avg10=1.0",
        "",
        "\0\0\0",
    ] {
        let e = parse::psi_some_avg10(bad).expect_err(bad);
        assert!(e.contains("pressure file"), "names the file: {e}");
    }
    assert_eq!(
        parse::psi_some_avg10("some avg10=5.34 avg60=1 avg300=1 total=3\n"),
        Ok(5.34)
    );
}

#[test]
fn malformed_cgroup_files() {
    for (bad, file) in [
        ("12x", "memory.max"),
        ("-1", "memory.max"),
        ("", "memory.max"),
        ("184467440737095516160", "memory.max"),
    ] {
        let e = parse::memory_max(bad).expect_err(bad);
        assert!(e.contains(file), "{e}");
    }
    assert_eq!(parse::memory_max("max\n"), Ok(None));
    assert!(
        parse::v1_memory_limit("lots")
            .unwrap_err()
            .contains("memory.limit_in_bytes")
    );
    for bad in ["max 0 1", "0 100000", "100000 0", "a b", "", "1 2 3"] {
        let e = parse::cpu_max(bad).expect_err(bad);
        assert!(e.contains("cpu.max"), "{e}");
    }
    assert_eq!(parse::cpu_max("max 100000"), Ok(None));
    assert_eq!(parse::cpu_max("50000 100000"), Ok(Some(0.5)));
    assert!(
        parse::cpu_stat_usage("usage_usec x")
            .unwrap_err()
            .contains("cpu.stat")
    );
    assert!(
        parse::cpu_stat_usage("user_usec 1")
            .unwrap_err()
            .contains("cpu.stat")
    );
    assert!(
        parse::cpuacct_usage("-3")
            .unwrap_err()
            .contains("cpuacct.usage")
    );
    assert!(parse::inactive_file("inactive_file nope", true).is_err());
    for bad in ["garbage", "x:y", "0:cpu", "a:b:/c"] {
        assert!(parse::proc_cgroup(bad).is_err(), "{bad:?}");
    }
    for bad in [
        "garbage line without separator",
        "1 2 - cgroup2 x rw",
        "1 2 0:3 / /x rw - cgroup2",
    ] {
        assert!(parse::mountinfo(bad).is_err(), "{bad:?}");
    }
    assert!(parse::vm_rss("VmRSS: 12 MB").is_err());
    assert!(parse::vm_rss("VmRSS: x kB").is_err());
    assert_eq!(parse::vm_rss("Name: x\nVmRSS:   12 kB\n"), Ok(12 * 1024));
}

#[test]
fn malformed_priority_headers_fall_back_to_default() {
    let hp = HeaderPriority::new(http::HeaderName::from_static("x-priority"))
        .default_priority(Priority::Low);
    let long = "z".repeat(10_000);
    let bad: [&[u8]; 7] = [
        b"urgent",
        b"-1",
        b"4",
        b"99999999999",
        b"\xff\xfe",
        b"",
        long.as_bytes(),
    ];
    for (i, v) in bad.iter().enumerate() {
        let mut h = http::HeaderMap::new();
        h.insert("x-priority", http::HeaderValue::from_bytes(v).unwrap());
        assert_eq!(hp.from_headers(&h), Priority::Low);
        assert_eq!(hp.invalid_count(), i as u64 + 1);
    }
    let e = long.parse::<Priority>().unwrap_err();
    assert!(e.value().len() <= 64, "error value is truncated");
    assert!(e.to_string().starts_with("invalid priority"));
    assert_eq!(" HIGH ".parse::<Priority>(), Ok(Priority::High));
}

#[test]
fn breaker_builder_rejects_absurd_values() {
    let b = CircuitBreakerLayer::builder;
    assert_eq!(field(b().count_window(0).build()), "count_window");
    assert_eq!(field(b().count_window(u32::MAX).build()), "count_window");
    assert_eq!(field(b().time_window(0).build()), "time_window");
    assert_eq!(field(b().time_window(u32::MAX).build()), "time_window");
    assert_eq!(
        field(b().failure_rate_threshold(-1.0).build()),
        "failure_rate_threshold"
    );
    assert_eq!(
        field(b().failure_rate_threshold(f64::NAN).build()),
        "failure_rate_threshold"
    );
    assert_eq!(
        field(b().failure_rate_threshold(1e300).build()),
        "failure_rate_threshold"
    );
    assert_eq!(
        field(b().slow_call_rate_threshold(f64::INFINITY).build()),
        "slow_call_rate_threshold"
    );
    assert_eq!(field(b().jitter(-0.5).build()), "jitter");
    assert_eq!(
        field(b().wait_duration(Duration::ZERO).build()),
        "wait_duration"
    );
    assert_eq!(
        field(
            b().exponential_wait(f64::NAN, Duration::from_secs(1))
                .build()
        ),
        "wait_multiplier"
    );
    assert_eq!(
        field(b().max_wait_in_half_open(Duration::ZERO).build()),
        "max_wait_in_half_open"
    );
    assert_eq!(
        field(b().permitted_calls_in_half_open(0).build()),
        "permitted_calls_in_half_open"
    );
    assert_eq!(
        field(b().permitted_calls_in_half_open(u32::MAX).build()),
        "permitted_calls_in_half_open"
    );
    assert_eq!(field(b().success_threshold(0).build()), "success_threshold");
    assert_eq!(
        field(
            b().permitted_calls_in_half_open(2)
                .success_threshold(3)
                .build()
        ),
        "success_threshold"
    );
    assert_eq!(
        field(b().slow_call_duration(Duration::ZERO).build()),
        "slow_call_duration"
    );
    assert_eq!(
        field(b().memory_threshold_percent(150.0).build()),
        "memory_threshold_percent"
    );
    assert_eq!(
        field(b().memory_threshold_mb(-3.0).build()),
        "memory_threshold_mb"
    );
    assert_eq!(field(b().max_keys(0).build()), "max_keys");
    // A huge but valid configuration is accepted.
    assert!(
        b().wait_duration(Duration::from_secs(u32::MAX as u64))
            .failure_threshold(u32::MAX)
            .build()
            .is_ok()
    );
}

#[test]
fn retry_builders_reject_absurd_values() {
    let (m, _) = PressureMonitor::manual();
    let r = || RetryLayer::builder(m.clone());
    assert_eq!(field(r().max_attempts(0).build()), "max_attempts");
    assert_eq!(
        field(r().attempt_timeout(Duration::ZERO).build()),
        "attempt_timeout"
    );
    assert_eq!(field(r().time_bound(Duration::ZERO).build()), "time_bound");
    assert_eq!(
        field(r().stretch_at_high(f64::NAN).build()),
        "stretch_at_high"
    );
    assert_eq!(field(r().stretch_at_high(0.5).build()), "stretch_at_high");
    assert_eq!(
        field(
            r().backoff(Backoff::exponential(Duration::from_millis(10), -2.0))
                .build()
        ),
        "backoff.multiplier"
    );
    assert_eq!(
        field(
            r().backoff(
                Backoff::exponential(Duration::from_secs(5), 2.0).max(Duration::from_secs(1))
            )
            .build()
        ),
        "backoff.max"
    );
    let b = RetryBudget::builder;
    assert_eq!(field(b().ratio(-0.1).build()), "budget.ratio");
    assert_eq!(field(b().ratio(f64::INFINITY).build()), "budget.ratio");
    assert_eq!(field(b().window(Duration::ZERO).build()), "budget.window");
    assert_eq!(field(b().window(Duration::MAX).build()), "budget.window");
    assert_eq!(
        field(b().min_per_second(u32::MAX).build()),
        "budget.min_per_second"
    );
    assert!(
        r().max_attempts(u32::MAX)
            .time_bound(Duration::MAX)
            .build()
            .is_ok()
    );
}

#[test]
fn monitor_and_threshold_builders_reject_absurd_values() {
    assert_eq!(field(Thresholds::new(-1.0, 2.0, 3.0, 4.0)), "elevated");
    assert_eq!(field(Thresholds::new(1.0, f64::NAN, 3.0, 4.0)), "high");
    assert_eq!(field(Thresholds::new(10.0, 5.0, 30.0, 40.0)), "high");
    assert_eq!(
        field(Thresholds::with_margin([1.0, 2.0, 3.0, 4.0], -1.0)),
        "margin"
    );
    let mb = || PressureMonitor::builder().without_system_sources();
    assert_eq!(
        field(mb().interval(Duration::ZERO).build_unstarted()),
        "interval"
    );
    assert_eq!(field(mb().dwell(0).build_unstarted()), "dwell");
    assert_eq!(
        field(mb().lag_probe_interval(Duration::ZERO).build_unstarted()),
        "lag_probe_interval"
    );
    let huge = Thresholds::new(1e6, 2e6, 3e6, 4e6).unwrap();
    assert_eq!(
        field(mb().thresholds(Signal::Memory, huge).build_unstarted()),
        "thresholds.memory.elevated"
    );
    assert_eq!(
        field(mb().gauge("", Some(huge), || 1.0).build_unstarted()),
        "gauges[0].name"
    );
}

#[tokio::test]
async fn alert_builders_reject_absurd_values() {
    use tower_pressure::alert::{AlertLayer, AlertManager, WebhookSink};
    let l = || AlertLayer::builder("svc");
    assert_eq!(field(l().window(Duration::ZERO).build()), "window");
    assert_eq!(
        field(l().error_rate_threshold(Some(-5.0)).build()),
        "error_rate_threshold"
    );
    assert_eq!(
        field(l().error_rate_threshold(Some(f64::NAN)).build()),
        "error_rate_threshold"
    );
    assert_eq!(
        field(l().latency_threshold(7.0, Duration::from_secs(1)).build()),
        "latency_threshold.quantile"
    );
    let m = AlertManager::builder;
    assert_eq!(field(m().history_capacity(0).build()), "history_capacity");
    assert_eq!(
        field(m().rate_limit_entries(0).build()),
        "rate_limit_entries"
    );
    assert_eq!(
        field(
            m().rate_limit("no-such-rule", Duration::from_secs(1))
                .build()
        ),
        "rate_limit"
    );
    assert_eq!(
        field(m().watch(Signal::Memory, 80.0, 90.0).build()),
        "watch"
    );
    let w = WebhookSink::builder;
    for url in [
        "",
        "not a url",
        "http://",
        "ftp://127.0.0.1/x",
        "http://[::1",
        "http://a b/",
    ] {
        assert_eq!(field(w(url).build()), "url", "{url:?}");
    }
    assert_eq!(
        field(w("http://127.0.0.1:9/x").timeout(Duration::ZERO).build()),
        "timeout"
    );
    assert_eq!(
        field(w("http://127.0.0.1:9/x").retries(u32::MAX).build()),
        // `retries(n)` sets `max_attempts(n + 1)`; the error names the latter.
        "max_attempts"
    );
    assert_eq!(
        field(w("http://127.0.0.1:9/x").queue_capacity(0).build()),
        "queue_capacity"
    );
}

fn assert_parse_error(r: Result<impl std::fmt::Debug, String>) {
    if let Err(e) = r {
        assert!(e.starts_with("cannot parse "), "clear error: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic the header parsers; digits parse to their value.
    #[test]
    fn retry_after_and_pushback_total(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in any::<u32>()) {
        let _ = tower_pressure::retry::parse_retry_after(&bytes, now());
        let _ = tower_pressure::retry::parse_grpc_pushback(&bytes);
        prop_assert_eq!(
            tower_pressure::retry::parse_retry_after(n.to_string().as_bytes(), now()),
            Some(Duration::from_secs(n as u64))
        );
        prop_assert_eq!(
            tower_pressure::retry::parse_grpc_pushback(n.to_string().as_bytes()),
            Pushback::After(Duration::from_millis(n as u64))
        );
    }

    /// Arbitrary strings never panic the kernel-file parsers; failures are clear errors.
    #[test]
    fn kernel_file_parsers_total(s in "\\PC{0,200}", v2 in any::<bool>()) {
        assert_parse_error(parse::psi_some_avg10(&s));
        assert_parse_error(parse::proc_cgroup(&s));
        assert_parse_error(parse::mountinfo(&s));
        assert_parse_error(parse::memory_max(&s));
        assert_parse_error(parse::v1_memory_limit(&s));
        assert_parse_error(parse::inactive_file(&s, v2));
        assert_parse_error(parse::cpu_max(&s));
        assert_parse_error(parse::cpu_stat_usage(&s));
        assert_parse_error(parse::cpuacct_usage(&s));
        assert_parse_error(parse::vm_rss(&s));
    }

    /// Line-shaped garbage (the kernel files are line and field oriented) hits deeper paths.
    #[test]
    fn line_shaped_garbage(lines in proptest::collection::vec("[a-z_0-9:/=. -]{0,40}", 0..8)) {
        let s = lines.join("\n");
        assert_parse_error(parse::psi_some_avg10(&s));
        assert_parse_error(parse::proc_cgroup(&s));
        assert_parse_error(parse::mountinfo(&s));
        assert_parse_error(parse::inactive_file(&s, true));
        assert_parse_error(parse::cpu_stat_usage(&s));
        assert_parse_error(parse::vm_rss(&s));
    }

    /// Valid values round-trip.
    #[test]
    fn valid_values_round_trip(n in any::<u64>(), avg in 0.0f64..=100.0, ws in "[ \t]{0,3}") {
        prop_assert_eq!(parse::memory_max(&format!("{ws}{n}\n")), Ok(Some(n)));
        prop_assert_eq!(parse::cpuacct_usage(&format!("{n}{ws}")), Ok(n));
        let line = format!("some avg10={avg} avg60=0.00 avg300=0.00 total=1\n");
        prop_assert_eq!(parse::psi_some_avg10(&line), Ok(avg));
    }

    /// Priority: any string parses or yields an `InvalidPriority` whose message is bounded.
    #[test]
    fn priority_from_str_total(s in "\\PC{0,300}") {
        match s.parse::<Priority>() {
            Ok(p) => prop_assert!(matches!(s.trim().to_ascii_lowercase().as_str(),
                "critical" | "high" | "normal" | "low" | "0" | "1" | "2" | "3"), "{s:?} parsed as {p:?}"),
            Err(e) => {
                prop_assert!(e.value().len() <= 64);
                prop_assert!(e.to_string().starts_with("invalid priority"));
            }
        }
    }
}

#[test]
fn quota_builder_rejects_absurd_values() {
    use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer};
    let g = || QuotaGroup::new("free").rate(Limit::tiers(10, 20, 30));
    assert_eq!(
        field(QuotaLayer::builder().build(HeaderKey::x_tenant())),
        "groups"
    );
    assert_eq!(
        field(
            QuotaLayer::builder()
                .group(g())
                .max_tenants(0)
                .build(HeaderKey::x_tenant())
        ),
        "max_tenants"
    );
    assert_eq!(
        field(
            QuotaLayer::builder()
                .group(g())
                .max_tenants(usize::MAX)
                .build(HeaderKey::x_tenant())
        ),
        "max_tenants"
    );
    assert_eq!(
        field(
            QuotaLayer::builder()
                .group(g().period(Duration::ZERO))
                .build(HeaderKey::x_tenant())
        ),
        "groups[free].period"
    );
    assert_eq!(
        field(
            QuotaLayer::builder()
                .group(g().burst_window(Duration::ZERO))
                .build(HeaderKey::x_tenant())
        ),
        "groups[free].burst_window"
    );
    assert_eq!(
        field(
            QuotaLayer::builder()
                .group(g())
                .group(g())
                .build(HeaderKey::x_tenant())
        ),
        "groups[free]"
    );
    let inverted = QuotaGroup::new("free").rate(Limit::tiers(30, 20, 10));
    assert!(
        field(
            QuotaLayer::builder()
                .group(inverted)
                .build(HeaderKey::x_tenant())
        )
        .starts_with("groups[free].rate")
    );
}

mod reliability_support;

#[test]
fn summary() {
    reliability_support::record(
        "bad input",
        "10 builders (breaker, retry, budget, backoff, monitor, thresholds, alert layer, alert manager, \
         webhook, quota) and 13 parsers refused clearly; 5 parser properties x 512 arbitrary inputs",
    );
}
