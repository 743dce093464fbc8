//! Graceful degradation: every request learns what it may spend right now.
//!
//! [`DegradationLayer`] reads the shared monitor's level (one atomic load) and inserts one
//! [`Constraints`](crate::Constraints) value into the request's extensions, derived from a
//! [`DegradationPolicy`]: a table from level to constraints with seed 000's defaults, fully
//! overridable, plus opt-in typed extensions per level (say `MaxTokens(512)` at `Critical`).
//!
//! With the `http` feature, [`DegradationLayer::degraded_header`] adds
//! `x-degraded: level=high; cause=psi_cpu` to responses served while degraded, so clients and
//! logs can see why a response was reduced.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::{Constraints, PressureLevel, degradation::DegradationLayer, pressure::PressureMonitor};
//!
//! let (monitor, manual) = PressureMonitor::manual();
//! let svc = ServiceBuilder::new()
//!     .layer(DegradationLayer::new(monitor.clone()))
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         let c = Constraints::from_request(&req).unwrap_or_default();
//!         Ok::<_, std::convert::Infallible>(c.entity_limit(100))
//!     }));
//! manual.set(90.0); // Critical
//! monitor.sample_now();
//! assert_eq!(svc.oneshot(http::Request::new(())).await?, 50);
//! # Ok(()) }
//! ```

mod layer;
mod policy;
mod service;
mod shared;
mod status;

pub use layer::DegradationLayer;
pub use policy::DegradationPolicy;
pub use service::{Degradation, NoHeader};
#[cfg(feature = "http")]
pub use service::{DegradedHeader, HeaderFuture};
