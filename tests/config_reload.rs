//! Reloading the configuration while a stack serves: no request lost, no state reset.
#![cfg(feature = "config")]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::PressureLevel;
use tower_pressure::alert::AlertManager;
use tower_pressure::circuit_breaker::{CircuitOpen, CircuitState};
use tower_pressure::concurrency::Overloaded;
use tower_pressure::config::{Config, ConfigHandle, Format};
use tower_pressure::pressure::{PressureMonitor, Signal};
use tower_pressure::quota::QuotaExceeded;
use tower_pressure::status::StatusRegistry;

#[derive(Debug)]
struct BackendDown;
impl std::fmt::Display for BackendDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("backend down")
    }
}
impl std::error::Error for BackendDown {}

async fn backend(req: http::Request<()>) -> Result<&'static str, BoxError> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    if req.headers().get("x-backend").is_some_and(|v| v == "down") {
        Err(BoxError::from(BackendDown))
    } else {
        Ok("ok")
    }
}

const BASE: &str = r#"
[monitor.thresholds.manual]
elevated = 65
high = 75
critical = 85
emergency = 95

[inbound]
parts = ["alert", "degradation", "concurrency"]

[inbound.concurrency]
initial_limit = 50
min_limit = 10
max_limit = 400

[outbound]
parts = ["retry", "breaker", "timeout"]
timeout = "5s"

[outbound.retry]
max_attempts = 2
backoff = { kind = "fixed", initial = "5ms", max = "5ms", jitter = "none" }

[outbound.breaker]
per_key = "header"
key_header = "x-backend"
failure_threshold = 3
wait_duration = "10m"
max_wait_duration = "10m"

[quotas]
tenant_header = "x-tenant"
[quotas.groups.all]
rate = { hard = 1000000 }
"#;

/// Two documents, A (even `i`) and B (odd), that differ in every reloadable section:
/// thresholds, alert rules, the breaker's threshold and wait, retry attempts and budget, the
/// quota limit (and the pressure rule's rate limit, so that consecutive documents differ).
fn variant(i: u32) -> String {
    let e = 50 + (i % 5) as i32;
    let b = i % 2 == 1;
    let doc = BASE.replace("elevated = 65", &format!("elevated = {e}"));
    let doc = if b {
        doc.replace("failure_threshold = 3", "failure_threshold = 4")
            .replace("wait_duration = \"10m\"", "wait_duration = \"5m\"")
            .replace("max_attempts = 2", "max_attempts = 3")
            .replace("hard = 1000000", "hard = 900000")
            + "[outbound.retry.budget]\nratio = 0.5\n"
    } else {
        doc
    };
    format!(
        "{doc}\n[alerts.rules.retry_budget]\nenabled = {}\n[alerts.rules.pressure]\nrate_limit = \"{}s\"\n",
        !b,
        30 + i
    )
}

fn is_typed(e: &BoxError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
    while let Some(err) = cur {
        if err.is::<CircuitOpen>()
            || err.is::<Overloaded>()
            || err.is::<QuotaExceeded>()
            || err.is::<BackendDown>()
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[tokio::test(start_paused = true)]
async fn reload_under_load_loses_no_request_and_resets_no_state() {
    let (monitor, manual) = PressureMonitor::manual();
    manual.set(10.0);
    monitor.sample_now();
    let config = Config::from_toml(BASE).unwrap();
    let manager = AlertManager::builder()
        .monitor(monitor.clone())
        .build()
        .unwrap();
    let handle =
        ConfigHandle::new(config.clone(), monitor.clone()).with_alert_manager(manager.clone());

    let inbound = config.inbound_stack(monitor.clone()).unwrap();
    // Built through the handle: reloads reach the breaker, retry and quota layers.
    let outbound = handle.outbound_stack().unwrap();
    let quota = handle.quota_layer().unwrap().unwrap();
    let quotas = quota.handle();
    let registry: StatusRegistry = outbound.status_registry();
    let concurrency = inbound.status_registry();
    registry.register(handle.clone());

    let backend = service_fn(backend);
    let svc = ServiceBuilder::new()
        .layer(inbound)
        .layer(quota)
        .layer(outbound)
        .service(backend);

    let request = |backend: &str, tenant: u32| {
        http::Request::builder()
            .header("x-backend", backend)
            .header("x-tenant", format!("t{}", tenant % 4))
            .body(())
            .unwrap()
    };

    // Open the breaker of backend "down" before any reload.
    for _ in 0..4 {
        let _ = svc.clone().oneshot(request("down", 0)).await;
    }
    // The state of the breaker of backend "down", from the stack's status page.
    let breaker_state = || {
        registry
            .snapshot()
            .sections
            .iter()
            .find(|s| s.kind == "circuit_breaker")
            .and_then(|s| s.entries.iter().find(|e| e.name == "down"))
            .and_then(|e| e.info_value("state").map(str::to_string))
    };
    let open = format!("{}", CircuitState::Open);
    assert_eq!(breaker_state().as_deref(), Some(open.as_str()));

    let sent = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let typed = Arc::new(AtomicU64::new(0));
    let untyped = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..200u32 {
        let mut svc = svc.clone();
        let (sent, ok, typed, untyped) = (sent.clone(), ok.clone(), typed.clone(), untyped.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..20u32 {
                let backend = if (t + i) % 7 == 0 { "down" } else { "up" };
                sent.fetch_add(1, Ordering::Relaxed);
                let svc = match svc.ready().await {
                    Ok(s) => s,
                    Err(e) => {
                        if is_typed(&e) {
                            typed.fetch_add(1, Ordering::Relaxed);
                        } else {
                            untyped.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                };
                match svc.call(request(backend, t)).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) if is_typed(&e) => typed.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("untyped error: {e}");
                        untyped.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }

    let conc_limit = || {
        concurrency
            .snapshot()
            .sections
            .iter()
            .find(|s| s.kind == "concurrency")
            .and_then(|s| s.info_value("limit").map(str::to_string))
    };
    let usage = |t: &str| quotas.usage(t).map(|u| u.requests_total).unwrap_or(0);
    let mut applied = 0;
    let mut refused = 0;
    let mut events = monitor.events().subscribe();
    let mut last_usage = 0;
    for i in 0..50u32 {
        tokio::time::advance(Duration::from_millis(3)).await;
        tokio::task::yield_now().await;
        let before = (breaker_state(), conc_limit(), usage("t1"), handle.version());
        let r = if i % 10 == 9 {
            // A bad document mid-load: refused, nothing applied.
            handle.reload_str("[outbound.breaker]\nfailure_rate = 150\n", Format::Toml)
        } else if i % 10 == 4 {
            // A valid document that changes a key fixed while serving: refused as a whole,
            // although its other changes are reloadable.
            handle.reload_str(
                &variant(i).replace("timeout = \"5s\"", "timeout = \"6s\""),
                Format::Toml,
            )
        } else {
            handle.reload_str(&variant(i), Format::Toml)
        };
        let after = (breaker_state(), conc_limit(), usage("t1"), handle.version());
        // Breaker states, the learned limit and quota usage are untouched by the reload.
        assert_eq!(before.0, after.0, "breaker state changed by reload {i}");
        assert_eq!(before.1, after.1, "learned limit changed by reload {i}");
        assert_eq!(before.2, after.2, "quota usage changed by reload {i}");
        assert!(after.2 >= last_usage, "quota usage went down");
        last_usage = after.2;
        match r {
            Ok(v) => {
                applied += 1;
                assert_eq!(v.version, before.3.version + 1);
                let e = 50.0 + (i % 5) as f64;
                assert_eq!(
                    monitor
                        .thresholds(Signal::Manual)
                        .unwrap()
                        .threshold(PressureLevel::Elevated),
                    Some(e)
                );
                assert_eq!(
                    manager.rules().iter().any(|r| r == "retry_budget"),
                    i % 2 == 0
                );
                // The retry and quota layers serve the new settings.
                let snapshot = registry.snapshot();
                let retry = snapshot
                    .sections
                    .iter()
                    .find(|s| s.kind == "retry")
                    .unwrap();
                let attempts = if i % 2 == 1 { "3" } else { "2" };
                assert_eq!(retry.info_value("max_attempts"), Some(attempts));
                let hard = if i % 2 == 1 { 900_000 } else { 1_000_000 };
                let limit = quotas.group_limits("all").and_then(|g| g.rate_limit());
                assert_eq!(limit.map(|l| l.hard()), Some(hard));
            }
            Err(e) => {
                refused += 1;
                assert_eq!(after.3, before.3, "a refused reload changed the version");
                if i % 10 == 9 {
                    assert_eq!(e.path(), "outbound.breaker.failure_rate");
                } else {
                    assert_eq!(e.path(), "outbound.timeout");
                    // The thresholds of the refused document were not applied either.
                    assert_ne!(
                        monitor
                            .thresholds(Signal::Manual)
                            .unwrap()
                            .threshold(PressureLevel::Elevated),
                        Some(50.0 + (i % 5) as f64)
                    );
                }
                assert!(handle.last_error().is_some());
            }
        }
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(600), t)
            .await
            .unwrap()
            .unwrap();
    }

    let (sent, ok, typed, untyped) = (
        sent.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed),
        typed.load(Ordering::Relaxed),
        untyped.load(Ordering::Relaxed),
    );
    println!(
        "sent {sent}, responses {ok}, typed errors {typed}, other {untyped}; reloads applied {applied}, refused {refused}"
    );
    assert_eq!(sent, 4000);
    assert_eq!(sent, ok + typed, "requests lost");
    assert_eq!(untyped, 0);
    assert!(ok > 0 && typed > 0);
    assert_eq!(applied, 40);
    assert_eq!(refused, 10);
    assert!(usage("t1") > 0);
    // The breaker of "down" is still open after every reload.
    assert_eq!(breaker_state().as_deref(), Some(open.as_str()));
    assert!(conc_limit().is_some());

    // Every refused reload was reported on the bus; the status page shows the live version.
    let mut failed_events = 0;
    while let Ok(ev) = events.try_recv() {
        if ev.kind() == "custom" && format!("{ev:?}").contains("config_reload_failed") {
            failed_events += 1;
        }
    }
    assert_eq!(failed_events, 10);
    let status = registry.snapshot();
    let cfg = status.section("config").unwrap();
    assert_eq!(cfg.info_value("version"), Some("41"));
    assert_eq!(
        cfg.metric_value("tower_pressure_config_reload_failures_total", &[]),
        Some(10.0)
    );
}

#[tokio::test(start_paused = true)]
async fn reloaded_thresholds_drive_the_level_and_hysteresis_carries_over() {
    let (monitor, manual) = PressureMonitor::manual();
    let handle = ConfigHandle::new(Config::default(), monitor.clone());
    manual.set(70.0);
    monitor.sample_now();
    assert_eq!(monitor.level(), PressureLevel::Elevated); // default 65/75/85/95
    handle
        .reload_str(
            "[monitor.thresholds.manual]\nelevated = 40\nhigh = 50\ncritical = 60\nemergency = 90\nmargin = 5\n",
            Format::Toml,
        )
        .unwrap();
    monitor.sample_now();
    assert_eq!(monitor.level(), PressureLevel::Critical);
    // Back to the defaults: the level steps down one level per dwell, not at once.
    handle.reload_str("", Format::Toml).unwrap();
    monitor.sample_now();
    assert_eq!(monitor.level(), PressureLevel::Critical);
    monitor.sample_now();
    assert_eq!(monitor.level(), PressureLevel::High);
    assert_eq!(handle.version().version, 3);
}

#[tokio::test(start_paused = true)]
async fn watch_file_reloads_on_change_and_keeps_the_old_config_on_a_bad_edit() {
    let dir = std::env::temp_dir().join(format!("tp-config-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pressure.yaml");
    std::fs::write(&path, "monitor:\n  dwell: 2\n").unwrap();
    let (monitor, _manual) = PressureMonitor::manual();
    let handle = ConfigHandle::new(Config::from_file(&path).unwrap(), monitor.clone());
    let task = handle.watch_file(&path, Duration::from_millis(200));

    let write = |text: &str| {
        std::fs::write(&path, text).unwrap();
        // Make the modification time differ even on filesystems with coarse timestamps.
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        let t = std::time::SystemTime::now() + Duration::from_secs(handle.version().version * 10);
        f.set_modified(t).unwrap();
    };
    let wait_for = |want: u64| {
        let handle = handle.clone();
        async move {
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if handle.version().version == want {
                    return true;
                }
            }
            false
        }
    };
    write(
        "monitor:\n  dwell: 2\n  thresholds:\n    manual: {elevated: 1, high: 2, critical: 3, emergency: 4}\n",
    );
    assert!(wait_for(2).await, "the watcher did not apply the edit");
    assert!(
        monitor
            .thresholds(Signal::Manual)
            .unwrap()
            .threshold(PressureLevel::High)
            == Some(2.0)
    );

    write("monitor:\n  dwel: 2\n");
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if handle.last_error().is_some() {
            break;
        }
    }
    let err = handle.last_error().expect("the bad edit was reported");
    assert!(err.to_string().contains("did you mean `dwell`"), "{err}");
    assert_eq!(handle.version().version, 2);
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend whose requests fail (with a retryable connection error) when their
/// `x-backend` header is `down` or starts with `flaky`; counts its calls.
fn counting_backend(
    calls: Arc<AtomicU64>,
) -> impl Service<
    http::Request<()>,
    Response = &'static str,
    Error = BoxError,
    Future = impl Future<Output = Result<&'static str, BoxError>> + Send,
> + Clone
+ Send {
    service_fn(move |req: http::Request<()>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::Relaxed);
            let failing = req
                .headers()
                .get("x-backend")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == "down" || v.starts_with("flaky"));
            if failing {
                Err(BoxError::from(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )))
            } else {
                Ok("ok")
            }
        }
    })
}

fn to(backend: &str) -> http::Request<()> {
    http::Request::builder()
        .header("x-backend", backend)
        .body(())
        .unwrap()
}

fn open_error(r: &Result<&'static str, BoxError>) -> bool {
    matches!(r, Err(e) if e.downcast_ref::<CircuitOpen>().is_some())
}

const BREAKER: &str = r#"
[outbound]
parts = ["breaker"]
[outbound.breaker]
per_key = "header"
key_header = "x-backend"
failure_threshold = 5
wait_duration = "1m"
"#;

#[tokio::test(start_paused = true)]
async fn reloaded_breaker_threshold_applies_to_the_next_requests_and_an_open_breaker_stays_open() {
    let (monitor, _) = PressureMonitor::manual();
    let handle = ConfigHandle::new(Config::from_toml(BREAKER).unwrap(), monitor.clone());
    let stack = handle.outbound_stack().unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let svc = ServiceBuilder::new()
        .layer(stack)
        .service(counting_backend(calls.clone()));
    let call = |backend: &'static str| svc.clone().oneshot(to(backend));

    // "down" opens after 5 consecutive failures; "flaky" has 2 so far.
    for _ in 0..5 {
        assert!(!open_error(&call("down").await));
    }
    assert!(open_error(&call("down").await));
    for _ in 0..2 {
        assert!(!open_error(&call("flaky").await));
    }

    let v = handle
        .reload_str(
            &BREAKER
                .replace("failure_threshold = 5", "failure_threshold = 3")
                .replace("wait_duration = \"1m\"", "wait_duration = \"10s\""),
            Format::Toml,
        )
        .unwrap();
    assert_eq!(v.version, 2);

    // The open breaker stays open: its wait (1 minute, from before the reload) is kept.
    tokio::time::advance(Duration::from_secs(15)).await;
    let before = calls.load(Ordering::Relaxed);
    assert!(open_error(&call("down").await));
    assert_eq!(
        calls.load(Ordering::Relaxed),
        before,
        "an open breaker let a call through"
    );
    // "flaky" keeps its 2 consecutive failures: its 3rd opens it under the new threshold.
    assert!(!open_error(&call("flaky").await));
    assert!(open_error(&call("flaky").await));
    // A key first seen after the reload obeys the new threshold too.
    for _ in 0..3 {
        assert!(!open_error(&call("flaky2").await));
    }
    assert!(open_error(&call("flaky2").await));
    // A healthy key is not affected.
    assert_eq!(call("up").await.unwrap(), "ok");
    // The new wait applies to breakers opened after the reload: "flaky" probes after 10 s,
    // "down" only once its minute is up.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(!open_error(&call("flaky").await)); // a probe (it fails: open again)
    assert!(open_error(&call("down").await));
    tokio::time::advance(Duration::from_secs(40)).await;
    assert!(!open_error(&call("down").await)); // its minute is up: a probe
}

const RETRY: &str = r#"
[outbound]
parts = ["retry"]
[outbound.retry]
max_attempts = 2
backoff = { kind = "fixed", initial = "1ms", max = "1ms", jitter = "none" }
[outbound.retry.budget]
ratio = 0.0
min_per_second = 0
"#;

#[tokio::test(start_paused = true)]
async fn reloaded_retry_attempts_and_budget_apply() {
    let (monitor, _) = PressureMonitor::manual();
    let handle = ConfigHandle::new(Config::from_toml(RETRY).unwrap(), monitor.clone());
    let stack = handle.outbound_stack().unwrap();
    let registry = stack.status_registry();
    let calls = Arc::new(AtomicU64::new(0));
    let svc = ServiceBuilder::new()
        .layer(stack)
        .service(counting_backend(calls.clone()));
    let calls_for = |n: u64| {
        let svc = svc.clone();
        let calls = calls.clone();
        async move {
            let before = calls.load(Ordering::Relaxed);
            for _ in 0..n {
                assert!(svc.clone().oneshot(to("down")).await.is_err());
            }
            calls.load(Ordering::Relaxed) - before
        }
    };
    let refused = || {
        let snapshot = registry.snapshot();
        let section = snapshot.sections.iter().find(|s| s.kind == "retry");
        section
            .and_then(|s| {
                s.metric_value(
                    "tower_pressure_retry_budget_total",
                    &[("retry", "outbound"), ("outcome", "refused")],
                )
            })
            .expect("the retry layer's budget is on the status page")
    };
    // An empty budget (ratio 0, no floor): no retries.
    assert_eq!(calls_for(10).await, 10);
    assert_eq!(refused(), 10.0);

    // A budget of one retry per request: every request gets its second attempt.
    let doc = RETRY.replace("ratio = 0.0", "ratio = 1.0");
    handle.reload_str(&doc, Format::Toml).unwrap();
    assert_eq!(calls_for(10).await, 20);
    assert_eq!(refused(), 10.0, "the budget's counters were reset");

    // Four attempts, and a budget of three retries per request.
    let doc = doc
        .replace("max_attempts = 2", "max_attempts = 4")
        .replace("ratio = 1.0", "ratio = 3.0");
    handle.reload_str(&doc, Format::Toml).unwrap();
    assert_eq!(calls_for(10).await, 40);

    // Back to one attempt: no copy is kept, no retry.
    handle
        .reload_str(
            &doc.replace("max_attempts = 4", "max_attempts = 1"),
            Format::Toml,
        )
        .unwrap();
    assert_eq!(calls_for(10).await, 10);
    assert_eq!(handle.version().version, 4);
}

const QUOTA: &str = r#"
[quotas]
tenant_header = "x-tenant"
default_group = "free"
[quotas.groups.free]
period = "1m"
rate = { hard = 10 }
[quotas.groups.pro]
period = "1m"
rate = { hard = 100 }
"#;

#[tokio::test(start_paused = true)]
async fn reloaded_quota_limit_applies_and_usage_so_far_is_kept() {
    let (monitor, _) = PressureMonitor::manual();
    let handle = ConfigHandle::new(Config::from_toml(QUOTA).unwrap(), monitor.clone());
    let layer = handle
        .quota_layer()
        .unwrap()
        .expect("groups are configured");
    let quotas = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(counting_backend(Arc::new(AtomicU64::new(0))));
    let admitted = |n: u32| {
        let svc = svc.clone();
        async move {
            let mut ok = 0;
            for _ in 0..n {
                let req = http::Request::builder()
                    .header("x-tenant", "acme")
                    .body(())
                    .unwrap();
                match svc.clone().oneshot(req).await {
                    Ok(_) => ok += 1,
                    Err(e) => assert!(e.downcast_ref::<QuotaExceeded>().is_some(), "{e}"),
                }
            }
            ok
        }
    };
    // 8 of 10 this minute.
    assert_eq!(admitted(8).await, 8);
    // Limit 12: the 8 used are kept, 4 are left.
    handle
        .reload_str(&QUOTA.replace("hard = 10 }", "hard = 12 }"), Format::Toml)
        .unwrap();
    assert_eq!(admitted(6).await, 4);
    assert_eq!(quotas.usage("acme").unwrap().requests_total, 14);
    // Limit 5: over it already, refused (not reset to an empty bucket).
    handle
        .reload_str(&QUOTA.replace("hard = 10 }", "hard = 5 }"), Format::Toml)
        .unwrap();
    assert_eq!(admitted(3).await, 0);
    // Moved to "pro" (100 a minute): its 12 cells used count there.
    let doc = format!("{QUOTA}[quotas.tenants]\nacme = \"pro\"\n");
    handle.reload_str(&doc, Format::Toml).unwrap();
    assert_eq!(quotas.group_of_tenant("acme"), "pro");
    assert_eq!(admitted(100).await, 88);
    let u = quotas.usage("acme").unwrap();
    assert_eq!((u.requests_total, u.group.as_str()), (117, "pro"));
    // A minute later the bucket has drained at the pro rate.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(admitted(100).await, 100);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_document_changes_nothing_in_any_section() {
    let doc = format!(
        "{BREAKER}{}{}",
        RETRY.replace("[outbound]\nparts = [\"retry\"]\n", ""),
        QUOTA
    )
    .replace("parts = [\"breaker\"]", "parts = [\"retry\", \"breaker\"]");
    let config = Config::from_toml(&doc).unwrap();
    let (monitor, _) = PressureMonitor::manual();
    let breaker = config.outbound.breaker.layer(&monitor).unwrap();
    let retry = config.outbound.retry.layer(&monitor).unwrap();
    let quota = config
        .quotas
        .layer(monitor.events().clone())
        .unwrap()
        .unwrap();
    let mut events = monitor.events().subscribe();
    let handle = ConfigHandle::new(config, monitor.clone())
        .with_breaker(breaker.handle())
        .with_retry(retry.handle())
        .with_quota(quota.handle());
    let thresholds =
        "[monitor.thresholds.manual]\nelevated = 10\nhigh = 20\ncritical = 30\nemergency = 40\n";
    // Every section changes validly...
    let changed = format!("{thresholds}{doc}")
        .replace("failure_threshold = 5", "failure_threshold = 2")
        .replace("max_attempts = 2", "max_attempts = 5")
        .replace("hard = 10 }", "hard = 20 }");
    let state = || {
        (
            breaker.handle().settings().failure_threshold(),
            retry.policy().max_attempts(),
            quota
                .handle()
                .group_limits("free")
                .and_then(|g| g.rate_limit())
                .map(|l| l.hard()),
            monitor
                .thresholds(Signal::Manual)
                .unwrap()
                .threshold(PressureLevel::High),
            handle.version().version,
        )
    };
    let before = state();
    assert_eq!(before, (5, 2, Some(10), Some(75.0), 1));

    // ...but one value is out of range: refused by validation.
    let bad = changed.replace("ratio = 0.0", "ratio = 50.0");
    let err = handle.reload_str(&bad, Format::Toml).unwrap_err();
    assert_eq!(err.path(), "outbound.retry.budget.ratio");
    assert_eq!(state(), before);

    // ...but a group is removed: refused while preparing the quota layer, after the breaker
    // and retry updates were prepared. Nothing was applied.
    let bad = changed.replace(
        "[quotas.groups.pro]\nperiod = \"1m\"\nrate = { hard = 100 }\n",
        "",
    );
    let err = handle.reload_str(&bad, Format::Toml).unwrap_err();
    assert_eq!(err.path(), "quotas.groups.pro", "{err}");
    assert_eq!(state(), before);

    // ...but a key fixed while serving changes too.
    let bad = changed.replace("key_header = \"x-backend\"", "key_header = \"x-b\"");
    let err = handle.reload_str(&bad, Format::Toml).unwrap_err();
    assert_eq!(err.path(), "outbound.breaker.key_header");
    let bad = changed.replace(
        "wait_duration = \"1m\"",
        "wait_duration = \"1m\"\ncount_window = 50",
    );
    let err = handle.reload_str(&bad, Format::Toml).unwrap_err();
    assert_eq!(err.path(), "outbound.breaker.count_window");
    assert_eq!(state(), before);

    let mut failed = 0;
    while let Ok(ev) = events.try_recv() {
        if format!("{ev:?}").contains("config_reload_failed") {
            failed += 1;
        }
    }
    assert_eq!(failed, 4);

    // The valid document applies every section at once.
    handle.reload_str(&changed, Format::Toml).unwrap();
    assert_eq!(state(), (2, 5, Some(20), Some(20.0), 2));
}
