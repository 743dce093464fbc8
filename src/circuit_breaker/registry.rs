//! Per-key breakers in a bounded, lock-free-to-read registry.
//!
//! The table is the crate's shared [`Keyed`](crate::keyed::Keyed) registry (fixed
//! open-addressing table allocated when the layer is built, randomly keyed SipHash, no lock
//! to find an existing key, insertion mutex once per new key). When `max_keys` are in use a
//! new key re-keys the least recently used breaker idle for at least `idle_timeout` with no
//! probe out ([`Core::busy`](super::state::Core::busy)); when no slot can be had the call uses the layer's default
//! breaker, so memory stays bounded whatever keys arrive.
//!
//! Keyed lookups read the clock once per call to keep `last_used` (stored at most once per
//! second per key).

use crate::sync::AtomicU64;
use std::sync::Arc;

use super::lane::Breaker;
use super::state::{Core, Now};
use crate::keyed::{Keyed, KeyedEntry};

pub use crate::keyed::{KeyExtractor, NoKey};

impl KeyedEntry for Breaker {
    type Init = ();

    fn last_used(&self) -> &AtomicU64 {
        &self.last_used
    }

    fn in_use(&self) -> bool {
        self.busy()
    }

    fn rekey(&self, key: Arc<str>, (): (), now: u64) {
        Core::rekey(self, key, now);
    }
}

/// The bounded per-key breaker table.
#[derive(Debug)]
pub(crate) struct Registry(Keyed<Breaker>);

impl Registry {
    pub(crate) fn new(max_keys: usize, idle: std::time::Duration) -> Self {
        Self(Keyed::new(max_keys, idle))
    }

    /// The breaker of `key`, creating it with `make` if there is room.
    #[inline]
    pub(crate) fn get(
        &self,
        key: &str,
        now: &mut Now,
        make: impl FnOnce(Arc<str>) -> Breaker,
    ) -> Option<&Arc<Breaker>> {
        self.0.get(key, || now.get(), |_| (), |k, ()| make(k))
    }

    /// The breaker of `key` if it exists (no insertion).
    pub(crate) fn find(&self, key: &str) -> Option<&Arc<Breaker>> {
        self.0.find(key)
    }

    /// Every keyed breaker.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Breaker>> {
        self.0.all()
    }
}
