//! Where a [`QuotaLayer`](super::QuotaLayer) keeps its buckets: in this process (the
//! default, [`QuotaStore::InProcess`]) or, with the `redis` feature, in Redis for a whole
//! fleet of replicas ([`RedisStore`]).
//!
//! The in-process store is the layer as it always was: one `AtomicU64` GCRA cell per tenant
//! and resource, an atomic in-flight counter; nothing here adds work to its request path
//! (the store is an enum matched once per request).
//!
//! The Redis store keeps the **fleet's** buckets in Redis and gives each replica *leases*
//! of admissions that it spends with atomics: see [`RedisStore`] for the algorithm, its
//! error bound and what happens when Redis is down.

#[cfg(feature = "redis")]
mod fleet;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub(crate) use self::fleet::{Fleet, FleetCell};
#[cfg(feature = "redis")]
pub use self::redis::{FallbackMode, RedisStore, StoreError, StoreErrorKind};

use std::fmt;

/// Where a quota layer keeps its state; set with
/// [`QuotaLayerBuilder::store`](super::QuotaLayerBuilder::store).
///
/// ```
/// use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer, QuotaStore};
///
/// let layer = QuotaLayer::builder()
///     .group(QuotaGroup::new("free").rate(Limit::new(10)))
///     .store(QuotaStore::InProcess)
///     .build(HeaderKey::x_tenant())?;
/// assert_eq!(layer.handle().store_status().kind, "in-process");
/// # Ok::<(), tower_pressure::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
// Configuration, moved once into the builder: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum QuotaStore {
    /// Buckets in this process only (the default): each replica enforces the whole quota on
    /// its own.
    #[default]
    InProcess,
    /// Fleet-wide buckets in Redis, spent locally through leases (feature `redis`).
    #[cfg(feature = "redis")]
    Redis(RedisStore),
}

#[cfg(feature = "redis")]
impl From<RedisStore> for QuotaStore {
    fn from(s: RedisStore) -> Self {
        Self::Redis(s)
    }
}

/// The state of a quota layer's store, part of [`QuotaHandle`](super::QuotaHandle)'s status.
///
/// ```
/// use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer};
///
/// let layer = QuotaLayer::builder()
///     .group(QuotaGroup::new("free").rate(Limit::new(10)))
///     .build(HeaderKey::x_tenant())?;
/// let s = layer.handle().store_status();
/// assert_eq!((s.kind, s.degraded), ("in-process", false));
/// # Ok::<(), tower_pressure::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStatus {
    /// `"in-process"` or `"redis"`.
    pub kind: &'static str,
    /// Whether the store is unreachable and the layer runs on its fallback mode.
    pub degraded: bool,
    /// The fallback mode in use while degraded (`"local-share"`, `"fail-open"`,
    /// `"fail-closed"`), `None` for the in-process store.
    pub fallback: Option<&'static str>,
    /// Round trips made to the store since the layer was built.
    pub round_trips: u64,
    /// Failed round trips (timeouts, connection errors, bad replies).
    pub errors: u64,
    /// Times the store went degraded.
    pub degradations: u64,
    /// Admissions currently leased to this replica and not yet spent (rate and units cells,
    /// concurrency slots).
    pub leased: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

impl StoreStatus {
    pub(crate) fn in_process() -> Self {
        Self {
            kind: "in-process",
            degraded: false,
            fallback: None,
            round_trips: 0,
            errors: 0,
            degradations: 0,
            leased: 0,
            last_error: None,
        }
    }
}

impl fmt::Display for StoreStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind)?;
        if self.degraded {
            write!(f, " (degraded: {})", self.fallback.unwrap_or("fallback"))?;
        }
        Ok(())
    }
}

/// The store a built layer uses.
#[derive(Debug)]
pub(crate) enum Store {
    /// In this process.
    Local,
    /// In Redis, through leases.
    #[cfg(feature = "redis")]
    Fleet(std::sync::Arc<Fleet>),
}
