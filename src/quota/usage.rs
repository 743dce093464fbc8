//! Custom units reported by handlers.

use std::sync::Arc;

use super::state::Shared;
use super::tenant::Tenant;

/// Inserted into the request's extensions when the tenant's group limits custom units:
/// the handler reports what the request consumed (e.g. LLM tokens) after the fact.
/// A tenant in debt is refused (or warned, degraded...) at its next request.
#[derive(Clone)]
pub struct QuotaUsage {
    tenant: Arc<Tenant>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for QuotaUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaUsage").finish_non_exhaustive()
    }
}

impl QuotaUsage {
    pub(crate) fn new(tenant: Arc<Tenant>, shared: Arc<Shared>) -> Self {
        Self { tenant, shared }
    }

    /// Charges `units` to the request's tenant.
    pub fn record(&self, units: u64) {
        self.shared
            .charge(&self.tenant, units, tokio::time::Instant::now());
    }
}
