//! A circuit breaker: Resilience4j's capabilities, a lock-free hot path, per-key breakers,
//! and trips on resource pressure from the shared [`PressureMonitor`](crate::PressureMonitor).
//!
//! # States
//!
//! ```text
//!            failures ≥ threshold / rate ≥ threshold
//!   CLOSED ─────────────────────────────────────────▶ OPEN ◀──── any probe fails,
//!     ▲                                                │          or max_wait_in_half_open
//!     │ success_threshold probe successes              │ wait_duration (× multiplier^n, jitter)
//!     └──────────────────────── HALF_OPEN ◀────────────┘
//! ```
//!
//! plus the operator states DISABLED (calls pass, outcomes recorded), FORCED_OPEN (every call
//! rejected) and METRICS_ONLY (recorded, never opens), set through a
//! [`CircuitBreakerHandle`].
//!
//! Two trips, usable together: `failure_threshold` consecutive failures (the seed's, default
//! 5), and the failure or slow-call rate over a sliding window ([`WindowKind::Count`]: the
//! last N calls, default 100; [`WindowKind::Time`]: the last N seconds, bucketed per second)
//! once `minimum_calls` are in it (capped at a count window's size, as in Resilience4j,
//! so that `count_window(10)` with the default 20 still trips). The windows really slide: after 1 000 successes, a count
//! window of 100 at 50 % opens after 50 failures. Rates are evaluated when a failure or
//! slow call is recorded.
//!
//! A resource trip rejects calls while the monitor's level is at or above
//! [`trip_at_level`](CircuitBreakerBuilder::trip_at_level), or memory is above
//! [`memory_threshold_mb`](CircuitBreakerBuilder::memory_threshold_mb) /
//! [`memory_threshold_percent`](CircuitBreakerBuilder::memory_threshold_percent); it is not a
//! state (it ends by itself when pressure falls).
//!
//! Rejected calls fail fast in `call` with [`CircuitOpen`] (`retry_after()`, breaker name and
//! key), composed as [`tower::BoxError`]; the `http` feature maps it to `503` with
//! `Retry-After` ([`http::circuit_open_response`]).
//!
//! # Request path
//!
//! CLOSED admission is one atomic load; recording a success is one increment of the calling
//! thread's call counter plus, while the count window still holds a failure or slow call
//! (or is not yet full), a slot swap in the window; a time window adds one to the calling
//! thread's bucket (see `window.rs` for the layouts). No lock, no allocation, and no clock
//! read unless slow-call detection or the time window needs one. Threads hammering one
//! breaker write no shared cache line in the healthy steady state: each thread has a lane
//! with its own permit reference count, counter stripe and time buckets (see `lane.rs`). HALF_OPEN probe
//! slots are [`Permit`] guards tagged with the generation of their open cycle: a cancelled
//! probe frees its slot, and a late result from an earlier cycle can neither close nor re-open
//! the current one. The state word's bit layout and orderings are documented in `state.rs`.
//!
//! Events go to the [`EventBus`](crate::event::EventBus): `StateTransition` with a reason,
//! `FailureRateExceeded`, `Reset`, and `CallsRejected` aggregated (at most one per second per
//! breaker, and on each transition).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), tower::BoxError> {
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitOpen, CircuitState};
//!
//! let layer = CircuitBreakerLayer::builder()
//!     .name("llm")
//!     .failure_threshold(2)
//!     .wait_duration(Duration::from_secs(10))
//!     .permitted_calls_in_half_open(1)
//!     .success_threshold(1)
//!     .build()?;
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(|fail: bool| async move {
//!     if fail { Err("boom") } else { Ok("ok") }
//! }));
//! for _ in 0..2 {
//!     assert!(svc.ready().await?.call(true).await.is_err());
//! }
//! assert_eq!(handle.state(), CircuitState::Open);
//! let err = svc.ready().await?.call(false).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<CircuitOpen>().unwrap().retry_after(), Duration::from_secs(10));
//! tokio::time::advance(Duration::from_secs(10)).await;
//! assert_eq!(svc.ready().await?.call(false).await?, "ok"); // the probe closes it
//! assert_eq!(handle.state(), CircuitState::Closed);
//! # Ok(()) }
//! ```

mod classify;
mod config;
mod error;
pub mod future;
mod handle;
mod hold;
#[cfg(feature = "http")]
pub mod http;
mod lane;
mod layer;
mod registry;
mod service;
mod settings;
mod shared;
mod state;
mod status;
mod window;

pub use crate::event::CircuitState;
pub use classify::{Classified, Classify, Complete, ErrorsAsFailures, Outcome};
pub use config::{BreakerConfig, CircuitBreakerBuilder, Rng, WindowKind};
pub use error::{CircuitOpen, RejectReason};
pub use future::Permit;
pub use handle::{BreakerMetrics, CircuitBreakerHandle};
pub use layer::CircuitBreakerLayer;
pub use registry::{KeyExtractor, NoKey};
pub use service::CircuitBreaker;
pub use settings::BreakerUpdate;
