//! Per-tenant state (all atomics) and the bounded, lock-free-to-read tenant registry.
//!
//! The registry is a fixed open-addressing table of `2 * max_tenants` (power of two) slots
//! allocated when the layer is built, as the circuit breaker's per-key registry: each slot
//! holds the 64-bit SipHash (randomly keyed) of its tenant in an [`AtomicU64`] (0 = empty)
//! and a [`Tenant`] created once ([`OnceLock`]). Lookup (the request path) probes linearly
//! with `Acquire` loads: no lock. A miss takes the insertion mutex (once per new tenant),
//! rescans, and either fills an empty slot (tenant first, then the hash with `Release`, so a
//! reader that sees the hash sees the tenant) or, when full, re-keys the least recently
//! used tenant idle for `idle_timeout` with nothing in flight (its atomics are reset first,
//! then the new hash is published). A lookup racing a re-key may charge one request to the
//! evicted tenant's reset buckets: harmless. With no slot available new tenants share the
//! overflow tenant, so memory stays bounded whatever keys arrive.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
    /// Index of the tenant's group in the config.
    pub(crate) group: AtomicUsize,
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
    pub(crate) last_used: AtomicU64,
    pub(crate) history: [Bucket; MINUTES],
}

impl Tenant {
    pub(crate) fn new(name: Arc<str>, group: usize) -> Self {
        Self {
            name: Mutex::new(name),
            group: AtomicUsize::new(group),
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
            last_used: AtomicU64::new(0),
            history: std::array::from_fn(|_| Bucket::default()),
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
        self.last_used.store(now, Ordering::Relaxed);
    }
}

struct Slot {
    hash: AtomicU64,
    tenant: OnceLock<Arc<Tenant>>,
}

/// The bounded tenant table.
pub(crate) struct Registry {
    slots: Box<[Slot]>,
    mask: usize,
    hasher: RandomState,
    insert: Mutex<()>,
    used: AtomicUsize,
    max: usize,
    idle_ns: u64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("tenants", &self.used.load(Ordering::Relaxed))
            .field("max", &self.max)
            .finish()
    }
}

impl Registry {
    pub(crate) fn new(max: usize, idle: std::time::Duration) -> Self {
        let cap = (max.max(1) * 2).next_power_of_two();
        Self {
            slots: (0..cap)
                .map(|_| Slot {
                    hash: AtomicU64::new(0),
                    tenant: OnceLock::new(),
                })
                .collect(),
            mask: cap - 1,
            hasher: RandomState::new(),
            insert: Mutex::new(()),
            used: AtomicUsize::new(0),
            max,
            idle_ns: idle.as_nanos().min(u64::MAX as u128) as u64,
        }
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key) | 1
    }

    /// Tenants tracked.
    pub(crate) fn len(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The tenant `key`, created in `group(key)` if there is room.
    #[inline]
    pub(crate) fn get(
        &self,
        key: &str,
        now: u64,
        group: impl FnOnce(&str) -> usize,
    ) -> Option<&Arc<Tenant>> {
        let h = self.hash(key);
        let mut i = h as usize & self.mask;
        for _ in 0..=self.mask {
            let s = &self.slots[i];
            let sh = s.hash.load(Ordering::Acquire);
            if sh == h
                && let Some(t) = s.tenant.get()
            {
                if now.saturating_sub(t.last_used.load(Ordering::Relaxed)) >= 1_000_000_000 {
                    t.last_used.store(now, Ordering::Relaxed);
                }
                return Some(t);
            }
            if sh == 0 {
                break;
            }
            i = (i + 1) & self.mask;
        }
        self.insert_slow(key, h, now, group)
    }

    /// The tenant `key` if tracked.
    pub(crate) fn find(&self, key: &str) -> Option<&Arc<Tenant>> {
        let h = self.hash(key);
        self.slots
            .iter()
            .find(|s| s.hash.load(Ordering::Acquire) == h)
            .and_then(|s| s.tenant.get())
    }

    /// Every tracked tenant.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.slots
            .iter()
            .filter(|s| s.hash.load(Ordering::Acquire) != 0)
            .filter_map(|s| s.tenant.get())
    }

    #[cold]
    fn insert_slow(
        &self,
        key: &str,
        h: u64,
        now: u64,
        group: impl FnOnce(&str) -> usize,
    ) -> Option<&Arc<Tenant>> {
        let _g = self.insert.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = self.find(key) {
            return Some(t);
        }
        let gi = group(key);
        if self.used.load(Ordering::Relaxed) < self.max {
            let mut i = h as usize & self.mask;
            for _ in 0..=self.mask {
                let s = &self.slots[i];
                if s.hash.load(Ordering::Acquire) == 0 {
                    let t = s
                        .tenant
                        .get_or_init(|| Arc::new(Tenant::new(Arc::from(key), gi)));
                    t.last_used.store(now, Ordering::Relaxed);
                    s.hash.store(h, Ordering::Release);
                    self.used.fetch_add(1, Ordering::Relaxed);
                    return Some(t);
                }
                i = (i + 1) & self.mask;
            }
            return None;
        }
        let (s, t) = self
            .slots
            .iter()
            .filter(|s| s.hash.load(Ordering::Acquire) != 0)
            .filter_map(|s| s.tenant.get().map(|t| (s, t)))
            .filter(|(_, t)| {
                now.saturating_sub(t.last_used.load(Ordering::Relaxed)) >= self.idle_ns
                    && t.in_flight.load(Ordering::Acquire) == 0
            })
            .min_by_key(|(_, t)| t.last_used.load(Ordering::Relaxed))?;
        t.rekey(Arc::from(key), gi, now);
        s.hash.store(h, Ordering::Release);
        Some(t)
    }
}
