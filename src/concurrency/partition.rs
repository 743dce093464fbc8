//! Guaranteed shares per priority class (Netflix's partitioned limiter), and the packed
//! in-flight word the admission path reserves from.
//!
//! # Guaranteed shares
//!
//! A class given a share `pct` may always run `ceil(limit x pct)` requests, *even when the
//! global limit is reached*; below the global limit shares change nothing (a class may use
//! any free capacity). So a burst of `Low` requests cannot starve `Critical` ones of their
//! share, and the total in flight stays below `limit + sum of shares`.
//!
//! # The in-flight word
//!
//! ```text
//!  63        48 47        32 31        16 15         0
//! +------------+------------+------------+------------+
//! |  Critical  |    High    |   Normal   |    Low     |   requests in flight per class
//! +------------+------------+------------+------------+
//! ```
//!
//! One `AtomicU64` holds the in-flight count of every class in a 16-bit lane; the total is
//! the sum of the lanes. Admission is one compare-exchange that adds 1 to the class's lane
//! only if the total (and the class's lane, for a share) allow it, so per-class and global
//! counts can never disagree and clones of the service can never over-admit. Release is one
//! `fetch_sub` of the lane. Limits are capped at 16 383 so four full lanes cannot overflow.

use crate::error::{ConfigError, check_range};
use crate::priority::Priority;

/// The largest limit the packed word supports.
pub const MAX_LIMIT: u32 = (1 << 14) - 1;

/// The lane increment of a class.
#[inline]
pub(crate) const fn lane(p: Priority) -> u64 {
    1 << (16 * p.index() as u32)
}

/// In-flight count of `p` in the packed word.
#[inline]
pub(crate) const fn class_count(word: u64, p: Priority) -> u32 {
    ((word >> (16 * p.index() as u32)) & 0xffff) as u32
}

/// Total in flight: the sum of the four lanes.
#[inline]
pub(crate) const fn total(word: u64) -> u32 {
    ((word & 0xffff) + ((word >> 16) & 0xffff) + ((word >> 32) & 0xffff) + (word >> 48)) as u32
}

/// Guaranteed shares per class, as fractions of the limit. Defaults to none.
///
/// ```
/// use tower_pressure::{Priority, concurrency::Shares};
/// let s = Shares::none().with(Priority::Critical, 0.2).unwrap();
/// assert_eq!(s.guaranteed(Priority::Critical, 42), 9); // ceil(42 * 0.2)
/// assert_eq!(s.guaranteed(Priority::Low, 42), 0);
/// assert!(Shares::none().with(Priority::High, 0.7).unwrap().with(Priority::Low, 0.5).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Shares {
    pct: [f64; 4],
}

impl Shares {
    /// No guaranteed shares.
    pub const fn none() -> Self {
        Self { pct: [0.0; 4] }
    }

    /// Guarantees `pct` (in `0..=1`) of the limit to `class`.
    ///
    /// # Errors
    /// When `pct` is outside `0..=1` or the shares would sum above 1.
    pub fn with(mut self, class: Priority, pct: f64) -> Result<Self, ConfigError> {
        let field = format!("shares.{class}");
        check_range(&field, pct, 0.0, 1.0)?;
        self.pct[class.index()] = pct;
        let sum: f64 = self.pct.iter().sum();
        if sum > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                field,
                pct,
                format!("shares sum to {sum}, above 1"),
            ));
        }
        Ok(self)
    }

    /// The share of `class`.
    pub fn share(&self, class: Priority) -> f64 {
        self.pct[class.index()]
    }

    /// `true` when any class has a share.
    pub fn any(&self) -> bool {
        self.pct.iter().any(|p| *p > 0.0)
    }

    /// `ceil(limit x share)`: requests of `class` admitted even at the global limit.
    pub fn guaranteed(&self, class: Priority, limit: u32) -> u32 {
        let p = self.pct[class.index()];
        if p <= 0.0 {
            0
        } else {
            (f64::from(limit) * p).ceil() as u32
        }
    }
}

/// The reservation rule on a snapshot of the word: `Some(new word)` when `class` may take
/// one more slot under `limit`, else `None`. `guaranteed` answers the class's guaranteed
/// share at this limit (`Shares::guaranteed`, precomputed when the limit changes, so
/// admission does no float arithmetic); it is only asked at the limit.
#[inline]
pub(crate) fn try_reserve(
    word: u64,
    class: Priority,
    limit: u32,
    guaranteed: impl FnOnce() -> u32,
) -> Option<u64> {
    if total(word) < limit {
        return Some(word + lane(class));
    }
    let own = class_count(word, class);
    if own < 0xffff && own < guaranteed() {
        return Some(word + lane(class));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use Priority::*;

    #[test]
    fn lanes_pack_and_sum() {
        let w = lane(Low) * 3 + lane(Normal) * 2 + lane(High) + lane(Critical) * 7;
        assert_eq!(total(w), 13);
        assert_eq!(class_count(w, Critical), 7);
        assert_eq!(class_count(w, Normal), 2);
        assert_eq!(total(w - lane(Critical)), 12);
    }

    #[test]
    fn shares_only_apply_at_the_limit() {
        let s = Shares::none().with(Critical, 0.25).unwrap();
        let g = |class| move || s.guaranteed(class, 10);
        // Below the limit anyone goes.
        assert!(try_reserve(lane(Low) * 9, Low, 10, g(Low)).is_some());
        // At the limit: Low refused, Critical gets ceil(10 * 0.25) = 3 slots.
        let mut w = lane(Low) * 10;
        assert!(try_reserve(w, Low, 10, g(Low)).is_none());
        for _ in 0..3 {
            w = try_reserve(w, Critical, 10, g(Critical)).unwrap();
        }
        assert!(try_reserve(w, Critical, 10, g(Critical)).is_none());
        assert_eq!(total(w), 13);
    }

    #[test]
    fn shares_validation() {
        assert_eq!(
            Shares::none().with(High, 1.5).unwrap_err().field(),
            "shares.high"
        );
        let e = Shares::none()
            .with(High, 0.6)
            .unwrap()
            .with(Critical, 0.6)
            .unwrap_err();
        assert_eq!(e.field(), "shares.critical");
    }
}
