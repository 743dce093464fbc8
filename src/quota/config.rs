//! Quota groups, limits, enforcement actions and the layer's builder.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::event::EventBus;
use crate::pressure::PressureLevel;

use super::gcra::Gcra;
use super::store::QuotaStore;

/// What happens when a tenant crosses a limit's hard limit (the seed's enforcement actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnforcementAction {
    /// Let the request through and report it (aggregated `HardLimitExceeded` events). Rate
    /// requests over the limit are not charged to the bucket, so the tenant stays flagged for
    /// as long as it sends faster than its limit.
    Warn,
    /// Reject with [`QuotaExceeded`](super::QuotaExceeded) carrying the bucket's
    /// `retry_after`; when the wait is at most `max_delay` (and fits the request's deadline
    /// from [`Constraints`](crate::Constraints)), delay the request instead.
    Throttle {
        /// Longest delay instead of a rejection (`Duration::ZERO`: always reject).
        max_delay: Duration,
    },
    /// Reject with [`QuotaExceeded`](super::QuotaExceeded).
    Reject,
    /// Reject, and reject every request of the tenant for `duration`.
    Suspend {
        /// How long the tenant stays suspended.
        duration: Duration,
    },
    /// Let the request through with stricter [`Constraints`](crate::Constraints) (those of
    /// the given level, merged with any already present: the stricter value wins).
    Degrade(PressureLevel),
}

/// One limit: soft (event + [`QuotaStatus`](super::QuotaStatus)), hard (the action applies)
/// and burst (requests may exceed hard up to burst for the group's burst window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub(crate) soft: u64,
    pub(crate) hard: u64,
    pub(crate) burst: u64,
    pub(crate) action: EnforcementAction,
}

impl Limit {
    /// A limit with soft = hard = burst = `hard` and action `Reject`.
    pub const fn new(hard: u64) -> Self {
        Self {
            soft: hard,
            hard,
            burst: hard,
            action: EnforcementAction::Reject,
        }
    }

    /// Soft, hard and burst limits (validated `soft <= hard <= burst` by the builder).
    pub const fn tiers(soft: u64, hard: u64, burst: u64) -> Self {
        Self {
            soft,
            hard,
            burst,
            action: EnforcementAction::Reject,
        }
    }

    /// The action applied above the hard (or, while bursting, burst) limit.
    pub const fn action(mut self, action: EnforcementAction) -> Self {
        self.action = action;
        self
    }

    /// The soft limit.
    pub fn soft(&self) -> u64 {
        self.soft
    }
    /// The hard limit.
    pub fn hard(&self) -> u64 {
        self.hard
    }
    /// The burst limit.
    pub fn burst(&self) -> u64 {
        self.burst
    }
    /// The enforcement action.
    pub fn enforcement(&self) -> EnforcementAction {
        self.action
    }

    fn validate(&self, field: &str) -> Result<(), ConfigError> {
        if self.hard == 0 {
            return Err(ConfigError::new(
                format!("{field}.hard_limit"),
                self.hard,
                "must be > 0",
            ));
        }
        if self.soft > self.hard {
            return Err(ConfigError::new(
                format!("{field}.soft_limit"),
                self.soft,
                format!("must be <= hard_limit ({})", self.hard),
            ));
        }
        if self.burst < self.hard {
            return Err(ConfigError::new(
                format!("{field}.burst_limit"),
                self.burst,
                format!("must be >= hard_limit ({})", self.hard),
            ));
        }
        match self.action {
            EnforcementAction::Suspend { duration } if duration.is_zero() => Err(ConfigError::new(
                format!("{field}.action.duration"),
                duration,
                "must be > 0",
            )),
            _ => Ok(()),
        }
    }
}

/// A quota group (the seed's `quota_groups`): tenants of a group share its limits, each
/// tenant with its own buckets.
///
/// * `rate`: requests per `period` (default one second);
/// * `concurrency`: requests in flight;
/// * `units`: custom units (e.g. LLM tokens) per `period`, reported by the handler through
///   [`QuotaUsage`](super::QuotaUsage) after the fact; a tenant in debt is refused (or
///   warned, degraded...) at its next request.
#[derive(Debug, Clone)]
pub struct QuotaGroup {
    pub(crate) name: Arc<str>,
    pub(crate) period: Duration,
    pub(crate) burst_window: Duration,
    pub(crate) rate: Option<Limit>,
    pub(crate) concurrency: Option<Limit>,
    pub(crate) units: Option<Limit>,
}

impl QuotaGroup {
    /// An unlimited group called `name` (period 1 s, burst window 10 s).
    pub fn new(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            period: Duration::from_secs(1),
            burst_window: Duration::from_secs(10),
            rate: None,
            concurrency: None,
            units: None,
        }
    }
    /// Requests per period.
    pub fn rate(mut self, limit: Limit) -> Self {
        self.rate = Some(limit);
        self
    }
    /// Concurrent requests.
    pub fn concurrency(mut self, limit: Limit) -> Self {
        self.concurrency = Some(limit);
        self
    }
    /// Custom units per period.
    pub fn units(mut self, limit: Limit) -> Self {
        self.units = Some(limit);
        self
    }
    /// The period of `rate` and `units` (default 1 s).
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }
    /// How long a tenant may stay above its hard limit (up to burst) before hard applies
    /// again; the window restarts once the tenant drops back to its soft limit.
    pub fn burst_window(mut self, window: Duration) -> Self {
        self.burst_window = window;
        self
    }
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The rate limit, if any.
    pub fn rate_limit(&self) -> Option<Limit> {
        self.rate
    }
}

/// A validated group with its precomputed GCRA tolerances.
#[derive(Debug)]
pub(crate) struct GroupRt {
    pub(crate) cfg: QuotaGroup,
    pub(crate) rate: Option<Gcra>,
    pub(crate) units: Option<Gcra>,
    pub(crate) burst_window_ns: u64,
}

impl GroupRt {
    /// Precomputes the tolerances of a validated group.
    pub(crate) fn new(g: QuotaGroup) -> Self {
        Self {
            rate: g.rate.map(|l| Gcra::new(l.soft, l.hard, l.burst, g.period)),
            units: g
                .units
                .map(|l| Gcra::new(l.soft, l.hard, l.burst, g.period)),
            burst_window_ns: g.burst_window.as_nanos().min(u64::MAX as u128) as u64,
            cfg: g,
        }
    }
}

/// Validated configuration shared by the layer and its handle.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) groups: Vec<GroupRt>,
    pub(crate) assignments: HashMap<String, usize>,
    pub(crate) default_group: usize,
    pub(crate) default_tenant: Arc<str>,
    pub(crate) max_tenants: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) concurrency_retry_after: Duration,
    pub(crate) events: EventBus,
    pub(crate) store: QuotaStore,
}

/// Builds a [`QuotaLayer`](super::QuotaLayer); see the [module docs](super).
#[derive(Debug, Clone)]
pub struct QuotaLayerBuilder {
    groups: Vec<QuotaGroup>,
    assignments: Vec<(String, String)>,
    default_group: Option<String>,
    default_tenant: String,
    max_tenants: usize,
    idle_timeout: Duration,
    concurrency_retry_after: Duration,
    events: EventBus,
    store: QuotaStore,
}

impl Default for QuotaLayerBuilder {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            assignments: Vec::new(),
            default_group: None,
            default_tenant: String::from("default"),
            max_tenants: 10_000,
            idle_timeout: Duration::from_secs(600),
            concurrency_retry_after: Duration::from_secs(1),
            events: EventBus::default(),
            store: QuotaStore::InProcess,
        }
    }
}

impl QuotaLayerBuilder {
    /// Adds a group. The first group added is the default group unless
    /// [`default_group`](Self::default_group) names another.
    pub fn group(mut self, group: QuotaGroup) -> Self {
        self.groups.push(group);
        self
    }
    /// Puts `tenant` in `group` (tenants not assigned use the default group).
    pub fn assign(mut self, tenant: &str, group: &str) -> Self {
        self.assignments.push((tenant.into(), group.into()));
        self
    }
    /// The group of unassigned tenants.
    pub fn default_group(mut self, group: &str) -> Self {
        self.default_group = Some(group.into());
        self
    }
    /// The tenant of requests whose key extractor finds none (default `"default"`).
    pub fn default_tenant(mut self, tenant: &str) -> Self {
        self.default_tenant = tenant.into();
        self
    }
    /// At most this many tenants are tracked (default 10 000); beyond, idle tenants are
    /// evicted, and when none is idle new tenants share one overflow bucket.
    pub fn max_tenants(mut self, n: usize) -> Self {
        self.max_tenants = n;
        self
    }
    /// A tenant idle this long may be evicted when the registry is full (default 10 min).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
    /// The `retry_after` of a concurrency rejection (default 1 s).
    pub fn concurrency_retry_after(mut self, d: Duration) -> Self {
        self.concurrency_retry_after = d;
        self
    }
    /// The bus events are emitted on (e.g. `monitor.events().clone()`).
    pub fn events(mut self, bus: EventBus) -> Self {
        self.events = bus;
        self
    }

    /// Where the buckets live (default [`QuotaStore::InProcess`]); with the `redis` feature,
    /// a [`RedisStore`](super::RedisStore) shares them across a fleet of replicas.
    pub fn store(mut self, store: impl Into<QuotaStore>) -> Self {
        self.store = store.into();
        self
    }

    pub(crate) fn build_config(self) -> Result<Config, ConfigError> {
        if self.groups.is_empty() {
            return Err(ConfigError::new(
                "groups",
                0,
                "at least one group is required",
            ));
        }
        if self.max_tenants == 0 {
            return Err(ConfigError::new("max_tenants", 0, "must be > 0"));
        }
        if self.max_tenants > 1 << 24 {
            return Err(ConfigError::new(
                "max_tenants",
                self.max_tenants,
                "must be <= 16777216",
            ));
        }
        let mut groups = Vec::with_capacity(self.groups.len());
        for (i, g) in self.groups.into_iter().enumerate() {
            let f = format!("groups[{}]", g.name);
            if groups.iter().any(|r: &GroupRt| r.cfg.name == g.name) {
                return Err(ConfigError::new(f, &*g.name, "duplicate group name"));
            }
            if g.period.is_zero() {
                return Err(ConfigError::new(
                    format!("{f}.period"),
                    g.period,
                    "must be > 0",
                ));
            }
            if g.burst_window.is_zero() {
                return Err(ConfigError::new(
                    format!("{f}.burst_window"),
                    g.burst_window,
                    "must be > 0",
                ));
            }
            for (name, l) in [
                ("rate", g.rate),
                ("concurrency", g.concurrency),
                ("units", g.units),
            ] {
                if let Some(l) = l {
                    l.validate(&format!("{f}.{name}"))?;
                }
            }
            if let Some(EnforcementAction::Throttle { max_delay }) = g.concurrency.map(|l| l.action)
                && !max_delay.is_zero()
            {
                return Err(ConfigError::new(
                    format!("{f}.concurrency.action.max_delay"),
                    max_delay,
                    "concurrency cannot be delayed: use Duration::ZERO",
                ));
            }
            let _ = i;
            groups.push(GroupRt::new(g));
        }
        let find = |name: &str| groups.iter().position(|g| &*g.cfg.name == name);
        let default_group = match &self.default_group {
            None => 0,
            Some(n) => {
                find(n).ok_or_else(|| ConfigError::new("default_group", n, "no such group"))?
            }
        };
        let mut assignments = HashMap::new();
        for (t, g) in &self.assignments {
            let gi = find(g)
                .ok_or_else(|| ConfigError::new(format!("assign[{t}]"), g, "no such group"))?;
            assignments.insert(t.clone(), gi);
        }
        Ok(Config {
            groups,
            assignments,
            default_group,
            default_tenant: Arc::from(self.default_tenant.as_str()),
            max_tenants: self.max_tenants,
            idle_timeout: self.idle_timeout,
            concurrency_retry_after: self.concurrency_retry_after,
            events: self.events,
            store: self.store,
        })
    }
}
