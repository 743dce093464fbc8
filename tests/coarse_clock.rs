//! The coarse clock option (`tower_pressure::clock::CoarseClock`). Its own test binary: the
//! coarse clock is process-wide, and the other binaries' paused-clock tests must keep the
//! exact one. It follows the OS clock, so these tests run on real time; they assert only
//! orderings and outcomes, never how fast anything ran (every wait is bounded).

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
use tower_pressure::ResilienceStack;
use tower_pressure::circuit_breaker::CircuitOpen;
use tower_pressure::clock::{self, CoarseClock};
use tower_pressure::pressure::PressureMonitor;

/// The tests share the process-wide clock: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn reads_are_exact_without_a_guard_and_coarse_with_one() {
    let _s = serial();
    assert!(!CoarseClock::is_running());
    let before = Instant::now();
    let t = clock::now();
    assert!(t >= before && t <= Instant::now(), "exact read");

    let guard = CoarseClock::start(Duration::from_millis(1)).expect("valid resolution");
    assert!(CoarseClock::is_running());
    assert_eq!(CoarseClock::resolution(), Some(Duration::from_millis(1)));
    // Coarse reads are never ahead of the exact clock, and never go backwards.
    let mut last = clock::now();
    for _ in 0..10_000 {
        let t = clock::now();
        assert!(t >= last, "coarse time went backwards");
        assert!(t <= Instant::now(), "coarse time ahead of the exact clock");
        last = t;
    }
    // It advances: within a bounded wait a later tick is seen.
    let first = clock::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while clock::now() == first {
        assert!(
            std::time::Instant::now() < deadline,
            "the coarse clock did not tick within 10 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    drop(guard);
    assert!(!CoarseClock::is_running());
    assert_eq!(CoarseClock::resolution(), None);
    let before = Instant::now();
    let t = clock::now();
    assert!(
        t >= before && t <= Instant::now(),
        "exact again after the last guard"
    );
}

#[test]
fn the_clock_runs_until_the_last_guard_and_clones_count() {
    let _s = serial();
    let a = CoarseClock::start(Duration::from_millis(2)).expect("valid");
    let b = CoarseClock::start(Duration::from_millis(1)).expect("joins the running ticker");
    assert_eq!(
        CoarseClock::resolution(),
        Some(Duration::from_millis(2)),
        "the running ticker keeps its resolution"
    );
    let c = b.clone();
    drop(a);
    drop(b);
    assert!(CoarseClock::is_running(), "a clone still holds it");
    drop(c);
    assert!(!CoarseClock::is_running());
    // And it starts again.
    let d = CoarseClock::start(Duration::from_millis(1)).expect("restart");
    assert!(CoarseClock::is_running());
    drop(d);
    assert!(!CoarseClock::is_running());
}

#[test]
fn bad_resolutions_are_refused_by_name() {
    let _s = serial();
    for bad in [Duration::ZERO, Duration::from_secs(2)] {
        let err = CoarseClock::start(bad).expect_err("refused");
        assert!(
            err.to_string().contains("coarse_clock.resolution"),
            "names the field: {err}"
        );
    }
    assert!(!CoarseClock::is_running());
}

#[test]
fn the_outbound_stack_works_on_the_coarse_clock() {
    let _s = serial();
    let _clock = CoarseClock::start(Duration::from_millis(1)).expect("valid");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (monitor, _manual) = PressureMonitor::manual();
        // Answers: every request succeeds.
        let mut ok = ResilienceStack::outbound(monitor.clone()).layer(service_fn(
            |r: http::Request<()>| async move { Ok::<_, Infallible>(r.extensions().len()) },
        ));
        for _ in 0..200 {
            let n = ok
                .ready()
                .await
                .expect("ready")
                .call(http::Request::new(()))
                .await
                .expect("answered");
            assert!(n >= 1, "the stack set the constraints");
        }
        // Fails: the breaker opens on the failure count, whatever the clock's resolution.
        let mut failing =
            ResilienceStack::outbound(monitor).layer(service_fn(|_: http::Request<()>| async {
                Err::<(), BoxError>("backend down".into())
            }));
        let mut open = false;
        for _ in 0..500 {
            let res = failing
                .ready()
                .await
                .expect("ready")
                .call(http::Request::new(()))
                .await;
            let err = res.expect_err("the backend always fails");
            if err.downcast_ref::<CircuitOpen>().is_some()
                || std::error::Error::source(&*err)
                    .is_some_and(|s| s.downcast_ref::<CircuitOpen>().is_some())
            {
                open = true;
                break;
            }
        }
        assert!(open, "the breaker opened on the coarse clock");
    });
}
