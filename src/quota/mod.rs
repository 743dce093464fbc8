//! Per-tenant quotas (the seed's per-agent quota system) for any tower service.
//!
//! A [`TenantKey`] gives each request its tenant ([`HeaderKey`], [`ExtensionKey`] or a
//! closure; requests without one use the default tenant). Each tenant belongs to a
//! [`QuotaGroup`] whose [`Limit`]s bound its request **rate** (GCRA, one `AtomicU64` per
//! tenant), its **concurrency** (atomic counter, permit released on drop) and custom
//! **units** reported after the fact through [`QuotaUsage`] (e.g. LLM tokens).
//!
//! Each limit has a soft limit (an aggregated event, and a [`QuotaStatus`] extension so the
//! handler can degrade), a hard limit (the [`EnforcementAction`] applies) and a burst limit
//! (requests may exceed hard up to burst for the group's burst window).
//!
//! Usage history (per-minute atomics over the last hour) feeds [`QuotaHandle::report`] and
//! [`QuotaHandle::recommendations`]. Rejections are [`QuotaExceeded`] (HTTP 429).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::quota::{EnforcementAction, HeaderKey, Limit, QuotaGroup, QuotaLayer};
//!
//! let layer = QuotaLayer::builder()
//!     .group(QuotaGroup::new("free").rate(Limit::tiers(5, 10, 15).action(EnforcementAction::Reject)))
//!     .group(QuotaGroup::new("premium").rate(Limit::tiers(50, 100, 150)))
//!     .assign("acme", "premium")
//!     .build(HeaderKey::x_tenant())?;
//! let svc = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(|_req: http::Request<()>| async { Ok::<_, std::convert::Infallible>("ok") }));
//! let req = http::Request::builder().header("x-tenant", "acme").body(())?;
//! assert_eq!(svc.oneshot(req).await?, "ok");
//! assert_eq!(layer.handle().usage("acme").unwrap().group, "premium");
//! # Ok(()) }
//! ```

mod config;
mod error;
pub mod future;
mod gcra;
mod handle;
mod key;
mod layer;
mod service;
mod settings;
mod state;
pub mod store;
mod tenant;
mod usage;

pub use config::{EnforcementAction, Limit, QuotaGroup, QuotaLayerBuilder};
pub use error::{QuotaExceeded, QuotaResource};
pub use handle::{QuotaHandle, Recommendation, RecommendationKind, TenantUsage};
pub use key::{ExtensionKey, HeaderKey, TenantId, TenantKey};
pub use layer::QuotaLayer;
pub use service::Quota;
pub use settings::QuotaUpdate;
pub use state::{QuotaState, QuotaStatus};
#[cfg(feature = "redis")]
pub use store::{FallbackMode, RedisStore, StoreError, StoreErrorKind};
pub use store::{QuotaStore, StoreStatus};
pub use usage::QuotaUsage;
