//! Issue 21, bug 2: a failure-rate trip that can never fire is not accepted. A count window
//! smaller than `minimum_calls` caps the minimum at its size (Resilience4j's rule); a time
//! window that can never hold the minimum is refused with a `ConfigError`.

use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitState};

/// Sends `n` failing calls through a breaker built from `layer`; the state after each call.
async fn fail_n(layer: CircuitBreakerLayer, n: usize) -> Vec<CircuitState> {
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: ()| async { Err::<(), _>("boom") }));
    let mut states = Vec::new();
    for _ in 0..n {
        let _ = svc.ready().await.unwrap().call(()).await;
        states.push(handle.state());
    }
    states
}

#[tokio::test(start_paused = true)]
async fn a_count_window_smaller_than_the_default_minimum_still_trips() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(0) // rate trips only
        .count_window(10)
        .build()
        .unwrap();
    let states = fail_n(layer, 100).await;
    // The minimum (20 by default) is capped at the window's 10 calls: the 10th failure opens.
    assert_eq!(states[8], CircuitState::Closed);
    assert_eq!(states[9], CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn an_explicit_minimum_above_the_count_window_is_capped_not_lowered_further() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(0)
        .count_window(10)
        .minimum_calls(1000)
        .build()
        .unwrap();
    let states = fail_n(layer, 10).await;
    assert!(
        states[..9].iter().all(|s| *s == CircuitState::Closed),
        "{states:?}"
    );
    assert_eq!(states[9], CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_minimum_within_the_count_window_is_kept() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(0)
        .count_window(100)
        .minimum_calls(20)
        .build()
        .unwrap();
    let states = fail_n(layer, 20).await;
    assert_eq!(states[18], CircuitState::Closed);
    assert_eq!(states[19], CircuitState::Open);
}

#[test]
fn a_time_window_that_can_never_hold_the_minimum_is_refused() {
    let e = CircuitBreakerLayer::builder()
        .time_window(1)
        .minimum_calls(u32::MAX)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "minimum_calls");
    assert!(e.to_string().contains("time_window"), "{e}");
    // Reachable by traffic: kept.
    assert!(
        CircuitBreakerLayer::builder()
            .time_window(60)
            .minimum_calls(100_000)
            .build()
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn a_time_window_trips_once_the_minimum_is_in() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(0)
        .time_window(10)
        .minimum_calls(20)
        .build()
        .unwrap();
    let states = fail_n(layer, 20).await;
    assert_eq!(states[18], CircuitState::Closed);
    assert_eq!(states[19], CircuitState::Open);
}
