//! State-machine property tests: random operation sequences run against the real layer (through
//! its public service and handle, on a paused tokio clock) and against a small reference model;
//! after every operation the observable state and counters must agree.
//!
//! Hand-rolled in the style of `proptest-state-machine`: a strategy generates the operation
//! list, the runner applies each operation to both and compares.

mod reliability_support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::oneshot;
use tower::{BoxError, Layer, Service, service_fn};
use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitOpen, CircuitState};

const THRESHOLD: u32 = 3; // consecutive failures that open
const PERMITTED: u64 = 2; // half-open probes
const SUCCESSES: u64 = 2; // probe successes that close
const WAIT: u64 = 1_000; // ms open
const MAX_HALF_OPEN: u64 = 5_000; // ms

#[derive(Debug, Clone)]
enum Op {
    /// A call that completes at once.
    Call(bool),
    /// A call that stays in flight.
    Start,
    /// Completes an in-flight call (index modulo their number).
    Finish(usize, bool),
    /// Drops an in-flight call without an outcome.
    Cancel(usize),
    Advance(u64),
    Reset,
    ForceOpen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Call),
        3 => Just(Op::Start),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| Op::Finish(i, ok)),
        1 => any::<usize>().prop_map(Op::Cancel),
        3 => prop_oneof![0..50u64, 900..1100u64, 4900..5200u64].prop_map(Op::Advance),
        1 => Just(Op::Reset),
        1 => Just(Op::ForceOpen),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum St {
    Closed,
    Open { until: u64 },
    Half { probes: u64, succ: u64, since: u64 },
    Forced,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Closed,
    Probe,
}

#[derive(Debug, Clone, Copy)]
struct Ticket {
    kind: Kind,
    generation: u64,
}

/// The reference: the breaker's documented rules, written as plainly as possible.
#[derive(Debug)]
struct Model {
    st: St,
    generation: u64,
    consecutive: u32,
    calls: u64,
    failures: u64,
    rejected: u64,
    t: u64,
}

impl Model {
    fn new() -> Self {
        Model {
            st: St::Closed,
            generation: 0,
            consecutive: 0,
            calls: 0,
            failures: 0,
            rejected: 0,
            t: 0,
        }
    }
    fn go(&mut self, st: St) {
        if st == St::Closed {
            self.consecutive = 0;
        }
        self.st = st;
        self.generation += 1;
    }
    fn acquire(&mut self) -> Option<Ticket> {
        loop {
            let generation = self.generation;
            match self.st {
                St::Closed => {
                    return Some(Ticket {
                        kind: Kind::Closed,
                        generation,
                    });
                }
                St::Forced => break,
                St::Open { until } if self.t < until => break,
                St::Open { .. } => self.go(St::Half {
                    probes: 0,
                    succ: 0,
                    since: self.t,
                }),
                St::Half {
                    probes,
                    succ,
                    since,
                } => {
                    if probes + succ < PERMITTED {
                        self.st = St::Half {
                            probes: probes + 1,
                            succ,
                            since,
                        };
                        return Some(Ticket {
                            kind: Kind::Probe,
                            generation,
                        });
                    }
                    if self.t >= since + MAX_HALF_OPEN {
                        self.go(St::Open {
                            until: self.t + WAIT,
                        });
                        continue;
                    }
                    break;
                }
            }
        }
        self.rejected += 1;
        None
    }
    fn outcome(&mut self, t: Ticket, ok: bool) {
        self.calls += 1;
        if !ok {
            self.failures += 1;
        }
        if t.generation != self.generation {
            return; // a late outcome of an earlier state
        }
        match (t.kind, self.st) {
            (
                Kind::Probe,
                St::Half {
                    probes,
                    succ,
                    since,
                },
            ) if probes > 0 => {
                if !ok {
                    self.go(St::Open {
                        until: self.t + WAIT,
                    });
                } else if succ + 1 >= SUCCESSES {
                    self.go(St::Closed);
                } else {
                    self.st = St::Half {
                        probes: probes - 1,
                        succ: succ + 1,
                        since,
                    };
                }
            }
            (Kind::Closed, St::Closed) => {
                if ok {
                    self.consecutive = 0;
                } else {
                    self.consecutive += 1;
                    if self.consecutive >= THRESHOLD {
                        self.go(St::Open {
                            until: self.t + WAIT,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    fn cancel(&mut self, t: Ticket) {
        if let (
            Kind::Probe,
            St::Half {
                probes,
                succ,
                since,
            },
        ) = (t.kind, self.st)
            && t.generation == self.generation
            && probes > 0
        {
            self.st = St::Half {
                probes: probes - 1,
                succ,
                since,
            };
        }
    }
    fn state(&self) -> CircuitState {
        match self.st {
            St::Closed => CircuitState::Closed,
            St::Open { .. } => CircuitState::Open,
            St::Half { .. } => CircuitState::HalfOpen,
            St::Forced => CircuitState::ForcedOpen,
        }
    }
}

type Fut = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

fn poll_now(f: &mut Fut) -> Poll<Result<(), BoxError>> {
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(THRESHOLD)
        .minimum_calls(u32::MAX) // rate-based opening is covered by the unit tests
        .wait_duration(Duration::from_millis(WAIT))
        .permitted_calls_in_half_open(PERMITTED as u32)
        .success_threshold(SUCCESSES as u32)
        .max_wait_in_half_open(Duration::from_millis(MAX_HALF_OPEN))
        .build()
        .expect("valid config");
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|rx: oneshot::Receiver<bool>| async move {
        match rx.await {
            Ok(true) => Ok(()),
            _ => Err(BoxError::from("failed")),
        }
    }));
    let mut model = Model::new();
    let mut held: Vec<(Fut, oneshot::Sender<bool>, Ticket)> = Vec::new();

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Call(ok) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(ok);
                let mut f: Fut = Box::pin(svc.call(rx));
                let res = poll_now(&mut f);
                match model.acquire() {
                    Some(t) => {
                        model.outcome(t, ok);
                        prop_assert!(
                            matches!(res, Poll::Ready(ref r) if r.is_ok() == ok),
                            "step {step}: admitted call result"
                        );
                    }
                    None => {
                        prop_assert!(
                            matches!(res, Poll::Ready(Err(ref e)) if e.is::<CircuitOpen>()),
                            "step {step}: expected CircuitOpen"
                        );
                    }
                }
            }
            Op::Start => {
                let (tx, rx) = oneshot::channel();
                let mut f: Fut = Box::pin(svc.call(rx));
                let res = poll_now(&mut f);
                match model.acquire() {
                    Some(t) => {
                        prop_assert!(res.is_pending(), "step {step}: expected admission");
                        held.push((f, tx, t));
                    }
                    None => prop_assert!(
                        matches!(res, Poll::Ready(Err(ref e)) if e.is::<CircuitOpen>()),
                        "step {step}: expected CircuitOpen"
                    ),
                }
            }
            Op::Finish(i, ok) if !held.is_empty() => {
                let (mut f, tx, t) = held.remove(i % held.len());
                let _ = tx.send(ok);
                let res = poll_now(&mut f);
                prop_assert!(matches!(res, Poll::Ready(ref r) if r.is_ok() == ok));
                model.outcome(t, ok);
            }
            Op::Cancel(i) if !held.is_empty() => {
                let (f, _tx, t) = held.remove(i % held.len());
                drop(f);
                model.cancel(t);
            }
            Op::Finish(..) | Op::Cancel(_) => {}
            Op::Advance(ms) => {
                tokio::time::advance(Duration::from_millis(ms)).await;
                model.t += ms;
            }
            Op::Reset => {
                handle.reset();
                model.go(St::Closed);
            }
            Op::ForceOpen => {
                handle.force_open();
                model.go(St::Forced);
            }
        }
        let m = handle.metrics();
        prop_assert_eq!(
            m.state,
            model.state(),
            "step {}: state ({:?})",
            step,
            model.st
        );
        prop_assert_eq!(m.calls, model.calls, "step {}: calls", step);
        prop_assert_eq!(m.failures, model.failures, "step {}: failures", step);
        prop_assert_eq!(m.rejected, model.rejected, "step {}: rejected", step);
        prop_assert_eq!(
            m.consecutive_failures,
            model.consecutive,
            "step {}: consecutive",
            step
        );
    }
    // Drop everything still in flight: no probe slot may stay taken.
    for (f, _, t) in held.drain(..) {
        drop(f);
        model.cancel(t);
    }
    if let St::Half { probes, .. } = model.st {
        prop_assert_eq!(probes, 0);
    }
    Ok(())
}

const CASES: u32 = 256;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

fn runner() -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

#[test]
fn breaker_matches_reference_model() {
    let ops = Arc::new(AtomicU64::new(0));
    let counter = ops.clone();
    runner()
        .run(&proptest::collection::vec(op(), 1..80), move |ops| {
            counter.fetch_add(ops.len() as u64, Ordering::Relaxed);
            runtime().block_on(run(ops))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    reliability_support::record(
        "state machine: breaker",
        &format!(
            "{CASES} cases, {} operations checked against the reference",
            ops.load(Ordering::Relaxed)
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// The adaptive concurrency limiter's admission against a reference: a fixed limit (AIMD with
// min = max), guaranteed shares for Critical and High, calls started, finished and cancelled
// in any order.

mod limiter {
    use super::*;
    use tower_pressure::Priority;
    use tower_pressure::concurrency::limit::Aimd;
    use tower_pressure::concurrency::{AdaptiveConcurrencyLayer, Overloaded, Shares};
    use tower_pressure::pressure::PressureMonitor;

    const CLASSES: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    #[derive(Debug, Clone)]
    pub(super) enum LOp {
        Start(usize),
        Finish(usize, bool),
        Cancel(usize),
    }

    pub(super) fn lop() -> impl Strategy<Value = LOp> {
        prop_oneof![
            5 => (0..4usize).prop_map(LOp::Start),
            3 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| LOp::Finish(i, ok)),
            2 => any::<usize>().prop_map(LOp::Cancel),
        ]
    }

    /// Reference: admitted while the total is under the limit; at the limit a class may still
    /// take its guaranteed share, `ceil(limit x pct)`, counting its own calls.
    struct Ref {
        limit: u32,
        guaranteed: [u32; 4],
        per_class: [u32; 4],
    }

    impl Ref {
        fn admit(&mut self, c: usize) -> bool {
            let total: u32 = self.per_class.iter().sum();
            let ok = total < self.limit || self.per_class[c] < self.guaranteed[c];
            if ok {
                self.per_class[c] += 1;
            }
            ok
        }
    }

    pub(super) async fn run(
        limit: u32,
        crit_pct: f64,
        high_pct: f64,
        ops: Vec<LOp>,
    ) -> Result<(), TestCaseError> {
        let (monitor, _) = PressureMonitor::manual();
        let aimd = Aimd::builder()
            .initial_limit(limit)
            .min_limit(limit)
            .max_limit(limit)
            .build()
            .expect("valid aimd");
        let shares = Shares::none()
            .with(Priority::Critical, crit_pct)
            .and_then(|s| s.with(Priority::High, high_pct))
            .expect("valid shares");
        let layer = AdaptiveConcurrencyLayer::builder(monitor)
            .algorithm(aimd)
            .bbr_check(false)
            .shares(shares)
            .build()
            .expect("valid limiter");
        let handle = layer.handle();
        prop_assert_eq!(handle.effective_limit(), limit);
        let mut svc = layer.layer(service_fn(
            |req: http::Request<oneshot::Receiver<bool>>| async move {
                match req.into_body().await {
                    Ok(true) => Ok(()),
                    _ => Err(BoxError::from("failed")),
                }
            },
        ));
        let pct = [crit_pct, high_pct, 0.0, 0.0];
        let mut model = Ref {
            limit,
            guaranteed: pct.map(|p| (limit as f64 * p).ceil() as u32),
            per_class: [0; 4],
        };
        let mut shed = [0u64; 4];
        let mut held: Vec<(Fut, oneshot::Sender<bool>, usize)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                LOp::Start(c) => {
                    let (tx, rx) = oneshot::channel();
                    let mut req = http::Request::new(rx);
                    req.extensions_mut().insert(CLASSES[c]);
                    let mut f: Fut = Box::pin(svc.call(req));
                    let res = poll_now(&mut f);
                    if model.admit(c) {
                        prop_assert!(
                            res.is_pending(),
                            "step {}: class {:?} refused",
                            step,
                            CLASSES[c]
                        );
                        held.push((f, tx, c));
                    } else {
                        shed[c] += 1;
                        prop_assert!(
                            matches!(res, Poll::Ready(Err(ref e)) if e.is::<Overloaded>()),
                            "step {}: class {:?} admitted over the limit",
                            step,
                            CLASSES[c]
                        );
                    }
                }
                LOp::Finish(i, ok) if !held.is_empty() => {
                    let (mut f, tx, c) = held.remove(i % held.len());
                    let _ = tx.send(ok);
                    prop_assert!(poll_now(&mut f).is_ready());
                    model.per_class[c] -= 1;
                }
                LOp::Cancel(i) if !held.is_empty() => {
                    let (f, _, c) = held.remove(i % held.len());
                    drop(f);
                    model.per_class[c] -= 1;
                }
                LOp::Finish(..) | LOp::Cancel(_) => {}
            }
            let total: u32 = model.per_class.iter().sum();
            prop_assert_eq!(handle.in_flight(), total, "step {}: in flight", step);
            for (c, class) in CLASSES.iter().enumerate() {
                prop_assert_eq!(handle.in_flight_of(*class), model.per_class[c]);
                prop_assert_eq!(handle.shed_count(*class), shed[c]);
            }
        }
        drop(held);
        prop_assert_eq!(handle.in_flight(), 0, "slots leaked");
        Ok(())
    }
}

#[test]
fn limiter_matches_reference_model() {
    let ops = Arc::new(AtomicU64::new(0));
    let counter = ops.clone();
    let strategy = (
        1u32..6,
        prop_oneof![Just(0.0), 0.1f64..0.6],
        prop_oneof![Just(0.0), 0.1f64..0.4],
        proptest::collection::vec(limiter::lop(), 1..80),
    );
    runner()
        .run(&strategy, move |(limit, crit, high, ops)| {
            counter.fetch_add(ops.len() as u64, Ordering::Relaxed);
            runtime().block_on(limiter::run(limit, crit, high, ops))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    reliability_support::record(
        "state machine: limiter",
        &format!(
            "{CASES} cases, {} operations checked against the reference",
            ops.load(Ordering::Relaxed)
        ),
    );
}
