//! # tower-pressure
//!
//! Resource-aware resilience for any [tower](https://docs.rs/tower) `Service`: keep a service
//! up under overload, failing dependencies and memory pressure.
//!
//! One [`PressureMonitor`] per process samples CPU and memory (relative to the cgroup's
//! limits), Linux PSI, the tokio runtime and custom gauges, and publishes a [`PressureLevel`]
//! (`Normal` to `Emergency`, with hysteresis) that every layer reads with one atomic load. The
//! layers share it:
//!
//! | layer | what it does |
//! |---|---|
//! | [`degradation::DegradationLayer`] | inserts [`Constraints`] into every request: how much it may spend right now, and why |
//! | [`concurrency::AdaptiveConcurrencyLayer`] | learns the concurrency limit from latency, scales it by pressure, sheds lower [`Priority`] classes first |
//! | [`circuit_breaker::CircuitBreakerLayer`] | count- and time-window breaker, per key, lock-free, trips on memory or pressure too |
//! | [`retry::RetryLayer`] | backoff with jitter, a shared retry budget, Retry-After, pressure- and deadline-aware |
//! | [`quota::QuotaLayer`] | per-tenant soft / hard / burst quotas with enforcement actions and usage analytics |
//! | [`alert::AlertLayer`], [`alert::AlertManager`] | per-service metrics; alerts with severities, rules, rate limits and sinks |
//!
//! [`ResilienceStack`] puts them in the right order for a server (`inbound`) or a client
//! (`outbound`); [`ServiceBuilderExt`] adds one `ServiceBuilder` method per layer. Every layer
//! reports to one [`event::EventBus`]; [`status::StatusService`] serves one snapshot of
//! everything as JSON or Prometheus text; [`rejection`] turns every error of the crate into
//! the right HTTP response (503/429 + `Retry-After`) or `tonic::Status`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::{Constraints, ResilienceStack, ServiceBuilderExt, pressure::PressureMonitor};
//!
//! let monitor = PressureMonitor::builder().build()?; // CPU, memory, cgroup, PSI, runtime
//! let svc = ServiceBuilder::new()
//!     .resilience(ResilienceStack::inbound(monitor.clone()))
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         let c = Constraints::from_request(&req).unwrap_or_default();
//!         Ok::<_, tower::BoxError>(format!("analysing {} entities", c.entity_limit(100)))
//!     }));
//! match svc.oneshot(http::Request::new(())).await {
//!     Ok(answer) => assert!(answer.starts_with("analysing")),
//!     // On a host under heavy pressure the stack sheds instead, with a typed error that
//!     // `rejection` maps to 503 + Retry-After.
//!     Err(e) => assert_eq!(tower_pressure::rejection::error_response(&*e).status(), 503),
//! }
//! # Ok(()) }
//! ```
//!
//! # Rules of the request path
//!
//! No lock, no syscall and no allocation on the common path (the one `http::Extensions` insert
//! aside); every permit (concurrency slot, half-open probe, retry token) is a guard released on
//! drop; `poll_ready` only propagates the inner service's readiness; time comes from
//! `tokio::time::Instant`, so every test runs under a paused clock; builders return a
//! [`ConfigError`] naming the bad field.
//!
//! A stack reads the clock at most twice per request whatever its depth: the outermost
//! timing layer reads it when the request is called and publishes that time to the layers
//! its `call` reaches, and the innermost timing future reads it when the response is ready
//! and hands that time outwards to the futures around it in the same poll. The
//! [`timeout`] layer reads none: it arms its timer from the shared call time, and only when
//! the response is not ready at once.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod alert;
#[cfg(feature = "http")]
pub mod body;
pub mod builder;
pub mod circuit_breaker;
pub mod clock;
pub mod concurrency;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
pub mod constraints;
pub mod degradation;
pub mod error;
pub mod event;
pub mod fallback;
pub mod health;
mod keyed;
mod lane;
mod outcome;
pub mod pressure;
pub mod priority;
#[cfg(feature = "http")]
pub mod provider_limits;
pub mod quota;
pub mod rejection;
pub mod retry;
pub mod route;
mod section;
pub mod stack;
pub mod status;
mod sync;
mod target;
pub mod timeout;

#[doc(hidden)]
pub mod __fuzz;

pub use builder::ServiceBuilderExt;
pub use constraints::Constraints;
pub use error::ConfigError;
pub use pressure::{PressureLevel, PressureMonitor};
pub use priority::Priority;
pub use stack::ResilienceStack;

// The README's example is compiled (not run: it serves forever) with the doctests, so it
// cannot drift from the API. It needs the `axum` feature.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
