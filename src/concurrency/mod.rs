//! Adaptive concurrency: a learned concurrency limit, priority classes, pressure scaling and
//! load shedding.
//!
//! [`AdaptiveConcurrencyLayer`] keeps a service at full goodput when it is offered far more
//! load than it can take. Instead of queueing until latency explodes, it learns how many
//! requests the service can run at once from their latency, and refuses the rest at once
//! with [`Overloaded`] (`503` + `Retry-After` with the `http` feature).
//!
//! # How a request is admitted
//!
//! 1. A [`PriorityClassifier`](crate::priority::PriorityClassifier) assigns its class
//!    (`Critical`, `High`, `Normal`, `Low`): a header, an extension, a route, a closure.
//! 2. The pressure check (one atomic load of the shared monitor's level): under pressure the
//!    lower classes are refused first ([`PressurePolicy`]: `Low` at `High`, all but `High`
//!    and `Critical` at `Critical`, all but `Critical` at `Emergency`) and the learned
//!    limit is scaled (1.0, 0.9, 0.75, 0.5, 0.25). CPU pressure applies only when our own
//!    in-flight work exceeds max throughput x min latency (Sentinel's BBR check); otherwise
//!    the pressure comes from elsewhere, and [`PressureDecision::NotOurLoad`] says so.
//! 3. One compare-exchange on a packed 64-bit word of per-class in-flight counts reserves a
//!    slot if the total is under the limit, or if the class still has a free guaranteed
//!    [`Shares`] (Netflix's partitioned limiter). Never check-then-admit.
//! 4. A refused `Critical` request may wait in a short LIFO queue (opt-in,
//!    [`critical_queue`](AdaptiveConcurrencyBuilder::critical_queue)).
//!
//! `poll_ready` only reports the inner service's readiness; everything is decided in `call`.
//! The slot is a guard in the response future: dropping the future at any point returns it.
//!
//! # How the limit is learned
//!
//! When the response future completes, its latency goes into the current sample window (a
//! few atomics, see `window.rs`); the request that closes a window runs the [`limit`]
//! algorithm once with the window's aggregate. [`Gradient2`](limit::Gradient2) is the
//! default; [`Vegas`](limit::Vegas), [`Aimd`](limit::Aimd) or your own
//! [`LimitAlgorithm`](limit::LimitAlgorithm) can replace it. Inner-service errors count as
//! drops (congestion signals) unless [`errors_as_drops(false)`](AdaptiveConcurrencyBuilder::errors_as_drops).
//!
//! Latency is measured to the end of the response future, because that is what every tower
//! service has. For HTTP services whose work continues while the body streams (LLM token
//! streams), [`hold_until_body_end`](AdaptiveConcurrencyLayer::hold_until_body_end) keeps the
//! slot and the clock running until the body's last frame.
//!
//! # Observability
//!
//! [`AdaptiveConcurrencyHandle`] exposes the limit, in-flight per class, shed counts and the
//! limit history. Events (`ConcurrencyEvent`) go to the monitor's bus: `LimitChanged` at
//! most once per event interval, `Shed` counts aggregated per class and interval.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::concurrency::{AdaptiveConcurrencyLayer, Shares, limit::Gradient2};
//! use tower_pressure::priority::HeaderPriority;
//! use tower_pressure::{Priority, pressure::PressureMonitor};
//!
//! let (monitor, _manual) = PressureMonitor::manual();
//! let layer = AdaptiveConcurrencyLayer::builder(monitor)
//!     .algorithm(Gradient2::builder().max_limit(500).build()?)
//!     .classifier(HeaderPriority::new(http::HeaderName::from_static("x-priority")))
//!     .shares(Shares::none().with(Priority::Critical, 0.2)?)
//!     .build()?;
//! let handle = layer.handle();
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(()))
//! }));
//! svc.oneshot(http::Request::new(())).await?;
//! assert_eq!(handle.in_flight(), 0);
//! # Ok(()) }
//! ```

#[cfg(feature = "http")]
mod body;
mod error;
pub mod future;
mod layer;
pub mod limit;
mod mode;
mod partition;
mod policy;
mod service;
mod state;
mod status;
mod window;

#[cfg(feature = "http")]
pub use body::{PermitBody, overloaded_response, retry_after_value};
pub use error::Overloaded;
pub use layer::{AdaptiveConcurrencyBuilder, AdaptiveConcurrencyLayer};
#[cfg(feature = "http")]
pub use mode::BodyEnd;
pub use mode::ResponseEnd;
pub use partition::{MAX_LIMIT, Shares};
pub use policy::{PressureDecision, PressurePolicy, ShedReason};
pub use service::AdaptiveConcurrency;
pub use state::{AdaptiveConcurrencyHandle, LimitPoint, Permit};
pub use window::WindowConfig;
