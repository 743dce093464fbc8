//! [`QuotaHandle`]: usage analytics, reports and recommendations, off the request path.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::section::{StatusProvider, StatusSection};

use super::state::Shared;
use super::store::{Store, StoreStatus};
use super::tenant::{MINUTES, Tenant};

/// One tenant's usage over the last hour (per-minute buckets).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantUsage {
    /// The tenant.
    pub tenant: String,
    /// Its group.
    pub group: String,
    /// Requests per minute, oldest first, for the minutes seen in the last hour.
    pub per_minute: Vec<u64>,
    /// Highest requests in one minute.
    pub peak_per_minute: u64,
    /// Mean requests per minute over the minutes seen.
    pub average_per_minute: f64,
    /// Percentage of the minutes seen with at least one request above a soft limit.
    pub soft_minutes_pct: f64,
    /// Minutes with at least one request above a hard limit.
    pub hard_minutes: u64,
    /// Minutes seen (at most 60).
    pub minutes: u64,
    /// Totals since the tenant was first seen.
    pub requests_total: u64,
    /// Requests rejected since the tenant was first seen.
    pub rejected_total: u64,
    /// Custom units reported since the tenant was first seen.
    pub units_total: u64,
    /// Requests in flight.
    pub in_flight: u32,
    /// Whether the tenant is suspended.
    pub suspended: bool,
}

/// An explained suggestion, like the seed's optimisation recommendations.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The tenant.
    pub tenant: String,
    /// What to do.
    pub kind: RecommendationKind,
    /// Why, in words.
    pub message: String,
}

/// What a recommendation suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecommendationKind {
    /// Raise the quota (or move the tenant to a larger group).
    IncreaseQuota,
    /// Lower the quota.
    DecreaseQuota,
}

/// A handle on a [`QuotaLayer`](super::QuotaLayer)'s shared state.
#[derive(Debug, Clone)]
pub struct QuotaHandle {
    pub(crate) shared: Arc<Shared>,
}

impl QuotaHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn usage_of(&self, t: &Tenant, now: u64) -> TenantUsage {
        let cur = now / 60_000_000_000 + 1;
        let mut rows: Vec<(u64, u64, u64, u64)> = t
            .history
            .iter()
            .map(|b| {
                (
                    b.minute.load(Ordering::Acquire),
                    b.requests.load(Ordering::Relaxed),
                    b.soft.load(Ordering::Relaxed),
                    b.hard.load(Ordering::Relaxed),
                )
            })
            .filter(|r| r.0 != 0 && r.0 <= cur && cur - r.0 < MINUTES as u64)
            .collect();
        rows.sort_by_key(|r| r.0);
        let minutes = rows.len() as u64;
        let total: u64 = rows.iter().map(|r| r.1).sum();
        TenantUsage {
            tenant: t.name().to_string(),
            group: self.shared.group_of(t).cfg.name.to_string(),
            per_minute: rows.iter().map(|r| r.1).collect(),
            peak_per_minute: rows.iter().map(|r| r.1).max().unwrap_or(0),
            average_per_minute: if minutes == 0 {
                0.0
            } else {
                total as f64 / minutes as f64
            },
            soft_minutes_pct: if minutes == 0 {
                0.0
            } else {
                100.0 * rows.iter().filter(|r| r.2 > 0).count() as f64 / minutes as f64
            },
            hard_minutes: rows.iter().filter(|r| r.3 > 0).count() as u64,
            minutes,
            requests_total: t.requests.load(Ordering::Relaxed),
            rejected_total: t.rejected.load(Ordering::Relaxed),
            units_total: t.units.load(Ordering::Relaxed),
            in_flight: t.in_flight.load(Ordering::Relaxed),
            suspended: t.suspended_until.load(Ordering::Acquire) > now + 1,
        }
    }

    fn now(&self) -> u64 {
        self.shared.nanos(tokio::time::Instant::now())
    }

    /// The usage of `tenant`, if tracked.
    pub fn usage(&self, tenant: &str) -> Option<TenantUsage> {
        let now = self.now();
        self.shared
            .registry
            .find(tenant)
            .map(|t| self.usage_of(t, now))
    }

    /// The usage of every tracked tenant, sorted by tenant.
    pub fn report(&self) -> Vec<TenantUsage> {
        let now = self.now();
        let mut v: Vec<_> = self
            .shared
            .registry
            .all()
            .map(|t| self.usage_of(t, now))
            .collect();
        v.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        v
    }

    /// The state of the layer's store: in-process, or Redis (degraded or not, round trips,
    /// errors, admissions leased to this replica).
    ///
    /// ```
    /// use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer};
    ///
    /// let layer = QuotaLayer::builder()
    ///     .group(QuotaGroup::new("free").rate(Limit::new(10)))
    ///     .build(HeaderKey::x_tenant())?;
    /// assert!(!layer.handle().store_status().degraded);
    /// # Ok::<(), tower_pressure::ConfigError>(())
    /// ```
    pub fn store_status(&self) -> StoreStatus {
        match &self.shared.store {
            Store::Local => StoreStatus::in_process(),
            #[cfg(feature = "redis")]
            Store::Fleet(f) => f.status(&self.shared),
        }
    }

    /// The last error of the Redis store, typed (`None` for the in-process store or while no
    /// error happened).
    ///
    /// ```
    /// use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer};
    ///
    /// let layer = QuotaLayer::builder()
    ///     .group(QuotaGroup::new("free").rate(Limit::new(10)))
    ///     .build(HeaderKey::x_tenant())?;
    /// assert!(layer.handle().store_error().is_none());
    /// # Ok::<(), tower_pressure::ConfigError>(())
    /// ```
    #[cfg(feature = "redis")]
    pub fn store_error(&self) -> Option<super::store::StoreError> {
        match &self.shared.store {
            Store::Local => None,
            Store::Fleet(f) => f.last_error(),
        }
    }

    /// Tenants tracked.
    pub fn tenants(&self) -> usize {
        self.shared.registry.len()
    }

    /// Simple, explained suggestions from the last hour: a tenant that hit its hard limit in
    /// at least 10 % of its minutes should get 50 % more (or a larger group); a tenant whose
    /// peak minute stayed under 10 % of its rate quota could have it lowered.
    pub fn recommendations(&self) -> Vec<Recommendation> {
        let rules = self.shared.rules.load();
        let groups = &rules.groups;
        let mut out = Vec::new();
        for u in self.report() {
            let Some(g) = groups.iter().find(|g| *g.cfg.name == *u.group) else {
                continue;
            };
            let Some(rate) = g.cfg.rate else { continue };
            let per_sec = g.cfg.period.as_secs_f64().max(1e-9);
            let hard = rate.hard;
            if u.minutes > 0 && u.hard_minutes * 10 >= u.minutes && u.hard_minutes > 0 {
                let bigger = groups
                    .iter()
                    .filter(|o| o.cfg.rate.is_some_and(|r| r.hard > hard))
                    .min_by_key(|o| o.cfg.rate.map(|r| r.hard))
                    .map(|o| format!(" or move it to group {}", o.cfg.name))
                    .unwrap_or_default();
                out.push(Recommendation {
                    tenant: u.tenant.clone(),
                    kind: RecommendationKind::IncreaseQuota,
                    message: format!(
                        "tenant {} hit its hard limit in {} of the last {} minutes: raise rps from {} to {}{}",
                        u.tenant,
                        u.hard_minutes,
                        u.minutes,
                        hard,
                        hard + hard.div_ceil(2),
                        bigger
                    ),
                });
            } else if u.minutes > 0 {
                let peak_rps = u.peak_per_minute as f64 / 60.0 * per_sec;
                if peak_rps < hard as f64 * 0.1 {
                    out.push(Recommendation {
                        tenant: u.tenant.clone(),
                        kind: RecommendationKind::DecreaseQuota,
                        message: format!(
                            "tenant {} used < 10 % of its quota (peak {:.2} rps of {}): lower it",
                            u.tenant, peak_rps, hard
                        ),
                    });
                }
            }
        }
        out
    }
}

impl StatusProvider for QuotaHandle {
    fn section(&self) -> StatusSection {
        let st = self.store_status();
        let mut s = StatusSection::new("quota", "quota")
            .info("store", st.kind)
            .info("store_state", if st.degraded { "degraded" } else { "ok" })
            .gauge(
                "tower_pressure_quota_tenants",
                "Tenants tracked by the quota layer.",
                &[],
                self.tenants() as f64,
            )
            .gauge(
                "tower_pressure_quota_store_degraded",
                "1 while the quota store is unreachable and the layer runs on its fallback.",
                &[("store", st.kind)],
                if st.degraded { 1.0 } else { 0.0 },
            );
        if let Some(fb) = st.fallback {
            s = s
                .info("store_fallback", fb)
                .counter(
                    "tower_pressure_quota_store_round_trips_total",
                    "Round trips to the quota store.",
                    &[("store", st.kind)],
                    st.round_trips as f64,
                )
                .counter(
                    "tower_pressure_quota_store_errors_total",
                    "Failed round trips to the quota store.",
                    &[("store", st.kind)],
                    st.errors as f64,
                )
                .gauge(
                    "tower_pressure_quota_store_leased",
                    "Admissions leased to this replica and not yet spent.",
                    &[("store", st.kind)],
                    st.leased as f64,
                );
            if let Some(e) = &st.last_error {
                s = s.info("store_last_error", e);
            }
        }
        for u in self.report() {
            let l = [("tenant", u.tenant.as_str()), ("group", u.group.as_str())];
            s = s
                .counter(
                    "tower_pressure_quota_requests_total",
                    "Requests seen per tenant.",
                    &l,
                    u.requests_total as f64,
                )
                .counter(
                    "tower_pressure_quota_rejected_total",
                    "Requests rejected per tenant.",
                    &l,
                    u.rejected_total as f64,
                )
                .counter(
                    "tower_pressure_quota_units_total",
                    "Custom units reported per tenant.",
                    &l,
                    u.units_total as f64,
                )
                .gauge(
                    "tower_pressure_quota_in_flight",
                    "Requests in flight per tenant.",
                    &l,
                    f64::from(u.in_flight),
                )
                .gauge(
                    "tower_pressure_quota_suspended",
                    "1 while the tenant is suspended.",
                    &l,
                    if u.suspended { 1.0 } else { 0.0 },
                );
        }
        s
    }
}
