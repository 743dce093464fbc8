//! GCRA (generic cell rate algorithm) math, as in governor: one `u64` per bucket.
//!
//! The bucket state is the *theoretical arrival time* (TAT) in nanoseconds since the layer's
//! epoch (a `tokio::time::Instant` taken when the layer was built). A request of `cost`
//! cells advances it by `cost * T`, where the emission interval `T = period / hard`. The
//! bucket's fill level at `now` is `TAT - now` (nanoseconds of debt): `hard` requests fill
//! exactly one `period`, so the tolerances are `soft * T`, `hard * T = period` and
//! `burst * T`. A request is admitted when its fill level *after* admission is within the
//! tolerance the caller allows; otherwise the state is left as it was and the caller learns
//! how long until it would fit (`retry_after`).
//!
//! The pure functions take time as an argument and are tested without a runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Tolerances of one limit, in nanoseconds of bucket debt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Emission interval `T` (nanoseconds per cell), at least 1.
    pub(crate) t: u64,
    pub(crate) soft_tol: u64,
    pub(crate) hard_tol: u64,
    pub(crate) burst_tol: u64,
}

/// Saturating `a * b / c` in 128-bit arithmetic.
fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    let v = a as u128 * b as u128 / (c.max(1) as u128);
    v.min(u64::MAX as u128) as u64
}

impl Gcra {
    /// `soft <= hard <= burst` cells per `period`; `hard > 0` (validated by the builder).
    pub(crate) fn new(soft: u64, hard: u64, burst: u64, period: Duration) -> Self {
        let p = period.as_nanos().min(u64::MAX as u128) as u64;
        let hard = hard.max(1);
        Self {
            t: (p / hard).max(1),
            soft_tol: mul_div(p, soft, hard),
            hard_tol: p,
            burst_tol: mul_div(p, burst.max(hard), hard),
        }
    }

    /// The fill level after admitting `cost` cells at `now` from state `tat`, and the new state.
    #[inline]
    pub(crate) fn after(&self, tat: u64, now: u64, cost: u64) -> (u64, u64) {
        let new_tat = tat.max(now).saturating_add(cost.saturating_mul(self.t));
        (new_tat - now, new_tat)
    }

    /// Atomically admits `cost` cells if the level after admission is at most `max_tol`.
    /// `Ok(level)` on admission, `Err(excess)` (nanoseconds until it would fit) otherwise.
    #[inline]
    pub(crate) fn acquire(
        &self,
        cell: &AtomicU64,
        now: u64,
        cost: u64,
        max_tol: u64,
    ) -> Result<u64, u64> {
        // Relaxed is enough: the TAT is the only datum guarded by this word and every update
        // is a compare-exchange on it, so updates are totally ordered by the CAS itself; no
        // other memory is published through it.
        let mut tat = cell.load(Ordering::Relaxed);
        loop {
            let (level, new_tat) = self.after(tat, now, cost);
            if level > max_tol {
                return Err(level - max_tol);
            }
            match cell.compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(level),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Adds `cost` cells unconditionally (usage reported after the fact may go into debt).
    pub(crate) fn charge(&self, cell: &AtomicU64, now: u64, cost: u64) -> u64 {
        // Relaxed: see `acquire`.
        let prev = cell
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(self.after(tat, now, cost).1)
            })
            .unwrap_or_else(|v| v);
        self.after(prev, now, cost).0
    }

    /// The current fill level (no admission).
    #[inline]
    pub(crate) fn level(&self, cell: &AtomicU64, now: u64) -> u64 {
        cell.load(Ordering::Relaxed).saturating_sub(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn tolerances() {
        let g = Gcra::new(5, 10, 15, Duration::from_secs(1));
        assert_eq!(g.t, S / 10);
        assert_eq!(g.soft_tol, S / 2);
        assert_eq!(g.hard_tol, S);
        assert_eq!(g.burst_tol, S + S / 2);
    }

    #[test]
    fn admits_hard_then_refuses_with_retry_after() {
        let g = Gcra::new(5, 10, 10, Duration::from_secs(1));
        let c = AtomicU64::new(0);
        let now = 10 * S;
        for i in 1..=10 {
            assert_eq!(g.acquire(&c, now, 1, g.hard_tol), Ok(i * S / 10));
        }
        // The 11th would be 100 ms over.
        assert_eq!(g.acquire(&c, now, 1, g.hard_tol), Err(S / 10));
        // 100 ms later one cell has drained.
        assert!(g.acquire(&c, now + S / 10, 1, g.hard_tol).is_ok());
        assert!(g.acquire(&c, now + S / 10, 1, g.hard_tol).is_err());
    }

    #[test]
    fn burst_tolerance_admits_more_and_idle_refills() {
        let g = Gcra::new(5, 10, 15, Duration::from_secs(1));
        let c = AtomicU64::new(0);
        let n = (0..100)
            .filter(|_| g.acquire(&c, S, 1, g.burst_tol).is_ok())
            .count();
        assert_eq!(n, 15);
        assert_eq!(g.level(&c, S), g.burst_tol);
        assert_eq!(g.level(&c, 3 * S), 0);
    }

    #[test]
    fn charge_goes_into_debt() {
        let g = Gcra::new(50, 100, 100, Duration::from_secs(1));
        let c = AtomicU64::new(0);
        assert_eq!(g.charge(&c, S, 300), 3 * S);
        assert_eq!(g.level(&c, 2 * S), 2 * S);
        assert_eq!(g.level(&c, 4 * S), 0);
    }

    proptest::proptest! {
        /// Over any arrival pattern, admissions in any interval of length `d` never exceed
        /// `burst + d / T` (the GCRA guarantee).
        #[test]
        fn never_over_admits(gaps in proptest::collection::vec(0u64..50_000_000, 1..300),
                             hard in 1u64..50, extra in 0u64..20) {
            let g = Gcra::new(hard, hard, hard + extra, Duration::from_secs(1));
            let c = AtomicU64::new(0);
            let mut now = S;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += gap;
                if g.acquire(&c, now, 1, g.burst_tol).is_ok() {
                    admitted.push(now);
                }
            }
            for (i, &start) in admitted.iter().enumerate() {
                for (j, &end) in admitted.iter().enumerate().skip(i) {
                    let n = (j - i + 1) as u64;
                    proptest::prop_assert!(n <= hard + extra + (end - start) / g.t);
                }
            }
        }
    }
}
