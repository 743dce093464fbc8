//! Reloading the configuration while a stack serves: no request lost, no state reset.
#![cfg(feature = "config")]

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

fn variant(i: u32) -> String {
    // Alternate thresholds and alert rules: the reloadable keys.
    let e = 50 + (i % 5) as i32;
    format!(
        "{}\n[alerts.rules.retry_budget]\nenabled = {}\n[alerts.rules.pressure]\nrate_limit = \"{}s\"\n",
        BASE.replace("elevated = 65", &format!("elevated = {e}")),
        i.is_multiple_of(2),
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
    let outbound = config.outbound_stack(monitor.clone()).unwrap();
    let quota = config
        .quotas
        .layer(monitor.events().clone())
        .unwrap()
        .unwrap();
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
    for i in 0..40u32 {
        tokio::time::advance(Duration::from_millis(3)).await;
        tokio::task::yield_now().await;
        let before = (breaker_state(), conc_limit(), usage("t1"), handle.version());
        let r = if i % 10 == 9 {
            // A bad document mid-load: refused, nothing applied.
            handle.reload_str("[outbound.breaker]\nfailure_rate = 150\n", Format::Toml)
        } else if i % 10 == 4 {
            // A valid document that changes a key fixed while serving: refused as a whole,
            // although its thresholds change is reloadable.
            handle.reload_str(
                &variant(i).replace("max_attempts = 2", "max_attempts = 3"),
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
            }
            Err(e) => {
                refused += 1;
                assert_eq!(after.3, before.3, "a refused reload changed the version");
                if i % 10 == 9 {
                    assert_eq!(e.path(), "outbound.breaker.failure_rate");
                } else {
                    assert_eq!(e.path(), "outbound.retry.max_attempts");
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
    assert_eq!(applied, 32);
    assert_eq!(refused, 8);
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
    assert_eq!(failed_events, 8);
    let status = registry.snapshot();
    let cfg = status.section("config").unwrap();
    assert_eq!(cfg.info_value("version"), Some("33"));
    assert_eq!(
        cfg.metric_value("tower_pressure_config_reload_failures_total", &[]),
        Some(8.0)
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
