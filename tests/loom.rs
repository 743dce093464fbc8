//! loom models of the lock-free pieces: the breaker's state word (half-open probe slots,
//! transitions), the adaptive limiter's admission word, the retry budget's token words and
//! the monitor's sequence-lock publication.
//!
//! Run with `bash scripts/loom.sh` (`RUSTFLAGS="--cfg tower_pressure_loom"`, bounded
//! preemptions). Every model drives the public API; loom explores the interleavings of the
//! atomics and the transition mutex underneath (see `src/sync.rs`).
#![cfg(tower_pressure_loom)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use tower::{Layer, Service, service_fn};
use tower_pressure::PressureLevel;
use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use tower_pressure::concurrency::AdaptiveConcurrencyLayer;
use tower_pressure::concurrency::limit::Aimd;
use tower_pressure::event::{BreakerEventKind, Event};
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::retry::RetryBudget;

/// A model builder with a preemption bound (`LOOM_MAX_PREEMPTIONS`, default 2).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

fn half_open(permitted: u32, successes: u32) -> CircuitBreakerLayer {
    let layer = CircuitBreakerLayer::builder()
        .permitted_calls_in_half_open(permitted)
        .success_threshold(successes)
        .build()
        .expect("valid config");
    layer.handle().set_all(CircuitState::HalfOpen);
    layer
}

/// Calls that never complete hold their probe slot; `held` counts the ones admitted.
/// Two callers race for one slot: at most one holds it at any time, a dropped (cancelled)
/// probe gives it back, and nothing is recorded for cancelled calls.
#[test]
fn half_open_slots_no_over_admission_no_leak() {
    model(|| {
        let layer = half_open(1, 1);
        let held = Arc::new(AtomicUsize::new(0));
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let mut svc = layer.layer(service_fn(|()| {
                    std::future::pending::<Result<(), Infallible>>()
                }));
                let (held, admitted) = (held.clone(), admitted.clone());
                thread::spawn(move || {
                    let mut fut = pin!(svc.call(()));
                    if poll_once(fut.as_mut()).is_pending() {
                        // Admitted as a probe: nobody else may hold the only slot now.
                        assert_eq!(held.fetch_add(1, Ordering::SeqCst), 0, "over-admission");
                        admitted.fetch_add(1, Ordering::SeqCst);
                        held.fetch_sub(1, Ordering::SeqCst);
                    }
                    // The future (and its permit) is dropped here: cancellation.
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            admitted.load(Ordering::SeqCst) >= 1,
            "a free slot was refused"
        );
        let handle = layer.handle();
        assert_eq!(handle.state(), CircuitState::HalfOpen);
        assert_eq!(
            handle.metrics().calls,
            0,
            "cancelled probes are not recorded"
        );
        // No leaked slot: a new probe is admitted.
        let mut svc = layer.layer(service_fn(|()| {
            std::future::pending::<Result<(), Infallible>>()
        }));
        let fut = pin!(svc.call(()));
        assert!(poll_once(fut).is_pending(), "probe slot leaked");
    });
}

/// Three callers, two probe slots: never more than two held at once; all slots come back.
#[test]
fn half_open_two_slots_three_callers() {
    model(|| {
        let layer = half_open(2, 2);
        let held = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let mut svc = layer.layer(service_fn(|()| {
                    std::future::pending::<Result<(), Infallible>>()
                }));
                let held = held.clone();
                thread::spawn(move || {
                    let mut fut = pin!(svc.call(()));
                    if poll_once(fut.as_mut()).is_pending() {
                        assert!(held.fetch_add(1, Ordering::SeqCst) < 2, "over-admission");
                        held.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            layer.handle().can_execute(None).is_ok(),
            "probe slot leaked"
        );
    });
}

/// One probe succeeds while another fails: whatever the order, the breaker ends OPEN (a
/// failed probe re-opens; a late success from the closed cycle cannot close it again).
#[test]
fn probe_success_and_failure_race_ends_open() {
    model(|| {
        let layer = half_open(2, 2);
        let threads: Vec<_> = [true, false]
            .into_iter()
            .map(|ok| {
                let mut svc = layer.layer(service_fn(|ok: bool| {
                    std::future::ready(if ok { Ok(()) } else { Err("boom") })
                }));
                thread::spawn(move || {
                    let fut = pin!(svc.call(ok));
                    let _ = poll_once(fut);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(layer.handle().state(), CircuitState::Open);
    });
}

fn transitions_to(rx: &mut tokio::sync::broadcast::Receiver<Event>, to: CircuitState) -> usize {
    let mut n = 0;
    while let Ok(e) = rx.try_recv() {
        if let Event::Breaker(b) = e
            && let BreakerEventKind::StateTransition { to: t, .. } = b.kind
            && t == to
        {
            n += 1;
        }
    }
    n
}

/// Two successful probes close the breaker exactly once, and both are recorded.
#[test]
fn two_probe_successes_close_exactly_once() {
    model(|| {
        let layer = half_open(2, 2);
        let mut rx = layer.handle().events().subscribe();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let mut svc =
                    layer.layer(service_fn(|()| std::future::ready(Ok::<_, Infallible>(()))));
                thread::spawn(move || {
                    let fut = pin!(svc.call(()));
                    assert!(matches!(poll_once(fut), Poll::Ready(Ok(()))));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let handle = layer.handle();
        assert_eq!(handle.state(), CircuitState::Closed);
        let m = handle.metrics();
        assert_eq!((m.calls, m.successes), (2, 2));
        assert_eq!(transitions_to(&mut rx, CircuitState::Closed), 1);
    });
}

/// Closed state: two concurrent failures reaching `failure_threshold` open the breaker
/// exactly once; no failure is lost.
#[test]
fn concurrent_failures_open_exactly_once() {
    model(|| {
        let layer = CircuitBreakerLayer::builder()
            .failure_threshold(2)
            .build()
            .expect("valid config");
        let mut rx = layer.handle().events().subscribe();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let mut svc =
                    layer.layer(service_fn(|()| std::future::ready(Err::<(), _>("boom"))));
                thread::spawn(move || {
                    let fut = pin!(svc.call(()));
                    let _ = poll_once(fut);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let handle = layer.handle();
        assert_eq!(handle.state(), CircuitState::Open);
        assert_eq!(handle.metrics().failures, 2);
        assert_eq!(transitions_to(&mut rx, CircuitState::Open), 1);
    });
}

fn budget() -> RetryBudget {
    // ratio 1.0: one first attempt deposits exactly one retry token; no floor.
    RetryBudget::builder()
        .ratio(1.0)
        .min_per_second(0)
        .build()
        .expect("valid budget")
}

/// Two retries race for the last token: exactly one gets it.
#[test]
fn budget_last_token_taken_once() {
    model(|| {
        let b = budget();
        let now = tokio::time::Instant::now();
        b.deposit_at(now);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || b.withdraw_at(now))
            })
            .collect();
        let won: usize = threads
            .into_iter()
            .map(|t| t.join().unwrap() as usize)
            .sum();
        assert_eq!(won, 1);
        assert_eq!((b.withdrawn(), b.refused()), (1, 1));
    });
}

/// A deposit racing a withdrawal is never lost: over the race and a final withdrawal, exactly
/// two tokens (one deposited before, one during) are taken.
#[test]
fn budget_deposit_withdraw_no_lost_update() {
    model(|| {
        let b = budget();
        let now = tokio::time::Instant::now();
        b.deposit_at(now);
        let d = {
            let b = b.clone();
            thread::spawn(move || b.deposit_at(now))
        };
        let w = {
            let b = b.clone();
            thread::spawn(move || b.withdraw_at(now))
        };
        d.join().unwrap();
        let first = w.join().unwrap();
        assert!(first, "a token was deposited before the race");
        assert!(b.withdraw_at(now), "the concurrent deposit was lost");
        assert!(!b.withdraw_at(now), "a token was created from nothing");
    });
}

/// The monitor's sequence lock: a reader never sees a torn snapshot (level, driver value and
/// sample count from different samples).
#[test]
fn monitor_snapshot_never_torn() {
    model(|| {
        let (monitor, manual) = PressureMonitor::manual();
        // Building the monitor takes a first sample.
        let base = monitor.snapshot().samples();
        let writer = {
            let monitor = monitor.clone();
            thread::spawn(move || {
                manual.set(80.0);
                monitor.sample_now();
            })
        };
        let s = monitor.snapshot();
        match s.samples() - base {
            0 => assert_eq!(s.level(), PressureLevel::Normal),
            1 => {
                assert_eq!(s.level(), PressureLevel::High);
                assert_eq!(s.value(), 80.0);
            }
            n => panic!("impossible sample count {n}"),
        }
        writer.join().unwrap();
        let s = monitor.snapshot();
        assert_eq!((s.samples() - base, s.level()), (1, PressureLevel::High));
        assert_eq!(monitor.level(), PressureLevel::High);
    });
}

fn limiter(limit: u32) -> AdaptiveConcurrencyLayer {
    let (monitor, _) = PressureMonitor::manual();
    let aimd = Aimd::builder()
        .initial_limit(limit)
        .min_limit(limit)
        .max_limit(limit)
        .build()
        .expect("valid aimd");
    AdaptiveConcurrencyLayer::builder(monitor)
        .algorithm(aimd)
        .bbr_check(false)
        .build()
        .expect("valid limiter")
}

/// Adaptive concurrency admission and release: two callers race for a limit of one; at most
/// one holds a slot at any time, dropping a held call releases it, and the in-flight word
/// returns to zero (no lost update between a reservation and a release).
#[test]
fn limiter_no_over_admission_no_leak() {
    model(|| {
        let layer = limiter(1);
        let held = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let mut svc = layer.layer(service_fn(|_: http::Request<()>| {
                    std::future::pending::<Result<(), Infallible>>()
                }));
                let held = held.clone();
                thread::spawn(move || {
                    let mut fut = pin!(svc.call(http::Request::new(())));
                    if poll_once(fut.as_mut()).is_pending() {
                        assert_eq!(held.fetch_add(1, Ordering::SeqCst), 0, "over-admission");
                        held.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let handle = layer.handle();
        assert_eq!(handle.in_flight(), 0, "slot leaked");
        let mut svc = layer.layer(service_fn(|_: http::Request<()>| {
            std::future::pending::<Result<(), Infallible>>()
        }));
        let fut = pin!(svc.call(http::Request::new(())));
        assert!(poll_once(fut).is_pending(), "a free slot was refused");
        assert_eq!(handle.in_flight(), 1);
    });
}

/// A release racing an admission: a caller holding the only slot drops it while another
/// asks; the second is admitted only after the release, and the count ends at zero.
#[test]
fn limiter_release_races_admission() {
    model(|| {
        let layer = limiter(1);
        let mut svc = layer.layer(service_fn(|_: http::Request<()>| {
            std::future::pending::<Result<(), Infallible>>()
        }));
        let held = Arc::new(AtomicUsize::new(1));
        let mut first = Box::pin(svc.call(http::Request::new(())));
        assert!(poll_once(first.as_mut()).is_pending());
        let releaser = {
            let held = held.clone();
            thread::spawn(move || {
                held.fetch_sub(1, Ordering::SeqCst);
                drop(first);
            })
        };
        let mut fut = Box::pin(svc.call(http::Request::new(())));
        let admitted = poll_once(fut.as_mut()).is_pending();
        if admitted {
            assert_eq!(held.fetch_add(1, Ordering::SeqCst), 0, "over-admission");
            held.fetch_sub(1, Ordering::SeqCst);
        }
        releaser.join().unwrap();
        drop(fut);
        assert_eq!(layer.handle().in_flight(), 0);
    });
}
