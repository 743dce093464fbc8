//! Per-tenant state (all atomics) and the bounded, lock-free-to-read tenant registry.
//!
//! The registry is the crate's shared [`Keyed`](crate::keyed::Keyed) table of
//! `2 * max_tenants` slots allocated when the layer is built (randomly keyed SipHash, no lock
//! to find an existing tenant, insertion mutex once per new tenant). When full, a new tenant
//! re-keys the least recently used tenant idle for `idle_timeout` with nothing in flight (its
//! atomics are reset first, then the new hash is published). A lookup racing a re-key may
//! charge one request to the evicted tenant's reset buckets: harmless. With no slot available
//! new tenants share the overflow tenant, so memory stays bounded whatever keys arrive.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::keyed::{Keyed, KeyedEntry};

/// Minutes of usage history kept per tenant.
pub(crate) const MINUTES: usize = 60;
const MINUTE_NS: u64 = 60_000_000_000;

/// One minute of usage. `minute` is the minute number since the epoch plus one (0 = unused).
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    pub(crate) minute: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) units: AtomicU64,
    pub(crate) soft: AtomicU64,
    pub(crate) hard: AtomicU64,
}

/// One tenant's buckets, counters and usage history.
#[derive(Debug)]
pub(crate) struct Tenant {
    /// The tenant's name, read only off the request path (reports, re-keying).
    pub(crate) name: Mutex<Arc<str>>,
    /// Index of the tenant's group in the rules in force.
    pub(crate) group: AtomicUsize,
    /// The version of the rules `group` was set by (`super::settings`).
    pub(crate) rules_version: AtomicU64,
    /// GCRA theoretical arrival times (ns since epoch), see `gcra.rs`.
    pub(crate) rate_tat: AtomicU64,
    pub(crate) units_tat: AtomicU64,
    /// Requests in flight (one permit guard each).
    pub(crate) in_flight: AtomicU32,
    /// Start of the current burst, ns since epoch plus one (0 = not bursting).
    pub(crate) burst_since: AtomicU64,
    /// End of the suspension, ns since epoch plus one (0 = not suspended).
    pub(crate) suspended_until: AtomicU64,
    /// Soft/hard crossings not yet reported, and when each was last reported (ns + 1).
    pub(crate) soft_pending: AtomicU64,
    pub(crate) hard_pending: AtomicU64,
    pub(crate) soft_emitted: AtomicU64,
    pub(crate) hard_emitted: AtomicU64,
    /// Totals since the tenant was created.
    pub(crate) requests: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) units: AtomicU64,
    /// Last use, ns since epoch (written at most once a second).
    pub(crate) last_used: crate::sync::AtomicU64,
    pub(crate) history: [Bucket; MINUTES],
    /// Leases and fleet readings of the Redis store.
    #[cfg(feature = "redis")]
    pub(crate) fleet: super::store::FleetCell,
}

impl Tenant {
    pub(crate) fn new(name: Arc<str>, group: usize) -> Self {
        Self {
            name: Mutex::new(name),
            group: AtomicUsize::new(group),
            rules_version: AtomicU64::new(0),
            rate_tat: AtomicU64::new(0),
            units_tat: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            burst_since: AtomicU64::new(0),
            suspended_until: AtomicU64::new(0),
            soft_pending: AtomicU64::new(0),
            hard_pending: AtomicU64::new(0),
            soft_emitted: AtomicU64::new(0),
            hard_emitted: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            units: AtomicU64::new(0),
            last_used: crate::sync::AtomicU64::new(0),
            history: std::array::from_fn(|_| Bucket::default()),
            #[cfg(feature = "redis")]
            fleet: super::store::FleetCell::default(),
        }
    }

    pub(crate) fn name(&self) -> Arc<str> {
        self.name.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The usage bucket of the minute containing `now`, reset if it held an older minute.
    /// Counters are `Relaxed`: they are statistics. A recording racing the reset of a new
    /// minute may be lost or land in the new minute: the history is approximate by design.
    #[inline]
    pub(crate) fn bucket(&self, now: u64) -> &Bucket {
        let m = now / MINUTE_NS + 1;
        let b = &self.history[(m as usize) % MINUTES];
        let cur = b.minute.load(Ordering::Acquire);
        if cur != m
            && b.minute
                .compare_exchange(cur, m, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.units.store(0, Ordering::Relaxed);
            b.soft.store(0, Ordering::Relaxed);
            b.hard.store(0, Ordering::Relaxed);
        }
        b
    }

    fn rekey(&self, name: Arc<str>, group: usize, now: u64) {
        *self.name.lock().unwrap_or_else(|p| p.into_inner()) = name;
        self.group.store(group, Ordering::Relaxed);
        for a in [
            &self.rate_tat,
            &self.units_tat,
            &self.burst_since,
            &self.suspended_until,
            &self.soft_pending,
            &self.hard_pending,
            &self.soft_emitted,
            &self.hard_emitted,
            &self.requests,
            &self.rejected,
            &self.units,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        for b in &self.history {
            b.minute.store(0, Ordering::Relaxed);
        }
        // A re-keyed tenant starts without leases: what the old tenant held is left to
        // expire in Redis (concurrency) or is simply not spent (rate cells).
        #[cfg(feature = "redis")]
        self.fleet.reset();
        self.last_used.store(now, Ordering::Relaxed);
    }
}

impl KeyedEntry for Tenant {
    /// The tenant's group index.
    type Init = usize;

    fn last_used(&self) -> &crate::sync::AtomicU64 {
        &self.last_used
    }

    fn in_use(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) != 0
    }

    fn rekey(&self, key: Arc<str>, group: usize, now: u64) {
        Tenant::rekey(self, key, group, now);
    }
}

/// The bounded tenant table.
#[derive(Debug)]
pub(crate) struct Registry(Keyed<Tenant>);

impl Registry {
    pub(crate) fn new(max: usize, idle: std::time::Duration) -> Self {
        Self(Keyed::new(max, idle))
    }

    /// Tenants tracked.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The tenant `key`, created in `group(key)` if there is room.
    #[inline]
    pub(crate) fn get(
        &self,
        key: &str,
        now: u64,
        group: impl FnOnce(&str) -> usize,
    ) -> Option<&Arc<Tenant>> {
        self.0.get(key, || now, group, Tenant::new)
    }

    /// The tenant `key` if tracked.
    pub(crate) fn find(&self, key: &str) -> Option<&Arc<Tenant>> {
        self.0.find(key)
    }

    /// Every tracked tenant.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.0.all()
    }
}
