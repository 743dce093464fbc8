//! Retries that are safe by default: backoff with jitter, a retry budget shared by every
//! clone, server pushback, and awareness of pressure and deadlines.
//!
//! Retries are where resilience stacks do the most harm: "3 attempts" triples the load on a
//! backend exactly when it is failing. [`RetryLayer`] therefore:
//!
//! * spends a shared [`RetryBudget`] (default: retries add at most 20 % on top of first
//!   attempts over 10 s, plus 10 per second): when it is empty the original error is returned
//!   and a counted `BudgetExhausted` event is reported (at most one per second);
//! * makes **no retry at or above `Critical` pressure** (configurable) and doubles the backoff
//!   at `High`, reading the shared [`PressureMonitor`](crate::PressureMonitor) with one atomic
//!   load;
//! * never sleeps past the request's [`Constraints`](crate::Constraints) deadline nor past
//!   its total time bound, and can time out each attempt; no wait ever panics: backoff delays
//!   and `max_pushback` are at most [`MAX_WAIT`] (one day, refused by the builder beyond),
//!   and `Duration::MAX` time bounds and attempt timeouts saturate (mean "no limit");
//! * honours `Retry-After` (delta-seconds and HTTP-date) and `grpc-retry-pushback-ms`
//!   and never retries before the server's time: a pushback longer than `max_pushback` or
//!   than the time left ends retrying at once (see [Server pushback](#server-pushback));
//! * backs off with [`Backoff`] (fixed, linear, exponential) and [`Jitter`] (none, full,
//!   equal, decorrelated), randomised by an injectable [`Rng`];
//! * retries only what a [`Classify`] allows: by default errors marked [`Retryable`],
//!   connection refused/reset, timeouts; with the `http` feature,
//!   [`http::HttpClassifier`] adds 502/503/504/429/408 (never other 4xx), gRPC `UNAVAILABLE`
//!   with [`grpc`](http::HttpClassifier::grpc), and replays only idempotent requests (GET,
//!   HEAD, OPTIONS, PUT, DELETE, or an `Idempotency-Key` header, or the
//!   [`http::Idempotent`] extension);
//! * retries the crate's own local rejections (an open breaker's
//!   [`CircuitOpen`](crate::circuit_breaker::CircuitOpen), the limiter's
//!   [`Overloaded`](crate::concurrency::Overloaded)) only when the request names a fallback
//!   ([`route::FallbackKeys`](crate::route::FallbackKeys)): the next attempt then goes at
//!   once to that target ([`route::RouteKey`](crate::route::RouteKey)), judged by its own
//!   breaker; retrying the same target would only be refused again (see [`crate::route`]);
//! * reports `RetryAttempt`, `RetryExhausted` and `BudgetExhausted` as
//!   [`RetryEvent`](crate::event::RetryEvent)s on the monitor's bus.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), tower::BoxError> {
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::{pressure::PressureMonitor, retry::{RetryLayer, Retryable}};
//!
//! let (monitor, _manual) = PressureMonitor::manual();
//! let calls = Arc::new(AtomicU32::new(0));
//! let c = calls.clone();
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(monitor))
//!     .service(service_fn(move |_req: http::Request<()>| {
//!         let n = c.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if n == 0 { Err(Retryable::new("flaky")) } else { Ok("done") }
//!         }
//!     }));
//! assert_eq!(svc.oneshot(http::Request::new(())).await?, "done");
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # Ok(()) }
//! ```
//!
//! # Server pushback
//!
//! A failure may carry the server's time: a `Retry-After` or `grpc-retry-pushback-ms` on a
//! response the classifier retries, or [`Retryable::after`] on an error. The next attempt
//! waits exactly that long (no jitter, no stretch), never less, as Polly and gRPC's retry
//! design (gRFC A6) do. When the server's time is beyond what the layer may wait, beyond
//! `max_pushback` (default 60 s), past the total time bound or at or after the request's
//! deadline, the failure is **not retried at all** (reason
//! [`StopReason::PushbackTooLong`]), and the caller gets the last result as it came: the
//! response with its headers unchanged, or the error whose
//! [`Retryable::retry_after`] still tells the time. A
//! [queue fallback](crate::fallback::FallbackLayer::queue) outside the retry layer reads
//! that time (see [`fallback::retry_after`](crate::fallback::retry_after)) and waits it
//! out when its own `max_wait` allows.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), tower::BoxError> {
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt, service_fn};
//! use tower_pressure::{pressure::PressureMonitor, retry::{RetryLayer, Retryable}};
//!
//! let (monitor, _manual) = PressureMonitor::manual();
//! let layer = RetryLayer::builder(monitor).max_pushback(Duration::from_secs(60)).build()?;
//! let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
//!     Err::<(), _>(tower::BoxError::from(Retryable::after("rate limited", Duration::from_secs(3600))))
//! }));
//! let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
//! // Not retried 59 minutes early: the error is returned at once, with the server's time.
//! assert_eq!(tower_pressure::fallback::retry_after(&err), Some(Duration::from_secs(3600)));
//! # Ok(()) }
//! ```
//!
//! # Requests
//!
//! A request is replayed by cloning it, so it must be `Clone` and carry extensions
//! ([`HasExtensions`](crate::constraints::HasExtensions)): `http::Request<B>` is `Clone` when
//! its body is (`Full<Bytes>`, `String`, `()`...). Streaming bodies (hyper's `Incoming`,
//! axum's `Body`, tonic's) are made replayable by [`http::BufferBodyLayer`], which buffers
//! them up to a size limit and fails with [`http::BodyTooLarge`] past it (a tonic client's
//! whole stack is in [the `http` module's docs](http#grpc-tonic)). The last attempt
//! is made with the original copy, so a request allowed `n` attempts is cloned `n - 1` times;
//! a request the classifier will never retry (a POST without idempotency key) is not cloned.
//!
//! # Why not tower's `Retry` + `Policy`?
//!
//! The crate reuses tower where it fits: [`RetryBudget`] implements
//! `tower::retry::budget::Budget`, so it plugs into tower's own policies, and the future
//! follows `tower::retry::future::ResponseFuture`'s shape (a clone of the service is driven
//! to readiness before each retry; no `Box::pin`), except that the clone is made only when a
//! retry happens, from a per-thread copy the layer keeps (see [`Retry`]'s docs). But the
//! layer is not a `Policy` on top of `tower::retry::Retry`, because:
//!
//! * a `Policy` only sees the result *after* an attempt and returns a future to await; the
//!   per-attempt timeout must race the attempt itself, and its deadline must be re-armed for
//!   each attempt: with `Retry` that needs a second wrapper service and a way to smuggle
//!   per-request state into it;
//! * the service's error type would be the inner one, while timeouts need `BoxError`;
//! * after a wait the pressure may have risen to `Critical`: the retry must then be called
//!   off and the *previous* result returned; `Retry` has already dropped it (it hands the
//!   result back to `Policy::retry` by `&mut` and keeps nothing);
//! * `Retry` clones the whole policy into every response future (per-request counters,
//!   `Arc`s) and the service, and always clones the request, even when it will never be
//!   retried and even for the last attempt; ours clones only what a retry can use.
//!
//! The bench `benches/retry.rs` compares both on a successful first attempt.

pub mod backoff;
pub mod budget;
mod classify;
mod error;
pub mod future;
#[cfg(feature = "http")]
pub mod http;
mod layer;
mod policy;
pub mod pushback;
mod service;
mod settings;
mod status;

pub use backoff::{Backoff, FastRng, Jitter, MAX_WAIT, Rng};
pub use budget::{RetryBudget, RetryBudgetBuilder};
pub use classify::{Classify, DefaultClassifier, RetryAllErrors, Verdict, classify_error};
pub use error::{AttemptTimedOut, Retryable, is_retryable};
pub use layer::{RetryLayer, RetryLayerBuilder, RetryStats};
pub use policy::{RetryPolicy, StopReason};
pub use pushback::{Pushback, parse_grpc_pushback, parse_retry_after};
pub use service::Retry;
pub use settings::{RetryHandle, RetryUpdate};
