//! The error returned when a tenant is over its quota. Core, so other layers can recognise
//! a quota rejection; re-exported by [`quota`](crate::quota).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A resource a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QuotaResource {
    /// Requests per period.
    Rate,
    /// Requests in flight.
    Concurrency,
    /// Custom units per period, reported by handlers.
    Units,
}

impl QuotaResource {
    /// `"rate"`, `"concurrency"` or `"units"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::Concurrency => "concurrency",
            Self::Units => "units",
        }
    }
}

impl fmt::Display for QuotaResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant is over its quota (or suspended); the inner service was not called.
///
/// Composed as [`tower::BoxError`]: test with `err.is::<QuotaExceeded>()`. Maps to
/// `429 Too Many Requests` with `Retry-After` ([`status_code`](Self::status_code)).
#[derive(Debug, Clone)]
pub struct QuotaExceeded {
    tenant: Arc<str>,
    resource: QuotaResource,
    limit: u64,
    retry_after: Duration,
    suspended: bool,
}

impl QuotaExceeded {
    pub(crate) fn new(
        tenant: Arc<str>,
        resource: QuotaResource,
        limit: u64,
        retry_after: Duration,
        suspended: bool,
    ) -> Self {
        Self {
            tenant,
            resource,
            limit,
            retry_after,
            suspended,
        }
    }
    /// The tenant refused.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
    /// The resource whose limit was exceeded.
    pub fn resource(&self) -> QuotaResource {
        self.resource
    }
    /// The limit that applied (hard, or burst while bursting).
    pub fn limit(&self) -> u64 {
        self.limit
    }
    /// How long until the tenant's next request could be admitted.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
    /// Whether the tenant is suspended.
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }
    /// The HTTP status for this error: `429 Too Many Requests`.
    pub fn status_code(&self) -> http::StatusCode {
        http::StatusCode::TOO_MANY_REQUESTS
    }
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suspended {
            write!(f, "tenant `{}` is suspended", self.tenant)?;
        } else {
            write!(
                f,
                "tenant `{}` exceeded its {} quota of {}",
                self.tenant, self.resource, self.limit
            )?;
        }
        write!(f, ", retry after {} ms", self.retry_after.as_millis())
    }
}

impl std::error::Error for QuotaExceeded {}
