//! A bounded keyed registry with idle eviction and lock-free lookup of existing keys, shared by
//! the circuit breaker's per-key breakers and the quota's per-tenant state.
//!
//! A fixed open-addressing table of `2 * max_keys` (rounded up to a power of two) slots,
//! allocated when the owning layer is built. Each slot holds the 64-bit SipHash (randomly
//! keyed per registry, so attacker-chosen keys cannot aim at collisions; the low bit is forced
//! to 1 so 0 means empty) of its key in an [`AtomicU64`] and a value created once
//! ([`OnceLock`]).
//!
//! **Lookup of an existing key takes no lock** (the request path): [`Keyed::get`] probes
//! linearly from the key's home slot with `Acquire` loads until it finds the hash or an empty
//! slot. A miss takes the insertion mutex (off the request path: once per new key), rescans,
//! and either fills an empty slot (value first, then the hash with `Release`, so a reader that
//! sees the hash sees the value) or, when `max_keys` are in use, re-keys the least recently
//! used value idle for at least `idle` and not [in use](KeyedEntry::in_use) (its state is
//! reset by [`KeyedEntry::rekey`] first, then the new hash is published). Slots are never
//! emptied, so a re-keyed slot may sit away from its key's home: a lookup that stops at an
//! empty slot falls back to the full scan under the mutex, which finds it. A lookup racing a
//! re-key may see the old value being reset; owners document why that is harmless. When no
//! slot can be had, `get` returns `None` and the owner uses a shared fallback value, so memory
//! stays bounded whatever keys arrive.
//!
//! `last_used` is written at most once per second per key on lookups (`Relaxed`: it is only
//! an eviction hint).

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Minimum time between two `last_used` writes of one key, in nanoseconds.
const TOUCH_NS: u64 = 1_000_000_000;

/// A value kept per key in a [`Keyed`] registry.
pub(crate) trait KeyedEntry {
    /// What the owner computes once per new key, under the insertion mutex, before creating
    /// or re-keying a value (the quota's tenant group; `()` for breakers).
    type Init;

    /// Last use, in the owner's nanoseconds (read and written `Relaxed`).
    fn last_used(&self) -> &crate::sync::AtomicU64;

    /// Whether the value must not be evicted now (requests in flight, a probe out).
    fn in_use(&self) -> bool;

    /// Forgets everything and takes `key` (eviction). Must store `now` in `last_used`.
    fn rekey(&self, key: Arc<str>, init: Self::Init, now: u64);
}

struct Slot<V> {
    hash: AtomicU64,
    value: OnceLock<Arc<V>>,
}

/// The bounded table; see the [module docs](self).
pub(crate) struct Keyed<V> {
    slots: Box<[Slot<V>]>,
    mask: usize,
    hasher: RandomState,
    insert: Mutex<()>,
    used: AtomicUsize,
    max_keys: usize,
    idle_ns: u64,
}

impl<V> std::fmt::Debug for Keyed<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed")
            .field("keys", &self.used.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl<V: KeyedEntry> Keyed<V> {
    /// A table for at most `max_keys` keys; a key idle for `idle` may be evicted when full.
    pub(crate) fn new(max_keys: usize, idle: Duration) -> Self {
        let cap = (max_keys.max(1) * 2).next_power_of_two();
        Self {
            slots: (0..cap)
                .map(|_| Slot {
                    hash: AtomicU64::new(0),
                    value: OnceLock::new(),
                })
                .collect(),
            mask: cap - 1,
            hasher: RandomState::new(),
            insert: Mutex::new(()),
            used: AtomicUsize::new(0),
            max_keys,
            idle_ns: idle.as_nanos().min(u64::MAX as u128) as u64,
        }
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key) | 1
    }

    /// Keys in use.
    pub(crate) fn len(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The value of `key`, creating one if there is room (`None`: table full, nothing idle).
    ///
    /// An existing key is found without any lock: one hash and `Acquire` loads, then
    /// `now()` once to refresh `last_used`. A new key goes through the cold insertion path,
    /// which calls `init(key)` once, then `create(key, init)` for an empty slot or
    /// [`KeyedEntry::rekey`] on an idle victim.
    #[inline]
    pub(crate) fn get(
        &self,
        key: &str,
        mut now: impl FnMut() -> u64,
        init: impl FnOnce(&str) -> V::Init,
        create: impl FnOnce(Arc<str>, V::Init) -> V,
    ) -> Option<&Arc<V>> {
        let h = self.hash(key);
        let mut i = h as usize & self.mask;
        for _ in 0..=self.mask {
            let s = &self.slots[i];
            // Acquire pairs with the Release store of the hash in `insert_slow`: seeing the
            // hash means seeing the value it was published with.
            let sh = s.hash.load(Ordering::Acquire);
            if sh == h
                && let Some(v) = s.value.get()
            {
                let t = now();
                let last = v.last_used();
                if t.saturating_sub(last.load(Ordering::Relaxed)) >= TOUCH_NS {
                    last.store(t, Ordering::Relaxed);
                }
                return Some(v);
            }
            if sh == 0 {
                break;
            }
            i = (i + 1) & self.mask;
        }
        self.insert_slow(key, h, now(), init, create)
    }

    /// The value of `key` if tracked (full scan, no insertion; off the request path).
    pub(crate) fn find(&self, key: &str) -> Option<&Arc<V>> {
        self.find_hash(self.hash(key))
    }

    /// Every tracked value.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<V>> {
        self.slots
            .iter()
            .filter(|s| s.hash.load(Ordering::Acquire) != 0)
            .filter_map(|s| s.value.get())
    }

    fn find_hash(&self, h: u64) -> Option<&Arc<V>> {
        self.slots
            .iter()
            .find(|s| s.hash.load(Ordering::Acquire) == h)
            .and_then(|s| s.value.get())
    }

    #[cold]
    fn insert_slow(
        &self,
        key: &str,
        h: u64,
        now: u64,
        init: impl FnOnce(&str) -> V::Init,
        create: impl FnOnce(Arc<str>, V::Init) -> V,
    ) -> Option<&Arc<V>> {
        // The mutex guards no data (only serializes inserters); a poisoned lock is still
        // a valid serialization point.
        let _g = self.insert.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = self.find_hash(h) {
            return Some(v);
        }
        let init = init(key);
        if self.used.load(Ordering::Relaxed) < self.max_keys {
            let mut i = h as usize & self.mask;
            for _ in 0..=self.mask {
                let s = &self.slots[i];
                if s.hash.load(Ordering::Acquire) == 0 {
                    let v = s
                        .value
                        .get_or_init(|| Arc::new(create(Arc::from(key), init)));
                    v.last_used().store(now, Ordering::Relaxed);
                    // Release: publishes the value before the hash that makes it findable.
                    s.hash.store(h, Ordering::Release);
                    self.used.fetch_add(1, Ordering::Relaxed);
                    return Some(v);
                }
                i = (i + 1) & self.mask;
            }
            return None;
        }
        // Full: re-key the least recently used idle value not in use, if any.
        let (s, v) = self
            .slots
            .iter()
            .filter(|s| s.hash.load(Ordering::Acquire) != 0)
            .filter_map(|s| s.value.get().map(|v| (s, v)))
            .filter(|(_, v)| {
                now.saturating_sub(v.last_used().load(Ordering::Relaxed)) >= self.idle_ns
                    && !v.in_use()
            })
            .min_by_key(|(_, v)| v.last_used().load(Ordering::Relaxed))?;
        v.rekey(Arc::from(key), init, now);
        // Release: the reset state is visible to whoever finds the new hash.
        s.hash.store(h, Ordering::Release);
        Some(v)
    }
}

/// Picks the key of a request (host, route, provider, executor id such as `"D3-Q3"`): the
/// breaker key of the [circuit breaker](crate::circuit_breaker), and the cache key of the
/// [fallback](crate::fallback)'s per-key strategies. Core, so both layers use it. `None` uses the layer's default breaker.
///
/// Implemented by [`NoKey`] (one breaker), by closures `Fn(&Req) -> Option<String>`, and with
/// the `http` feature by [`HostKey`](crate::circuit_breaker::http::HostKey) and
/// [`HeaderKey`](crate::circuit_breaker::http::HeaderKey) (which borrow and allocate nothing).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[derive(Debug)]
    struct Entry {
        key: Mutex<Arc<str>>,
        busy: AtomicU32,
        last_used: crate::sync::AtomicU64,
    }

    impl KeyedEntry for Entry {
        type Init = ();
        fn last_used(&self) -> &crate::sync::AtomicU64 {
            &self.last_used
        }
        fn in_use(&self) -> bool {
            self.busy.load(Ordering::Acquire) > 0
        }
        fn rekey(&self, key: Arc<str>, (): (), now: u64) {
            *self.key.lock().unwrap() = key;
            self.last_used.store(now, Ordering::Relaxed);
        }
    }

    fn entry(key: Arc<str>, (): ()) -> Entry {
        Entry {
            key: Mutex::new(key),
            busy: AtomicU32::new(0),
            last_used: crate::sync::AtomicU64::new(0),
        }
    }

    const SEC: u64 = 1_000_000_000;

    fn get<'a>(r: &'a Keyed<Entry>, k: &str, now: u64) -> Option<&'a Arc<Entry>> {
        r.get(k, || now, |_| (), entry)
    }

    #[test]
    fn existing_key_returns_the_same_value() {
        let r = Keyed::new(4, Duration::from_secs(60));
        let a = Arc::clone(get(&r, "a", 0).unwrap());
        assert!(Arc::ptr_eq(&a, get(&r, "a", SEC).unwrap()));
        assert!(Arc::ptr_eq(&a, r.find("a").unwrap()));
        assert!(r.find("b").is_none());
        assert_eq!(r.len(), 1);
        assert_eq!(a.last_used.load(Ordering::Relaxed), SEC);
    }

    #[test]
    fn bounded_under_random_keys() {
        let r = Keyed::new(16, Duration::from_secs(60));
        // xorshift: deterministic pseudo-random keys.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut none = 0;
        for i in 0..5_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Time moves slower than the idle timeout, so nothing is evictable.
            if get(&r, &format!("k{x:x}"), i).is_none() {
                none += 1;
            }
            assert!(r.len() <= 16);
        }
        assert_eq!(r.len(), 16);
        assert_eq!(r.all().count(), 16);
        assert_eq!(none, 5_000 - 16);
        assert_eq!(r.slots.len(), 32);
    }

    #[test]
    fn evicts_the_least_recently_used_idle_entry() {
        let r = Keyed::new(2, Duration::from_secs(10));
        let a = Arc::clone(get(&r, "a", 0).unwrap());
        let b = Arc::clone(get(&r, "b", 5 * SEC).unwrap());
        // Full, nobody idle for 10 s yet.
        assert!(get(&r, "c", 9 * SEC).is_none());
        // "a" is idle now but busy: not evicted.
        a.busy.store(1, Ordering::Relaxed);
        assert!(get(&r, "c", 12 * SEC).is_none());
        a.busy.store(0, Ordering::Relaxed);
        let c = Arc::clone(get(&r, "c", 12 * SEC).unwrap());
        assert!(Arc::ptr_eq(&a, &c), "the LRU idle slot is re-keyed");
        assert_eq!(&**c.key.lock().unwrap(), "c");
        assert!(r.find("a").is_none());
        assert!(Arc::ptr_eq(&b, r.find("b").unwrap()));
        assert_eq!(r.len(), 2);
        // A re-keyed key away from its home slot is still found by `get`.
        assert!(Arc::ptr_eq(&c, get(&r, "c", 13 * SEC).unwrap()));
        // A later lookup of "a" re-keys "b" (idle since 5 s), not "c".
        let a2 = Arc::clone(get(&r, "a", 16 * SEC).unwrap());
        assert!(Arc::ptr_eq(&a2, &b));
    }

    #[test]
    fn concurrent_lookups_of_one_key_give_one_value() {
        let r = Keyed::new(8, Duration::from_secs(60));
        let created = AtomicU32::new(0);
        let ptrs: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let v = r
                            .get(
                                "one",
                                || 0,
                                |_| (),
                                |k, i| {
                                    created.fetch_add(1, Ordering::Relaxed);
                                    entry(k, i)
                                },
                            )
                            .unwrap();
                        Arc::as_ptr(v) as usize
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ptrs.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(created.load(Ordering::Relaxed), 1);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn zero_capacity_never_stores() {
        let r: Keyed<Entry> = Keyed::new(0, Duration::ZERO);
        assert!(get(&r, "a", 0).is_none());
        assert_eq!(r.len(), 0);
    }
}
