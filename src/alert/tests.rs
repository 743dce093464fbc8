//! Unit tests of the default rules and the manager (they build event payloads, whose
//! structs are `#[non_exhaustive]` outside the crate).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::event::*;
use crate::pressure::PressureLevel;
use crate::pressure::Signal;

fn pressure(from: PressureLevel, to: PressureLevel, signal: Signal) -> Event {
    Event::PressureChanged(PressureChanged {
        from,
        to,
        signal,
        signal_name: Arc::from(signal.as_str()),
        value: 90.0,
        threshold: 85.0,
        at: Instant::now(),
    })
}

fn breaker(name: &str, to: CircuitState) -> Event {
    Event::Breaker(BreakerEvent {
        breaker: Arc::from(name),
        key: None,
        kind: BreakerEventKind::StateTransition {
            from: CircuitState::Closed,
            to,
            reason: Arc::from("failure rate 60.0% >= 50.0%"),
        },
        at: Instant::now(),
    })
}

fn manager() -> AlertManager {
    AlertManager::builder().tracing(false).build().unwrap()
}

fn one(m: &AlertManager, e: &Event) -> (Severity, String) {
    let out = m.process_event(e);
    assert_eq!(out.len(), 1, "{out:?}");
    (out[0].severity(), out[0].kind().to_string())
}

#[test]
fn default_rules_and_severities() {
    let m = manager();
    use PressureLevel::*;
    let deg = Event::Degradation(DegradationEvent {
        level: Elevated,
        active: true,
        at: Instant::now(),
    });
    assert_eq!(
        one(&m, &deg),
        (Severity::Info, "degradation_started".into())
    );
    assert_eq!(
        one(&m, &pressure(Normal, High, Signal::Memory)),
        (Severity::Warning, "high_memory_usage".into())
    );
    assert_eq!(
        one(&m, &pressure(High, Critical, Signal::PsiCpu)),
        (Severity::Warning, "high_cpu_usage".into())
    );
    assert_eq!(
        one(&m, &pressure(Critical, Emergency, Signal::Memory)),
        (Severity::Critical, "pressure_emergency".into())
    );
    assert_eq!(
        one(&m, &pressure(Normal, Elevated, Signal::Manual)),
        (Severity::Info, "pressure_elevated".into())
    );
    assert_eq!(
        one(&m, &pressure(Elevated, High, Signal::SchedulingLag)),
        (Severity::Warning, "pressure_high".into())
    );
    // Falling levels do not alert.
    assert!(
        m.process_event(&pressure(High, Normal, Signal::Memory))
            .is_empty()
    );

    assert_eq!(
        one(&m, &breaker("db", CircuitState::Open)),
        (Severity::Warning, "breaker_opened".into())
    );
    let two = m.process_event(&breaker("llm", CircuitState::Open));
    let kinds: Vec<_> = two
        .iter()
        .map(|a| (a.severity(), a.kind().to_string()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (Severity::Warning, "breaker_opened".into()),
            (Severity::Error, "breakers_open".into())
        ]
    );
    assert!(two[1].message().contains("2 circuit breakers open"));
    // Closing one: no alert, and the count drops.
    assert!(
        m.process_event(&breaker("db", CircuitState::Closed))
            .is_empty()
    );

    let svc = Event::Service(ServiceEvent::new(
        "api",
        Some(Arc::from("D3-Q3")),
        ServiceEventKind::ErrorRateExceeded {
            rate: 62.0,
            threshold: 50.0,
        },
        Instant::now(),
    ));
    assert_eq!(
        one(&m, &svc),
        (Severity::Warning, "error_rate_exceeded".into())
    );
    let lat = Event::Service(ServiceEvent::new(
        "api",
        None,
        ServiceEventKind::LatencyExceeded {
            observed: Duration::from_secs(3),
            threshold: Duration::from_secs(1),
        },
        Instant::now(),
    ));
    assert_eq!(
        one(&m, &lat),
        (Severity::Warning, "latency_exceeded".into())
    );
    let budget = Event::Retry(RetryEvent {
        name: Arc::from("llm"),
        kind: RetryEventKind::BudgetExhausted { count: 4 },
        at: Instant::now(),
    });
    assert_eq!(
        one(&m, &budget),
        (Severity::Warning, "retry_budget_exhausted".into())
    );
    let custom = Event::Custom(CustomEvent::new("deploy", "v2"));
    assert_eq!(one(&m, &custom), (Severity::Info, "deploy".into()));

    let s = m.summary();
    assert_eq!(s.by_severity.critical, 1);
    assert_eq!(s.by_severity.error, 1);
    assert_eq!(s.total_alerts, 13);
}

#[tokio::test(start_paused = true)]
async fn rate_limits_and_suppression_counts() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let m = AlertManager::builder()
        .tracing(false)
        .callback(move |a| s2.lock().unwrap().push(a.display_message()))
        .build()
        .unwrap();
    let open = breaker("db", CircuitState::Open);
    assert_eq!(m.process_event(&open).len(), 1);
    for _ in 0..12 {
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(m.process_event(&open).is_empty());
    }
    assert_eq!(m.stats().suppressed, 12);
    // Five minutes after the first, the next passes carrying the count.
    tokio::time::advance(Duration::from_secs(300 - 120)).await;
    let out = m.process_event(&open);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].suppressed(), 12);
    assert!(
        seen.lock()
            .unwrap()
            .last()
            .unwrap()
            .ends_with("(12 more since last report)"),
        "{:?}",
        seen.lock().unwrap()
    );

    // Pressure alerts: Emergency every 2 minutes, Elevated every 10.
    let emerg = pressure(
        PressureLevel::Critical,
        PressureLevel::Emergency,
        Signal::Manual,
    );
    let elev = pressure(
        PressureLevel::Normal,
        PressureLevel::Elevated,
        Signal::Manual,
    );
    assert_eq!(m.process_event(&emerg).len(), 1);
    assert_eq!(m.process_event(&elev).len(), 1);
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(m.process_event(&emerg).len(), 1);
    assert!(m.process_event(&elev).is_empty());
    tokio::time::advance(Duration::from_secs(480)).await;
    assert_eq!(m.process_event(&elev).len(), 1);

    // Degradation: 10 minutes; memory warnings: 5 minutes.
    let mem = pressure(PressureLevel::Normal, PressureLevel::High, Signal::Memory);
    assert_eq!(m.process_event(&mem).len(), 1);
    tokio::time::advance(Duration::from_secs(299)).await;
    assert!(m.process_event(&mem).is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(m.process_event(&mem).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn user_rule_and_override() {
    let m = AlertManager::builder()
        .tracing(false)
        .without_default_rules()
        .rule(Rule::new("deploys", |e| match e {
            Event::Custom(c) if &*c.kind == "deploy" => {
                Some(Alert::new(Severity::Error, "deploy", c.message.to_string()))
            }
            _ => None,
        }))
        .rate_limit("deploys", Duration::ZERO)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            m.process_event(&Event::Custom(CustomEvent::new("deploy", "x")))
                .len(),
            1
        );
    }
    assert!(
        m.process_event(&Event::Custom(CustomEvent::new("other", "x")))
            .is_empty()
    );
    let err = AlertManager::builder()
        .rate_limit("nope", Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "rate_limit");
}

#[tokio::test(start_paused = true)]
async fn manager_consumes_the_bus_and_watches() {
    let (monitor, manual) = crate::pressure::PressureMonitor::manual();
    let m = AlertManager::builder()
        .tracing(false)
        .monitor(monitor.clone())
        .watch(Signal::Manual, 70.0, 90.0)
        .build()
        .unwrap();
    manual.set(96.0);
    monitor.sample_now();
    // Let the manager's task run.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let kinds: Vec<_> = m.history().iter().map(|a| a.kind().to_string()).collect();
    assert!(
        kinds.contains(&"pressure_emergency".to_string()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"degradation_started".to_string()),
        "{kinds:?}"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let watch: Vec<_> = m
        .history()
        .into_iter()
        .filter(|a| a.rule() == "watch")
        .collect();
    assert_eq!(watch.len(), 1);
    assert_eq!(watch[0].severity(), Severity::Critical);
}

/// A sink recording firings and resolutions.
#[derive(Clone, Default)]
struct Recorder {
    fired: Arc<std::sync::Mutex<Vec<(String, bool)>>>,
    resolved: Arc<std::sync::Mutex<Vec<String>>>,
}

impl AlertSink for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn deliver(&self, a: &Alert) {
        self.fired
            .lock()
            .unwrap()
            .push((a.kind().to_string(), a.is_resolved()));
    }
    fn resolve(&self, a: &Alert) {
        assert!(a.is_resolved());
        assert!(a.ended_at().unwrap() >= a.at());
        self.resolved.lock().unwrap().push(a.kind().to_string());
    }
}

fn recorded() -> (AlertManager, Recorder) {
    let r = Recorder::default();
    let m = AlertManager::builder()
        .tracing(false)
        .sink(r.clone())
        .build()
        .unwrap();
    (m, r)
}

fn service(kind: ServiceEventKind) -> Event {
    Event::Service(ServiceEvent::new(
        Arc::from("api"),
        None,
        kind,
        Instant::now(),
    ))
}

#[tokio::test(start_paused = true)]
async fn breaker_alert_resolves_when_that_breaker_closes() {
    let (m, r) = recorded();
    m.process_event(&breaker("db", CircuitState::Open));
    assert_eq!(m.active_alerts().len(), 1);
    // Another breaker closing, or this one going half-open, does not clear it.
    m.process_event(&breaker("cache", CircuitState::Closed));
    m.process_event(&breaker("db", CircuitState::HalfOpen));
    assert_eq!(m.active_alerts().len(), 1);
    assert!(r.resolved.lock().unwrap().is_empty());
    tokio::time::advance(Duration::from_secs(3)).await;
    m.process_event(&breaker("db", CircuitState::Closed));
    assert!(m.active_alerts().is_empty());
    assert_eq!(*r.resolved.lock().unwrap(), vec!["breaker_opened"]);
    assert_eq!(m.stats().resolved, 1);
    // Closing again resolves nothing more.
    m.process_event(&breaker("db", CircuitState::Closed));
    assert_eq!(r.resolved.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn pressure_alerts_resolve_as_the_level_falls() {
    let (m, r) = recorded();
    m.process_event(&pressure(
        PressureLevel::Critical,
        PressureLevel::Emergency,
        Signal::Custom(0),
    ));
    assert_eq!(m.active_alerts().len(), 1);
    // Still at or above Emergency? No: any fall below the alert's level clears it.
    m.process_event(&pressure(
        PressureLevel::Emergency,
        PressureLevel::Critical,
        Signal::Custom(0),
    ));
    assert!(m.active_alerts().is_empty());
    assert_eq!(*r.resolved.lock().unwrap(), vec!["pressure_emergency"]);
}

#[tokio::test(start_paused = true)]
async fn service_recovery_resolves_symptoms_and_is_a_resolved_notice() {
    let (m, r) = recorded();
    m.process_event(&service(ServiceEventKind::ErrorRateExceeded {
        rate: 60.0,
        threshold: 50.0,
    }));
    assert_eq!(m.active_alerts().len(), 1);
    m.process_event(&service(ServiceEventKind::Recovered));
    assert!(m.active_alerts().is_empty(), "{:?}", m.active_alerts());
    assert_eq!(*r.resolved.lock().unwrap(), vec!["error_rate_exceeded"]);
    let fired = r.fired.lock().unwrap().clone();
    assert_eq!(
        fired,
        vec![
            ("error_rate_exceeded".to_string(), false),
            ("service_recovered".to_string(), true)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn event_alerts_resolve_after_five_quiet_minutes() {
    let (m, r) = recorded();
    m.process_event(&Event::Custom(CustomEvent::new("deploy", "v2")));
    tokio::time::advance(Duration::from_secs(200)).await;
    m.process_event(&Event::Custom(CustomEvent::new("deploy", "v3")));
    tokio::time::advance(Duration::from_secs(200)).await;
    // 400 s after the first firing but 200 s after the last: still active.
    assert!(m.check_resolutions().is_empty());
    tokio::time::advance(Duration::from_secs(100)).await;
    let gone = m.check_resolutions();
    assert_eq!(gone.len(), 1);
    assert!(gone[0].is_resolved());
    assert_eq!(*r.resolved.lock().unwrap(), vec!["deploy"]);
}

#[tokio::test(start_paused = true)]
async fn suppressed_activation_is_tracked_but_never_resolved_to_sinks() {
    let (m, r) = recorded();
    m.process_event(&breaker("db", CircuitState::Open));
    m.process_event(&breaker("db", CircuitState::Closed));
    // Reopens within the rate limit: suppressed, active, but no sink saw it.
    m.process_event(&breaker("db", CircuitState::Open));
    assert_eq!(m.active_alerts().len(), 1);
    m.process_event(&breaker("db", CircuitState::Closed));
    assert_eq!(r.resolved.lock().unwrap().len(), 1);
    assert_eq!(r.fired.lock().unwrap().len(), 1);
    assert_eq!(m.stats().resolved, 2);
}

#[tokio::test(start_paused = true)]
async fn breakers_open_and_degradation_resolve() {
    let (m, r) = recorded();
    m.process_event(&breaker("a", CircuitState::Open));
    m.process_event(&breaker("b", CircuitState::Open));
    m.process_event(&Event::Degradation(DegradationEvent {
        level: PressureLevel::High,
        active: true,
        at: Instant::now(),
    }));
    let mut kinds: Vec<_> = m
        .active_alerts()
        .iter()
        .map(|a| a.kind().to_string())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            "breaker_opened",
            "breaker_opened",
            "breakers_open",
            "degradation_started"
        ]
    );
    m.process_event(&breaker("a", CircuitState::Closed));
    m.process_event(&Event::Degradation(DegradationEvent {
        level: PressureLevel::Normal,
        active: false,
        at: Instant::now(),
    }));
    let mut res = r.resolved.lock().unwrap().clone();
    res.sort();
    assert_eq!(
        res,
        vec!["breaker_opened", "breakers_open", "degradation_started"]
    );
    assert_eq!(m.active_alerts().len(), 1);
}
