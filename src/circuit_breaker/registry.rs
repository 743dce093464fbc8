//! Per-key breakers in a bounded, lock-free-to-read registry.
//!
//! A fixed open-addressing table of `2 * max_keys` (rounded up to a power of two) slots,
//! allocated when the layer is built. Each slot holds the 64-bit SipHash (randomly keyed per
//! registry, so attacker-chosen keys cannot aim at collisions) of its key in an
//! [`AtomicU64`] (0 = empty) and a breaker created once ([`OnceLock`]).
//!
//! Lookup (the request path) probes linearly from the key's home slot with `Acquire` loads
//! until it finds the hash or an empty slot: no lock. A miss takes the insertion mutex (off
//! the request path: once per new key), rescans, and either fills an empty slot (breaker
//! first, then the hash with `Release`, so a reader that sees the hash sees the breaker) or,
//! when `max_keys` are in use, re-keys the least recently used breaker idle for at least
//! `idle_timeout` with no probe out. Slots are never emptied, so a re-keyed slot may sit away
//! from its key's home: a lookup that stops at an empty slot falls back to the full scan
//! under the mutex, which finds it. When no slot can be had the call uses the layer's
//! default breaker, so memory stays bounded whatever keys arrive.
//!
//! Keyed lookups read the clock once per call to keep `last_used` (stored at most once per
//! second per key).

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use std::collections::hash_map::RandomState;

use super::state::{Core, Now};

/// Picks the breaker key of a request (host, route, provider, executor id such as
/// `"D3-Q3"`). `None` uses the layer's default breaker.
///
/// Implemented by [`NoKey`] (one breaker), by closures `Fn(&Req) -> Option<String>`, and with
/// the `http` feature by [`HostKey`](super::http::HostKey) and
/// [`HeaderKey`](super::http::HeaderKey) (which borrow and allocate nothing).
pub trait KeyExtractor<Req> {
    /// The request's key.
    fn key<'a>(&self, req: &'a Req) -> Option<Cow<'a, str>>;
}

/// One breaker for every request (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKey;

impl<Req> KeyExtractor<Req> for NoKey {
    #[inline(always)]
    fn key<'a>(&self, _: &'a Req) -> Option<Cow<'a, str>> {
        None
    }
}

impl<F, Req> KeyExtractor<Req> for F
where
    F: Fn(&Req) -> Option<String>,
{
    fn key<'a>(&self, req: &'a Req) -> Option<Cow<'a, str>> {
        self(req).map(Cow::Owned)
    }
}

struct Slot {
    hash: AtomicU64,
    core: OnceLock<Arc<Core>>,
}

pub(crate) struct Registry {
    slots: Box<[Slot]>,
    mask: usize,
    hasher: RandomState,
    insert: Mutex<()>,
    used: AtomicUsize,
    max_keys: usize,
    idle_nanos: u64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("keys", &self.used.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl Registry {
    pub(crate) fn new(max_keys: usize, idle: std::time::Duration) -> Self {
        let cap = (max_keys.max(1) * 2).next_power_of_two();
        Self {
            slots: (0..cap)
                .map(|_| Slot {
                    hash: AtomicU64::new(0),
                    core: OnceLock::new(),
                })
                .collect(),
            mask: cap - 1,
            hasher: RandomState::new(),
            insert: Mutex::new(()),
            used: AtomicUsize::new(0),
            max_keys,
            idle_nanos: idle.as_nanos().min(u64::MAX as u128) as u64,
        }
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key) | 1
    }

    fn touch(core: &Core, now: &mut Now) {
        let t = now.get();
        if t.saturating_sub(core.last_used.load(Ordering::Relaxed)) >= 1_000_000_000 {
            core.last_used.store(t, Ordering::Relaxed);
        }
    }

    /// The breaker of `key`, creating it with `make` if there is room.
    #[inline]
    pub(crate) fn get(
        &self,
        key: &str,
        now: &mut Now,
        make: impl FnOnce(Arc<str>) -> Core,
    ) -> Option<&Arc<Core>> {
        let h = self.hash(key);
        let mut i = h as usize & self.mask;
        for _ in 0..=self.mask {
            let s = &self.slots[i];
            let sh = s.hash.load(Ordering::Acquire);
            if sh == h
                && let Some(c) = s.core.get()
            {
                Self::touch(c, now);
                return Some(c);
            }
            if sh == 0 {
                break;
            }
            i = (i + 1) & self.mask;
        }
        self.insert_slow(key, h, now, make)
    }

    /// The breaker of `key` if it exists (no insertion).
    pub(crate) fn find(&self, key: &str) -> Option<&Arc<Core>> {
        let h = self.hash(key);
        self.slots
            .iter()
            .find(|s| s.hash.load(Ordering::Acquire) == h)
            .and_then(|s| s.core.get())
    }

    /// Every keyed breaker.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Core>> {
        self.slots
            .iter()
            .filter(|s| s.hash.load(Ordering::Acquire) != 0)
            .filter_map(|s| s.core.get())
    }

    #[cold]
    fn insert_slow(
        &self,
        key: &str,
        h: u64,
        now: &mut Now,
        make: impl FnOnce(Arc<str>) -> Core,
    ) -> Option<&Arc<Core>> {
        let _g = self.insert.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = self.find_hash(h) {
            return Some(c);
        }
        let t = now.get();
        if self.used.load(Ordering::Relaxed) < self.max_keys {
            let mut i = h as usize & self.mask;
            for _ in 0..=self.mask {
                let s = &self.slots[i];
                if s.hash.load(Ordering::Acquire) == 0 {
                    let c = s.core.get_or_init(|| Arc::new(make(Arc::from(key))));
                    c.last_used.store(t, Ordering::Relaxed);
                    s.hash.store(h, Ordering::Release);
                    self.used.fetch_add(1, Ordering::Relaxed);
                    return Some(c);
                }
                i = (i + 1) & self.mask;
            }
            return None;
        }
        // Full: re-key the least recently used idle breaker, if any.
        let victim = self
            .slots
            .iter()
            .filter(|s| s.hash.load(Ordering::Acquire) != 0)
            .filter_map(|s| s.core.get().map(|c| (s, c)))
            .filter(|(_, c)| {
                t.saturating_sub(c.last_used.load(Ordering::Relaxed)) >= self.idle_nanos
                    && !c.busy()
            })
            .min_by_key(|(_, c)| c.last_used.load(Ordering::Relaxed));
        let (s, c) = victim?;
        c.rekey(Arc::from(key), t);
        s.hash.store(h, Ordering::Release);
        Some(c)
    }

    fn find_hash(&self, h: u64) -> Option<&Arc<Core>> {
        self.slots
            .iter()
            .find(|s| s.hash.load(Ordering::Acquire) == h)
            .and_then(|s| s.core.get())
    }
}
