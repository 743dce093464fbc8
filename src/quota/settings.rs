//! Live quota rules: the groups' limits and the tenants' assignments, which a reload may
//! change while the layer serves, swapped without a lock on the request path.
//!
//! The rules ([`Rules`]: groups with their precomputed GCRA tolerances, tenant to group,
//! the default group) are held in an [`ArcSwap`]; a request loads one snapshot and decides
//! with it (one load per request, as it read the built configuration before).
//!
//! What a reload keeps: every tenant's buckets, in-flight count, burst window, suspension,
//! counters and usage history. A rate or units bucket keeps the *cells used*: its debt is
//! rescaled from the old emission interval to the new one, so a tenant that sent 8 of 10
//! requests this period may send 4 more after the limit becomes 12, and is refused until it
//! drains if the limit becomes 5. A group keeps its index (tenants refer to groups by
//! index), so groups can be changed and added, not removed. A tenant moved to another group
//! keeps its cells used, counted against the new group's limits.
//!
//! A request racing the swap may be decided by the new limits with a bucket not yet
//! rescaled, or by its tenant's previous group: at most the requests of that instant. A
//! tenant first seen during a reload is placed by whichever rules it saw and moved at its
//! next request (each tenant remembers the rules version it was placed by).
//!
//! What a reload cannot change: the default tenant, `max_tenants`, `idle_timeout`,
//! `concurrency_retry_after`, the event bus, the store; a layer with a fleet-wide (Redis)
//! store cannot be reconfigured (its leases are sized from the limits when it is built).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Guard};
use tokio::time::Instant;

use super::config::{Config, GroupRt, QuotaLayerBuilder};
use super::gcra::Gcra;
use super::handle::QuotaHandle;
use super::state::Shared;
use super::store::Store;
use super::tenant::Tenant;
use crate::error::ConfigError;

/// The reloadable part of a quota layer's configuration.
#[derive(Debug)]
pub(crate) struct Rules {
    /// 0 for the rules the layer was built with, +1 per applied update.
    pub(crate) version: u64,
    /// Never empty; an update keeps every index.
    pub(crate) groups: Vec<GroupRt>,
    pub(crate) assignments: HashMap<String, usize>,
    pub(crate) default_group: usize,
}

impl Rules {
    /// The rules of a validated configuration.
    pub(crate) fn of(cfg: &Config) -> Self {
        Self {
            version: 0,
            groups: cfg
                .groups
                .iter()
                .map(|g| GroupRt::new(g.cfg.clone()))
                .collect(),
            assignments: cfg.assignments.clone(),
            default_group: cfg.default_group,
        }
    }

    /// The group index of tenant `name`.
    pub(crate) fn index_of(&self, name: &str) -> usize {
        self.assignments
            .get(name)
            .copied()
            .unwrap_or(self.default_group)
    }
}

/// The rules in force, swapped by an update.
pub(crate) struct LiveRules(ArcSwap<Rules>);

impl std::fmt::Debug for LiveRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.load().fmt(f)
    }
}

impl LiveRules {
    pub(crate) fn new(rules: Rules) -> Self {
        Self(ArcSwap::from_pointee(rules))
    }

    /// A snapshot of the rules in force (no lock).
    #[inline]
    pub(crate) fn load(&self) -> Guard<Arc<Rules>> {
        self.0.load()
    }
}

/// A tenant's group in one snapshot of the rules; dereferences to the group.
pub(crate) struct GroupRef {
    rules: Guard<Arc<Rules>>,
    index: usize,
}

impl GroupRef {
    pub(crate) fn new(rules: Guard<Arc<Rules>>, index: usize) -> Self {
        // Groups are never empty (validated) and indices never removed; clamp regardless.
        let index = index.min(rules.groups.len().saturating_sub(1));
        Self { rules, index }
    }
}

impl Deref for GroupRef {
    type Target = GroupRt;
    fn deref(&self) -> &GroupRt {
        &self.rules.groups[self.index]
    }
}

/// Places `tenant` by `rules` if it was placed by older ones (see the module docs).
#[inline]
pub(crate) fn place(tenant: &Tenant, rules: &Rules) {
    if tenant.rules_version.load(Ordering::Relaxed) != rules.version {
        place_slow(tenant, rules);
    }
}

#[cold]
fn place_slow(tenant: &Tenant, rules: &Rules) {
    let name = tenant.name();
    tenant.group.store(rules.index_of(&name), Ordering::Relaxed);
    tenant.rules_version.store(rules.version, Ordering::Relaxed);
}

/// Rescales a GCRA bucket's debt from `old`'s emission interval to `new`'s (cells used are
/// kept). `Relaxed` compare-exchange, as every update of the cell (see `gcra.rs`).
fn rescale(cell: &AtomicU64, now: u64, old: Option<&Gcra>, new: Option<&Gcra>) {
    let (Some(old), Some(new)) = (old, new) else {
        return;
    };
    if old.t == new.t {
        return;
    }
    let mut tat = cell.load(Ordering::Relaxed);
    loop {
        if tat <= now {
            return;
        }
        let debt = u128::from(tat - now) * u128::from(new.t) / u128::from(old.t.max(1));
        let next = now.saturating_add(u64::try_from(debt).unwrap_or(u64::MAX));
        match cell.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => tat = actual,
        }
    }
}

/// Validated rules for a running quota layer, made by [`QuotaHandle::prepare`] and
/// applied, infallibly, by [`QuotaHandle::apply`].
#[derive(Debug)]
pub struct QuotaUpdate {
    rules: Rules,
}

impl QuotaUpdate {
    /// The group names, in the layer's order (groups added by this update last).
    pub fn groups(&self) -> Vec<&str> {
        self.rules.groups.iter().map(|g| g.cfg.name()).collect()
    }
}

fn fixed<T: PartialEq + std::fmt::Debug>(field: &str, new: T, cur: T) -> Result<(), ConfigError> {
    if new == cur {
        return Ok(());
    }
    Err(ConfigError::new(
        field,
        format!("{new:?}"),
        format!("cannot change while serving (the running layer has {cur:?})"),
    ))
}

impl QuotaHandle {
    /// Validates `builder` (with its own `build()` rules) as the layer's new groups,
    /// assignments and default group, without applying anything. Groups are matched by
    /// name: a group of the running layer keeps its place, new groups are added.
    ///
    /// # Errors
    /// The builder's [`ConfigError`]; `groups[<name>]` for a group of the running layer
    /// that `builder` lacks; `default_tenant`, `max_tenants`, `idle_timeout` or
    /// `concurrency_retry_after` when they differ from the running layer's; `store` for a
    /// layer with a fleet-wide store.
    pub fn prepare(&self, builder: QuotaLayerBuilder) -> Result<QuotaUpdate, ConfigError> {
        let shared: &Shared = &self.shared;
        if !matches!(shared.store, Store::Local) {
            return Err(ConfigError::new(
                "store",
                "redis",
                "a layer with a fleet-wide store cannot be reconfigured while serving",
            ));
        }
        let cfg = builder.build_config()?;
        let built = &shared.cfg;
        fixed("default_tenant", &cfg.default_tenant, &built.default_tenant)?;
        fixed("max_tenants", cfg.max_tenants, built.max_tenants)?;
        fixed("idle_timeout", cfg.idle_timeout, built.idle_timeout)?;
        fixed(
            "concurrency_retry_after",
            cfg.concurrency_retry_after,
            built.concurrency_retry_after,
        )?;
        let current = shared.rules.load();
        let names: Vec<Arc<str>> = cfg.groups.iter().map(|g| g.cfg.name.clone()).collect();
        let mut by_name: HashMap<Arc<str>, GroupRt> = cfg
            .groups
            .into_iter()
            .map(|g| (g.cfg.name.clone(), g))
            .collect();
        let mut groups = Vec::with_capacity(by_name.len());
        for g in &current.groups {
            let name = &g.cfg.name;
            match by_name.remove(name) {
                Some(new) => groups.push(new),
                None => {
                    return Err(ConfigError::new(
                        format!("groups[{name}]"),
                        &**name,
                        "a group cannot be removed while serving (tenants may be in it); \
                         keep it, or restart to remove it",
                    ));
                }
            }
        }
        for name in &names {
            if let Some(g) = by_name.remove(name) {
                groups.push(g);
            }
        }
        let index = |old: usize| {
            names
                .get(old)
                .and_then(|n| groups.iter().position(|g| g.cfg.name == *n))
                .unwrap_or(0)
        };
        let assignments = cfg
            .assignments
            .iter()
            .map(|(t, &g)| (t.clone(), index(g)))
            .collect();
        let default_group = index(cfg.default_group);
        Ok(QuotaUpdate {
            rules: Rules {
                version: current.version.wrapping_add(1),
                groups,
                assignments,
                default_group,
            },
        })
    }

    /// Applies prepared rules: every tracked tenant is placed in its group under the new
    /// rules and its rate and units buckets keep their cells used, counted against the new
    /// limits (a tenant that sent 8 of 10 this period may send 4 more once the limit is 12,
    /// and none until it drains once it is 5); in-flight counts, burst windows, suspensions
    /// and usage history are kept. A request racing the swap may be decided by the new
    /// limits with its bucket not yet rescaled, or by its tenant's previous group.
    pub fn apply(&self, update: QuotaUpdate) {
        let shared: &Shared = &self.shared;
        let new = Arc::new(update.rules);
        let old = shared.rules.0.swap(new.clone());
        let now = shared.nanos(Instant::now());
        let tenants = shared
            .registry
            .all()
            .chain(std::iter::once(&shared.overflow));
        for t in tenants {
            let was = &old.groups[t.group.load(Ordering::Relaxed).min(old.groups.len() - 1)];
            let gi = if Arc::ptr_eq(t, &shared.overflow) {
                new.default_group
            } else {
                new.index_of(&t.name())
            };
            let is = &new.groups[gi.min(new.groups.len() - 1)];
            rescale(&t.rate_tat, now, was.rate.as_ref(), is.rate.as_ref());
            rescale(&t.units_tat, now, was.units.as_ref(), is.units.as_ref());
            t.group.store(gi, Ordering::Relaxed);
            t.rules_version.store(new.version, Ordering::Relaxed);
        }
    }

    /// [`prepare`](Self::prepare) then [`apply`](Self::apply).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer};
    /// let layer = QuotaLayer::builder()
    ///     .group(QuotaGroup::new("free").rate(Limit::new(10)))
    ///     .build(HeaderKey::x_tenant())?;
    /// let handle = layer.handle();
    /// handle.reconfigure(QuotaLayer::builder().group(QuotaGroup::new("free").rate(Limit::new(20))))?;
    /// assert_eq!(handle.group_limits("free").and_then(|g| g.rate_limit()).map(|l| l.hard()), Some(20));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`prepare`](Self::prepare); nothing is applied then.
    pub fn reconfigure(&self, builder: QuotaLayerBuilder) -> Result<(), ConfigError> {
        let update = self.prepare(builder)?;
        self.apply(update);
        Ok(())
    }

    /// The group `name` as the rules in force define it.
    pub fn group_limits(&self, name: &str) -> Option<super::QuotaGroup> {
        let rules = self.shared.rules.load();
        rules
            .groups
            .iter()
            .find(|g| g.cfg.name() == name)
            .map(|g| g.cfg.clone())
    }

    /// The group tenant `tenant` is in under the rules in force.
    pub fn group_of_tenant(&self, tenant: &str) -> String {
        let rules = self.shared.rules.load();
        let gi = rules.index_of(tenant);
        GroupRef::new(rules, gi).cfg.name().to_string()
    }
}
