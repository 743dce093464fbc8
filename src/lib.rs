//! # tower-pressure
//!
//! Resource-aware resilience for any [tower](https://docs.rs/tower) `Service`.
//!
//! One [`PressureMonitor`] per process samples CPU, memory (relative to cgroup limits), Linux
//! PSI, the tokio runtime and custom gauges, and publishes a [`PressureLevel`] that every
//! layer reads with one atomic load. The layers share it:
//!
//! * [`degradation::DegradationLayer`] inserts [`Constraints`] into every request so handlers
//!   know how much they may spend right now.
//!
//! Every layer reports to one [`event::EventBus`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::{Constraints, degradation::DegradationLayer, pressure::PressureMonitor};
//!
//! let monitor = PressureMonitor::builder().build()?; // CPU, memory, cgroup, PSI, runtime
//! let svc = ServiceBuilder::new()
//!     .layer(DegradationLayer::new(monitor.clone()))
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         let c = Constraints::from_request(&req).unwrap_or_default();
//!         Ok::<_, std::convert::Infallible>(format!("analysing {} entities", c.entity_limit(100)))
//!     }));
//! let answer = svc.oneshot(http::Request::new(())).await?;
//! assert!(answer.starts_with("analysing"));
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod alert;
pub mod builder;
pub mod circuit_breaker;
pub mod concurrency;
pub mod constraints;
pub mod degradation;
pub mod error;
pub mod event;
mod keyed;
pub mod pressure;
pub mod priority;
pub mod quota;
pub mod rejection;
pub mod retry;
pub mod stack;
pub mod status;
mod sync;

#[doc(hidden)]
pub mod __fuzz;

pub use builder::ServiceBuilderExt;
pub use constraints::Constraints;
pub use error::ConfigError;
pub use pressure::{PressureLevel, PressureMonitor};
pub use priority::Priority;
pub use stack::ResilienceStack;
