//! Fallbacks: what to answer when the primary service fails, least disruptive first.
//!
//! Retry, circuit breaking, degradation and scaling down are their own layers
//! ([`retry`](crate::retry), [`circuit_breaker`](crate::circuit_breaker),
//! [`degradation`](crate::degradation), [`concurrency`](crate::concurrency)). [`FallbackLayer`]
//! adds the remaining strategies of a fallback protocol:
//!
//! | strategy | constructor | answers with | costs on the success path |
//! |---|---|---|---|
//! | queue | [`FallbackLayer::queue`] | the primary again, after the failure's `Retry-After` (bounded by `max_wait`, the deadline, `max_queued`) | a clone of the request and of the primary |
//! | cache | [`FallbackLayer::cache`] | the key's last good response, if younger than `max_age` (marked stale) | key lookup, no lock; a sampled store (see [`CacheFallback`]) |
//! | switch provider | [`FallbackLayer::service`] | an alternate service's answer to the same request | a clone of the request |
//! | degrade | [`FallbackLayer::value`] | a response built from the error | nothing |
//!
//! Which failures are handled is a [`Trigger`]: every error by default, or
//! [`when`](FallbackLayerBuilder::when) a predicate accepts one; [`is_circuit_open`],
//! [`is_overloaded`], [`is_timeout`], [`is_retry_exhausted`] and [`is_rejection`] recognise
//! the crate's own rejections. With the `http` feature, [`http::ServerErrors`] also treats
//! `5xx`/`429` *responses* as failures (reading their `Retry-After`).
//!
//! **Nothing is swallowed**: when the trigger does not accept a failure, or the strategy
//! does not apply (cache miss, entry too old, queue full, no retry-after), the original
//! error, or the original failed response, is returned unchanged. When a fallback is tried
//! and fails itself, the error is a [`FallbackFailed`] whose `source()` is the primary's error
//! (a queue's second try returns its own result as is).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::fallback::{FallbackLayer, is_rejection};
//!
//! let backup = service_fn(|q: String| async move { Ok::<_, tower::BoxError>(format!("backup answers {q}")) });
//! let svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::service(backup).when(is_rejection).build()?)
//!     .service(service_fn(|_: String| async {
//!         Err::<String, tower::BoxError>(Box::new(tower::timeout::error::Elapsed::new()))
//!     }));
//! assert_eq!(svc.oneshot("q".into()).await?, "backup answers q");
//! # Ok(()) }
//! ```
//!
//! # A chain, least disruptive first
//!
//! One layer holds one strategy; a chain is layers stacked, each handling what the layer
//! inside it could not. The recommended order, innermost (tried first) to outermost (last
//! resort):
//!
//! 1. **queue**: the same provider, the same answer, only later; wasted if the wait is long,
//!    so bounded by `max_wait` and the deadline;
//! 2. **cache**: an answer that was right a moment ago, marked stale;
//! 3. **switch provider**: a fresh answer from another (often costlier or weaker) provider;
//! 4. **degrade**: a static or reduced answer that always works.
//!
//! `ServiceBuilder` lists layers outermost first, so the chain reads bottom-up:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), tower::BoxError> {
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::fallback::FallbackLayer;
//! type Req = http::Request<String>;
//!
//! let backup = service_fn(|_: Req| async { Err::<String, tower::BoxError>("backup down too".into()) });
//! let svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::value(|_: &tower::BoxError| String::from("try again later")).build()?) // 4
//!     .layer(FallbackLayer::service(backup).build()?)                                            // 3
//!     .layer(FallbackLayer::cache(|r: &Req| Some(r.body().clone()), 10_000, Duration::from_secs(300)).build()?) // 2
//!     .layer(FallbackLayer::queue(Duration::from_secs(2), 64).build()?)                           // 1
//!     .service(service_fn(|_: Req| async { Err::<String, tower::BoxError>("primary down".into()) }));
//! assert_eq!(svc.oneshot(http::Request::new("q".into())).await?, "try again later");
//! # Ok(()) }
//! ```
//!
//! # Where it sits
//!
//! Outside the outbound stack: `Fallback → Alert → Retry → Degradation → CircuitBreaker →
//! timeout → client`. The primary's retries, breaker and timeout run first, and the fallback
//! sees their verdict: a fast `CircuitOpen` (with the breaker's remaining open time as
//! retry-after), `Overloaded`, a timeout, or the last error after retrying stopped. An
//! alternate provider gets its own stack (its own breaker), passed to
//! [`FallbackLayer::service`]. Put the cache outside the primary's stack too, so it stores
//! only answers that made it through.
//!
//! # Observability
//!
//! A use is reported as a counted [`FallbackEvent`](crate::event::FallbackEvent) on the bus
//! given to [`events`](FallbackLayerBuilder::events): the first at once, then at most one per
//! layer and second with the number of uses since the previous one (reported at the next use).
//! Every [`FallbackLayer`] is a [`StatusProvider`](crate::status::StatusProvider): uses,
//! declines and failures per layer and strategy, plus the queue's waiting count and the
//! cache's key count, in the status JSON and Prometheus text.
//! [`mark`](FallbackLayerBuilder::mark) tells callers an answer came from a fallback
//! ([`http::FallbackHeader`]: `x-fallback: cache`).

// Links to the `http` feature's items dangle without it; docs.rs builds with every feature.
#![cfg_attr(not(feature = "http"), allow(rustdoc::broken_intra_doc_links))]

pub mod future;
#[cfg(feature = "http")]
pub mod http;
mod layer;
mod service;
mod shared;
pub mod strategy;
mod trigger;

pub use layer::{FallbackLayer, FallbackLayerBuilder, FallbackStats};
pub use service::Fallback;
pub use strategy::{
    CacheFallback, QueueFallback, ServiceFallback, Strategy, StrategyInfo, ValueFallback,
};
pub use trigger::{
    AnyError, FailedResponse, FallbackFailed, FallbackUsed, Mark, Trigger, is_circuit_open,
    is_overloaded, is_rejection, is_retry_exhausted, is_timeout, retry_after,
};
