//! The admission decision: shared state created once when the layer is built.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::event::{Event, QuotaEvent, QuotaEventKind};
use crate::pressure::PressureLevel;

use super::config::{Config, EnforcementAction, GroupRt, Limit};
use super::error::{QuotaExceeded, QuotaResource};
use super::gcra::Gcra;
use super::store::Store;
use super::tenant::{Registry, Tenant};

/// Aggregated soft/hard events are emitted at most this often per tenant.
const EVENT_INTERVAL_NS: u64 = 1_000_000_000;

/// How far a request went past its limits; inserted as a request extension when it crossed
/// at least the soft limit of some resource, so handlers can degrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaStatus {
    /// The resource that went furthest.
    pub resource: QuotaResource,
    /// How far.
    pub state: QuotaState,
}

/// How far a request went past a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum QuotaState {
    /// Above the soft limit.
    SoftLimitExceeded,
    /// Above the hard limit, within the burst limit and window.
    Burst,
    /// Above the hard (or burst) limit, admitted because the action is `Warn` or `Degrade`.
    HardLimitExceeded,
}

/// The shared state of one `QuotaLayer`.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration as built: its groups and assignments are those of the first
    /// rules only; the rules in force are in `rules` (see `settings.rs`).
    pub(crate) cfg: Config,
    pub(crate) rules: super::settings::LiveRules,
    pub(crate) registry: Registry,
    pub(crate) overflow: Arc<Tenant>,
    pub(crate) epoch: Instant,
    pub(crate) store: Store,
}

/// Why a request was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Over a quota.
    Quota(QuotaExceeded),
    /// The fleet store is unreachable and the fallback mode is fail-closed.
    #[cfg(feature = "redis")]
    Store(super::store::StoreError),
}

impl From<QuotaExceeded> for Refused {
    fn from(e: QuotaExceeded) -> Self {
        Self::Quota(e)
    }
}

impl From<Refused> for tower::BoxError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Quota(e) => e.into(),
            #[cfg(feature = "redis")]
            Refused::Store(e) => e.into(),
        }
    }
}

/// An admitted request.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) permit: Permit,
    pub(crate) delay: Duration,
    pub(crate) status: Option<QuotaStatus>,
    pub(crate) degrade: Option<PressureLevel>,
    pub(crate) units: bool,
}

/// One request in flight for its tenant; released on drop.
#[derive(Debug)]
pub(crate) struct Permit(pub(crate) Arc<Tenant>);

impl Drop for Permit {
    fn drop(&mut self) {
        // Release pairs with the registry's Acquire load when deciding a tenant is idle.
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) tenant: &'a Arc<Tenant>,
    pub(crate) group: &'a GroupRt,
    pub(crate) key: &'a str,
    pub(crate) now: u64,
    pub(crate) status: Option<QuotaStatus>,
    pub(crate) degrade: Option<PressureLevel>,
}

impl Ctx<'_> {
    fn mark(&mut self, resource: QuotaResource, state: QuotaState) {
        if self.status.is_none_or(|s| s.state < state) {
            self.status = Some(QuotaStatus { resource, state });
        }
    }

    fn event(&self, hard: bool, resource: QuotaResource) {
        let t = self.tenant;
        let (pending, emitted) = if hard {
            (&t.hard_pending, &t.hard_emitted)
        } else {
            (&t.soft_pending, &t.soft_emitted)
        };
        pending.fetch_add(1, Ordering::Relaxed);
        let last = emitted.load(Ordering::Relaxed);
        if (last == 0 || self.now.saturating_sub(last - 1) >= EVENT_INTERVAL_NS)
            && emitted
                .compare_exchange(last, self.now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // Only the CAS winner reports; the counter is swapped so counts are never doubled.
            let count = pending.swap(0, Ordering::Relaxed);
            let kind = if hard {
                QuotaEventKind::HardLimitExceeded {
                    resource: resource.as_str(),
                    count,
                }
            } else {
                QuotaEventKind::SoftLimitExceeded {
                    resource: resource.as_str(),
                    count,
                }
            };
            self.emit(kind);
        }
    }

    pub(crate) fn emit(&self, kind: QuotaEventKind) {
        self.shared.cfg.events.emit(Event::Quota(QuotaEvent {
            tenant: Arc::from(self.key),
            group: self.group.cfg.name.clone(),
            kind,
            at: self.shared.epoch + Duration::from_nanos(self.now),
        }));
    }

    /// Level-based classification below the limit; tracks the burst window.
    pub(crate) fn classify(&mut self, resource: QuotaResource, soft: bool, burst: bool) {
        if burst {
            self.mark(resource, QuotaState::Burst);
            // Start of a burst: the first burst admission wins the CAS.
            let _ = self.tenant.burst_since.compare_exchange(
                0,
                self.now + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        if soft {
            self.mark(resource, QuotaState::SoftLimitExceeded);
            self.event(false, resource);
            self.tenant
                .bucket(self.now)
                .soft
                .fetch_add(1, Ordering::Relaxed);
        } else if self.tenant.burst_since.load(Ordering::Relaxed) != 0 {
            // Back under the soft limit: the next burst gets a fresh window.
            self.tenant.burst_since.store(0, Ordering::Relaxed);
        }
    }

    /// Over the applicable limit: apply the action.
    pub(crate) fn over(
        &mut self,
        resource: QuotaResource,
        limit: Limit,
        cap: u64,
        retry: Duration,
    ) -> Result<(), QuotaExceeded> {
        self.tenant
            .bucket(self.now)
            .hard
            .fetch_add(1, Ordering::Relaxed);
        self.event(true, resource);
        let err =
            |suspended| QuotaExceeded::new(Arc::from(self.key), resource, cap, retry, suspended);
        match limit.action {
            EnforcementAction::Warn => {
                self.mark(resource, QuotaState::HardLimitExceeded);
                Ok(())
            }
            EnforcementAction::Degrade(level) => {
                self.mark(resource, QuotaState::HardLimitExceeded);
                self.degrade = Some(self.degrade.map_or(level, |l| l.max(level)));
                Ok(())
            }
            EnforcementAction::Throttle { .. } | EnforcementAction::Reject => Err(err(false)),
            EnforcementAction::Suspend { duration } => {
                let until = self
                    .now
                    .saturating_add(duration.as_nanos().min(u64::MAX as u128) as u64);
                self.tenant
                    .suspended_until
                    .store(until + 1, Ordering::Release);
                self.emit(QuotaEventKind::Suspended { duration });
                Err(QuotaExceeded::new(
                    Arc::from(self.key),
                    resource,
                    cap,
                    duration,
                    true,
                ))
            }
        }
    }

    /// A GCRA-limited resource; returns the delay to apply.
    fn bucket(
        &mut self,
        (resource, limit, g, cell): (QuotaResource, Limit, &Gcra, &AtomicU64),
        cost: u64,
        burst_ok: bool,
        allow_delay: u64,
    ) -> Result<u64, QuotaExceeded> {
        let (tol, cap) = if burst_ok {
            (g.burst_tol, limit.burst)
        } else {
            (g.hard_tol, limit.hard)
        };
        let res = if cost == 0 {
            let level = g.level(cell, self.now);
            // Saturating: `max_delay` may be as long as `Duration::MAX`.
            if level > tol.saturating_add(allow_delay) {
                Err(level - tol - allow_delay)
            } else {
                Ok(level)
            }
        } else {
            g.acquire(cell, self.now, cost, tol.saturating_add(allow_delay))
        };
        match res {
            Ok(level) => {
                self.classify(resource, level > g.soft_tol, level > g.hard_tol);
                Ok(level.saturating_sub(tol))
            }
            Err(excess) => {
                let retry = Duration::from_nanos(excess.saturating_add(allow_delay));
                self.over(resource, limit, cap, retry).map(|()| 0)
            }
        }
    }
}

impl Shared {
    /// The shared state; a Redis store is created here but started (its background task
    /// spawned) by the layer's `build`, once the state is behind its `Arc`.
    pub(crate) fn new(cfg: Config) -> Result<Self, crate::error::ConfigError> {
        let overflow = Arc::new(Tenant::new(Arc::from("overflow"), cfg.default_group));
        let store = match &cfg.store {
            super::store::QuotaStore::InProcess => Store::Local,
            #[cfg(feature = "redis")]
            super::store::QuotaStore::Redis(r) => {
                Store::Fleet(Arc::new(super::store::Fleet::new(&cfg, r.clone())?))
            }
        };
        Ok(Self {
            rules: super::settings::LiveRules::new(super::settings::Rules::of(&cfg)),
            registry: Registry::new(cfg.max_tenants, cfg.idle_timeout),
            overflow,
            epoch: Instant::now(),
            store,
            cfg,
        })
    }

    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch)
            .as_nanos()
            .min(u64::MAX as u128 / 2) as u64
    }

    /// The tenant's group in the rules in force.
    pub(crate) fn group_of(&self, t: &Tenant) -> super::settings::GroupRef {
        let gi = t.group.load(Ordering::Relaxed);
        // Indices are kept by every update of the rules (groups are never removed).
        super::settings::GroupRef::new(self.rules.load(), gi)
    }

    pub(crate) fn tenant(&self, key: &str, now: u64) -> &Arc<Tenant> {
        self.registry
            .get(key, now, |k| self.rules.load().index_of(k))
            .unwrap_or(&self.overflow)
    }

    /// Decides one request of tenant `key` at `at`, with an optional deadline.
    pub(crate) fn admit(
        &self,
        key: &str,
        at: Instant,
        deadline: Option<Instant>,
    ) -> Result<Admitted, Refused> {
        let now = self.nanos(at);
        let tenant = self.tenant(key, now);
        // One snapshot of the rules for the whole decision.
        let rules = self.rules.load();
        super::settings::place(tenant, &rules);
        let group = super::settings::GroupRef::new(rules, tenant.group.load(Ordering::Relaxed));
        tenant.requests.fetch_add(1, Ordering::Relaxed);
        tenant.bucket(now).requests.fetch_add(1, Ordering::Relaxed);
        let mut cx = Ctx {
            shared: self,
            tenant,
            group: &group,
            key,
            now,
            status: None,
            degrade: None,
        };
        let deadline = deadline.map(|d| self.nanos(d));
        let r = match &self.store {
            Store::Local => self.decide(&mut cx, deadline).map_err(Refused::from),
            #[cfg(feature = "redis")]
            Store::Fleet(f) => f.decide(&mut cx, deadline),
        };
        if r.is_err() {
            tenant.rejected.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Checks, in order: suspension, units debt, rate (charged on admission), concurrency
    /// (reserved last). A request refused by a later check keeps the rate cell it was
    /// charged: the tenant did send it.
    pub(crate) fn decide(
        &self,
        cx: &mut Ctx<'_>,
        deadline: Option<u64>,
    ) -> Result<Admitted, QuotaExceeded> {
        let (t, g, now) = (cx.tenant, cx.group, cx.now);
        let burst_ok = Self::suspension_and_burst(cx)?;
        let delay_budget = |l: &Limit| match l.action {
            EnforcementAction::Throttle { max_delay } => {
                let d = max_delay.as_nanos().min(u64::MAX as u128) as u64;
                match deadline {
                    Some(dl) => d.min(dl.saturating_sub(now)),
                    None => d,
                }
            }
            _ => 0,
        };
        let mut delay = 0;
        if let (Some(l), Some(gc)) = (g.cfg.units, g.units.as_ref()) {
            delay = delay.max(cx.bucket(
                (QuotaResource::Units, l, gc, &t.units_tat),
                0,
                burst_ok,
                delay_budget(&l),
            )?);
        }
        if let (Some(l), Some(gc)) = (g.cfg.rate, g.rate.as_ref()) {
            delay = delay.max(cx.bucket(
                (QuotaResource::Rate, l, gc, &t.rate_tat),
                1,
                burst_ok,
                delay_budget(&l),
            )?);
        }
        Self::finish(cx, burst_ok, Duration::from_nanos(delay))
    }

    /// The concurrency check of the in-process store (reserved last) and the admission.
    fn finish(
        cx: &mut Ctx<'_>,
        burst_ok: bool,
        delay: Duration,
    ) -> Result<Admitted, QuotaExceeded> {
        let (t, g) = (cx.tenant, cx.group);
        // Every request holds an in-flight permit (the registry never evicts a busy
        // tenant). Relaxed is enough for the count itself: the reservation is the atomic
        // increment, and a request over the limit gives its increment back (so concurrent
        // callers may be refused spuriously at the edge, never over-admitted).
        let n = t.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let permit = Permit(t.clone());
        if let Some(l) = g.cfg.concurrency {
            let n = u64::from(n);
            let cap = if burst_ok { l.burst } else { l.hard };
            if n > cap {
                let retry = cx.shared.cfg.concurrency_retry_after;
                cx.over(QuotaResource::Concurrency, l, cap, retry)?;
            } else {
                cx.classify(QuotaResource::Concurrency, n > l.soft, n > l.hard);
            }
        }
        Ok(Admitted {
            permit,
            delay,
            status: cx.status,
            degrade: cx.degrade,
            units: g.cfg.units.is_some(),
        })
    }

    /// Checks the tenant's suspension (ending it when due) and says whether the tenant may
    /// still use its burst limit.
    pub(crate) fn suspension_and_burst(cx: &mut Ctx<'_>) -> Result<bool, QuotaExceeded> {
        let (t, g, now) = (cx.tenant, cx.group, cx.now);
        // Suspension: value is (end + 1), 0 when not suspended. Acquire pairs with the
        // Release store in `over`.
        let su = t.suspended_until.load(Ordering::Acquire);
        if su != 0 {
            if now < su - 1 {
                return Err(QuotaExceeded::new(
                    Arc::from(cx.key),
                    QuotaResource::Rate,
                    0,
                    Duration::from_nanos(su - 1 - now),
                    true,
                ));
            }
            if t.suspended_until
                .compare_exchange(su, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                cx.emit(QuotaEventKind::Resumed);
            }
        }
        let bs = t.burst_since.load(Ordering::Relaxed);
        Ok(bs == 0 || now.saturating_sub(bs - 1) < g.burst_window_ns)
    }

    /// Charges `units` custom units to `tenant`.
    pub(crate) fn charge(&self, tenant: &Tenant, units: u64, at: Instant) {
        let now = self.nanos(at);
        tenant.units.fetch_add(units, Ordering::Relaxed);
        tenant.bucket(now).units.fetch_add(units, Ordering::Relaxed);
        match &self.store {
            Store::Local => {
                if let Some(g) = self.group_of(tenant).units.as_ref() {
                    g.charge(&tenant.units_tat, now, units);
                }
            }
            #[cfg(feature = "redis")]
            Store::Fleet(f) => f.charge(self, tenant, units, now),
        }
    }
}
