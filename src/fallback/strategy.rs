//! The four strategies: what a [`FallbackLayer`](super::FallbackLayer) does when the primary
//! fails. One layer holds one strategy; a chain is layers stacked (see the
//! [module docs](super#a-chain-least-disruptive-first)).

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::BoxError;
use tower::util::Oneshot;
use tower_service::Service;

use super::future::{QueueFuture, ServiceFuture};
use super::trigger::retry_after;
use crate::constraints::Constraints;
use crate::constraints::HasExtensions;
use crate::keyed::{KeyExtractor, Keyed, KeyedEntry};
use crate::section::StatusSection;

/// What every strategy tells about itself, independent of the request type.
pub trait StrategyInfo: Send + Sync + 'static {
    /// `"queue"`, `"cache"`, `"service"` or `"value"` (in events, metrics and marks).
    fn kind(&self) -> &'static str;

    /// Adds the strategy's own gauges to the layer's status section (`labels` name the
    /// layer). Defaults to nothing.
    fn status(&self, section: StatusSection, labels: &[(&str, &str)]) -> StatusSection {
        let _ = labels;
        section
    }
}

/// A fallback strategy for a primary service `S` and requests `Req`: what it keeps of each
/// request before the primary is called, and how it answers when the primary fails.
///
/// Implemented by [`ServiceFallback`], [`ValueFallback`], [`CacheFallback`] and
/// [`QueueFallback`]; build them with the [`FallbackLayer`](super::FallbackLayer)
/// constructors.
pub trait Strategy<S, Req>: StrategyInfo
where
    S: Service<Req>,
{
    /// What is kept of a request while the primary runs (a clone of it, a cache slot, nothing).
    type Kept;
    /// The fallback's future.
    type Future: Future<Output = Result<S::Response, BoxError>>;

    /// Called in `call`, before the primary gets the request: the per-request cost of the
    /// strategy on the success path.
    fn keep(&self, req: &Req, primary: &S) -> Self::Kept;

    /// The primary succeeded (the cache stores the response here).
    fn succeeded(&self, kept: Self::Kept, res: &S::Response) {
        let _ = (kept, res);
    }

    /// The primary failed with `failure`: the fallback's future and the age of a cached
    /// answer, or why this strategy does not apply (`"cache miss"`, `"queue full"`, ...), in
    /// which case the original failure is returned.
    fn start(
        &self,
        kept: Self::Kept,
        failure: &BoxError,
    ) -> Result<(Self::Future, Option<Duration>), &'static str>;
}

// ---------------------------------------------------------------------------------------------
// Switch provider.

/// Sends the request to an alternate service ([`FallbackLayer::service`](super::FallbackLayer::service)).
///
/// # Cost
///
/// The request is moved into the primary, so a copy is made *before* every call
/// (`Req: Clone`): for `http::Request<Full<Bytes>>` a header map clone and a reference count,
/// for large owned bodies a real copy. When the fallback does not need the request, use
/// [`FallbackLayer::value`](super::FallbackLayer::value), which keeps nothing. The alternate
/// service is stored once, shared by every clone of the layer, and cloned only when a
/// fallback happens.
#[derive(Clone)]
pub struct ServiceFallback<F> {
    pub(crate) svc: F,
}

impl<F> fmt::Debug for ServiceFallback<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceFallback").finish_non_exhaustive()
    }
}

impl<F: Send + Sync + 'static> StrategyInfo for ServiceFallback<F> {
    fn kind(&self) -> &'static str {
        "service"
    }
}

impl<S, F, Req> Strategy<S, Req> for ServiceFallback<F>
where
    S: Service<Req>,
    F: Service<Req, Response = S::Response> + Clone + Send + Sync + 'static,
    F::Error: Into<BoxError>,
    Req: Clone,
{
    type Kept = Req;
    type Future = ServiceFuture<F, Req>;

    #[inline]
    fn keep(&self, req: &Req, _: &S) -> Req {
        req.clone()
    }

    fn start(
        &self,
        req: Req,
        _: &BoxError,
    ) -> Result<(Self::Future, Option<Duration>), &'static str> {
        Ok((
            ServiceFuture::new(Oneshot::new(self.svc.clone(), req)),
            None,
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Degrade: a response built from the error.

/// Answers a response built from the primary's error ([`FallbackLayer::value`](super::FallbackLayer::value)).
/// Keeps nothing of the request: no clone, no cost on the success path.
pub struct ValueFallback<F> {
    pub(crate) f: F,
}

impl<F> fmt::Debug for ValueFallback<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueFallback").finish_non_exhaustive()
    }
}

impl<F: Send + Sync + 'static> StrategyInfo for ValueFallback<F> {
    fn kind(&self) -> &'static str {
        "value"
    }
}

impl<S, F, Req> Strategy<S, Req> for ValueFallback<F>
where
    S: Service<Req>,
    F: Fn(&BoxError) -> S::Response + Send + Sync + 'static,
{
    type Kept = ();
    type Future = Ready<Result<S::Response, BoxError>>;

    #[inline]
    fn keep(&self, _: &Req, _: &S) {}

    fn start(
        &self,
        (): (),
        failure: &BoxError,
    ) -> Result<(Self::Future, Option<Duration>), &'static str> {
        Ok((ready(Ok((self.f)(failure))), None))
    }
}

// ---------------------------------------------------------------------------------------------
// Cache: serve the last good response, if young enough.

/// One cached key: see [`CacheFallback`].
struct Entry<Res> {
    last_used: crate::sync::AtomicU64,
    /// Nanoseconds (since the strategy's epoch) + 1 of the last store claimed; 0 = none.
    /// Only a sampling gate: `Relaxed` loads, a `Relaxed` compare-exchange picks the one
    /// success that stores (the stored data itself is published by the mutex).
    claimed: AtomicU64,
    /// Taken on a sampled store and on a fallback, never on the lookup-only success path.
    slot: Mutex<Stored<Res>>,
}

struct Stored<Res> {
    /// The strategy's own hash of the key this entry holds now. A request keeps the hash of
    /// its key; a store or a read whose hash differs (the entry was re-keyed for another key
    /// since the request looked it up) is ignored, so one key's response is never served for
    /// another.
    key_hash: u64,
    value: Option<(Res, Instant)>,
}

impl<Res> Entry<Res> {
    fn new(key_hash: u64) -> Self {
        Self {
            last_used: crate::sync::AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            slot: Mutex::new(Stored {
                key_hash,
                value: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stored<Res>> {
        // A poisoned slot only means a `Res::clone` panicked while held; the data (an
        // `Option` replaced whole) is still consistent.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<Res> KeyedEntry for Entry<Res> {
    /// The strategy's hash of the key.
    type Init = u64;

    fn last_used(&self) -> &crate::sync::AtomicU64 {
        &self.last_used
    }

    fn in_use(&self) -> bool {
        // A cache entry may always be evicted once idle for `max_age`: nothing of value is
        // lost (its response is too old to serve).
        false
    }

    fn rekey(&self, _: Arc<str>, key_hash: u64, now: u64) {
        let mut s = self.lock();
        s.key_hash = key_hash;
        s.value = None;
        drop(s);
        self.claimed.store(0, Ordering::Relaxed);
        self.last_used.store(now, Ordering::Relaxed);
    }
}

/// What a request of the cache strategy keeps: its slot, its key's hash, its call time.
#[derive(Debug)]
pub struct CacheKept<Res> {
    entry: Option<(Arc<Entry<Res>>, u64)>,
    at: Instant,
}

impl<Res> fmt::Debug for Entry<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").finish_non_exhaustive()
    }
}

/// Serves the last successful response of the request's key when the primary fails
/// ([`FallbackLayer::cache`](super::FallbackLayer::cache)).
///
/// # Storage and cost
///
/// Keys live in the crate's bounded keyed registry (the one behind per-key breakers): at most
/// `capacity` keys, found without a lock; a new key takes the insertion mutex once; when full,
/// the least recently used key idle for `max_age` is re-keyed, otherwise the new key is not
/// cached. Each entry holds one response behind its own mutex.
///
/// On the success path a request pays: the key extraction (free for borrowed keys such as
/// `HostKey`, an allocation for closures returning `String`), a SipHash of the key for the
/// table and one for the re-key check, a lock-free probe, one reference-count increment, and
/// the call time (shared with an outer timing layer, else one clock read). **Storing is
/// sampled**: at most one success per key per `store_every` (default 1 s, at most `max_age`)
/// wins a compare-exchange, clones the response and takes the entry's mutex; every other
/// success takes no lock and clones nothing. So the cached response may be up to
/// `store_every` older than the newest success; its age is measured from the call that
/// produced it, and it is served only while younger than `max_age`.
///
/// Choose keys of bounded cardinality (route, provider, tenant, a normalised query): like a
/// per-key breaker, a key not yet in a full table takes the registry's insertion mutex and
/// scans it for an idle slot, and is simply not cached when none is idle.
pub struct CacheFallback<K, Res> {
    key: K,
    table: Keyed<Entry<Res>>,
    hasher: RandomState,
    epoch: Instant,
    pub(crate) max_age: Duration,
    pub(crate) store_every: Duration,
    _res: PhantomData<fn() -> Res>,
}

impl<K, Res> fmt::Debug for CacheFallback<K, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheFallback")
            .field("keys", &self.table.len())
            .field("max_age", &self.max_age)
            .field("store_every", &self.store_every)
            .finish()
    }
}

impl<K, Res> CacheFallback<K, Res> {
    pub(crate) fn new(key: K, capacity: usize, max_age: Duration) -> Self {
        Self {
            key,
            table: Keyed::new(capacity, max_age),
            hasher: RandomState::new(),
            epoch: Instant::now(),
            max_age,
            store_every: Duration::from_secs(1).min(max_age),
            _res: PhantomData,
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
    }

    /// Keys cached now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Send + Sync + 'static, Res: Send + 'static> StrategyInfo for CacheFallback<K, Res> {
    fn kind(&self) -> &'static str {
        "cache"
    }

    fn status(&self, section: StatusSection, labels: &[(&str, &str)]) -> StatusSection {
        section.info("max_age_ms", self.max_age.as_millis()).gauge(
            "tower_pressure_fallback_cache_keys",
            "Keys with a slot in the fallback cache.",
            labels,
            self.table.len() as f64,
        )
    }
}

impl<S, K, Req> Strategy<S, Req> for CacheFallback<K, S::Response>
where
    S: Service<Req>,
    S::Response: Clone + Send + 'static,
    K: KeyExtractor<Req> + Send + Sync + 'static,
{
    type Kept = CacheKept<S::Response>;
    type Future = Ready<Result<S::Response, BoxError>>;

    #[inline]
    fn keep(&self, req: &Req, _: &S) -> Self::Kept {
        let at = crate::clock::call_time();
        let entry = self.key.key(req).and_then(|key| {
            let h = self.hasher.hash_one(&*key);
            self.table
                .get(&key, || self.nanos(at), |_| h, |_, h| Entry::new(h))
                .map(|e| (Arc::clone(e), h))
        });
        CacheKept { entry, at }
    }

    #[inline]
    fn succeeded(&self, kept: Self::Kept, res: &S::Response) {
        let Some((entry, h)) = kept.entry else { return };
        let now = self.nanos(kept.at) + 1;
        let last = entry.claimed.load(Ordering::Relaxed);
        let every = self.store_every.as_nanos().min(u64::MAX as u128) as u64;
        if last != 0 && now.saturating_sub(last) < every {
            return; // sampled out: no lock, no clone
        }
        // Relaxed: the gate only elects one storer; the response is published by the mutex.
        if entry
            .claimed
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another success of this key stores
        }
        let mut s = entry.lock();
        if s.key_hash == h {
            // Keep the newer of two racing stores.
            if s.value.as_ref().is_none_or(|(_, t)| *t <= kept.at) {
                s.value = Some((res.clone(), kept.at));
            }
        }
    }

    fn start(
        &self,
        kept: Self::Kept,
        _: &BoxError,
    ) -> Result<(Self::Future, Option<Duration>), &'static str> {
        let Some((entry, h)) = kept.entry else {
            return Err("no cache key");
        };
        let s = entry.lock();
        if s.key_hash != h {
            return Err("cache miss");
        }
        let Some((res, t)) = &s.value else {
            return Err("cache miss");
        };
        let age = Instant::now().saturating_duration_since(*t);
        if age >= self.max_age {
            return Err("cache entry too old");
        }
        Ok((ready(Ok(res.clone())), Some(age)))
    }
}

// ---------------------------------------------------------------------------------------------
// Queue: wait out a rate limit, then try the primary once more.

/// Waits the failure's `Retry-After`, then calls the primary once more
/// ([`FallbackLayer::queue`](super::FallbackLayer::queue)).
///
/// Applies only when the failure carries a retry-after (see
/// [`retry_after`]) no longer than `max_wait` and ending before the
/// request's [`Constraints`] deadline, and while fewer than `max_queued` requests wait:
/// otherwise it declines at once and the original failure goes on (to the next strategy, or
/// to the caller). The waiting count is an atomic reservation (`fetch_add`, undone when over
/// the bound) released when the wait ends or the future is dropped.
///
/// # Cost
///
/// Like tower's `Retry`, every request keeps a clone of itself and of the primary service
/// while the primary runs (`Req: Clone`, `S: Clone`).
#[derive(Debug, Clone)]
pub struct QueueFallback {
    pub(crate) max_wait: Duration,
    pub(crate) max_queued: usize,
    pub(crate) queued: Arc<AtomicUsize>,
}

impl QueueFallback {
    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl StrategyInfo for QueueFallback {
    fn kind(&self) -> &'static str {
        "queue"
    }

    fn status(&self, section: StatusSection, labels: &[(&str, &str)]) -> StatusSection {
        section
            .info("max_queued", self.max_queued)
            .info("max_wait_ms", self.max_wait.as_millis())
            .gauge(
                "tower_pressure_fallback_queued",
                "Requests waiting out a rate limit before trying the primary again.",
                labels,
                self.queued() as f64,
            )
    }
}

/// A reserved place in the queue, released on drop.
#[derive(Debug)]
pub(crate) struct QueueSlot(Arc<AtomicUsize>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        // Relaxed: a counter bounding admissions; it publishes no other memory.
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S, Req> Strategy<S, Req> for QueueFallback
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone + HasExtensions,
{
    type Kept = (Req, S);
    type Future = QueueFuture<S, Req>;

    #[inline]
    fn keep(&self, req: &Req, primary: &S) -> (Req, S) {
        (req.clone(), primary.clone())
    }

    fn start(
        &self,
        (req, svc): (Req, S),
        failure: &BoxError,
    ) -> Result<(Self::Future, Option<Duration>), &'static str> {
        let Some(wait) = retry_after(failure) else {
            return Err("no retry-after");
        };
        if wait > self.max_wait {
            return Err("retry-after above max_wait");
        }
        // Saturating: `max_wait` may be as long as `Duration::MAX`.
        let wake = crate::clock::deadline(Instant::now(), wait);
        if let Some(deadline) = Constraints::from_request(&req).and_then(|c| c.deadline())
            && wake >= deadline
        {
            return Err("retry-after past the deadline");
        }
        // An atomic reservation: clones racing here cannot over-admit. Relaxed: see
        // `QueueSlot::drop`.
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err("queue full");
        }
        let slot = QueueSlot(Arc::clone(&self.queued));
        Ok((QueueFuture::new(wake, svc, req, slot), None))
    }
}
