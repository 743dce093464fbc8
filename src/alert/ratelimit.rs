//! Rate limiting per (rule, key), with counts of what was suppressed.
//!
//! Pure logic: time is an argument. The first alert of a (rule, key) passes; further alerts
//! within the rule's interval are suppressed and counted; the next alert after the interval
//! passes carrying that count ("12 more since last report"), and the count restarts.
//!
//! The table is bounded: when it is full, entries whose interval has elapsed are removed
//! (they would pass anyway), and failing that the least recently delivered entry is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// What the rate limiter decided for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Deliver it; `suppressed` alerts of the same (rule, key) were held back since the
    /// previous delivery.
    Deliver {
        /// Alerts suppressed since the previous delivery.
        suppressed: u64,
    },
    /// Suppress it (counted).
    Suppress,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    last: Instant,
    interval: Duration,
    suppressed: u64,
}

/// Per-(rule, key) rate limiter. See the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_pressure::alert::{Decision, RateLimiter};
///
/// let mut rl = RateLimiter::new(1024);
/// let t0 = Instant::now();
/// let five = Duration::from_secs(300);
/// assert_eq!(rl.check("breaker", Some("db"), five, t0), Decision::Deliver { suppressed: 0 });
/// assert_eq!(rl.check("breaker", Some("db"), five, t0 + Duration::from_secs(10)), Decision::Suppress);
/// assert_eq!(rl.check("breaker", Some("db"), five, t0 + five), Decision::Deliver { suppressed: 1 });
/// ```
#[derive(Debug)]
pub struct RateLimiter {
    entries: HashMap<(Arc<str>, Option<Arc<str>>), Entry>,
    max_entries: usize,
    suppressed_total: u64,
}

impl RateLimiter {
    /// A limiter remembering at most `max_entries` (rule, key) pairs (at least 1).
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_entries: max_entries.max(1),
            suppressed_total: 0,
        }
    }

    /// Decides for an alert of `rule` and `key` at `now`; `interval` zero never suppresses.
    pub fn check(
        &mut self,
        rule: &str,
        key: Option<&str>,
        interval: Duration,
        now: Instant,
    ) -> Decision {
        if interval.is_zero() {
            return Decision::Deliver { suppressed: 0 };
        }
        // Look up without allocating the key.
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|((r, k), _)| &**r == rule && k.as_deref() == key)
            .map(|(_, e)| e)
        {
            e.interval = interval;
            if now.saturating_duration_since(e.last) >= interval {
                let suppressed = e.suppressed;
                e.last = now;
                e.suppressed = 0;
                return Decision::Deliver { suppressed };
            }
            e.suppressed += 1;
            self.suppressed_total += 1;
            return Decision::Suppress;
        }
        if self.entries.len() >= self.max_entries {
            self.evict(now);
        }
        self.entries.insert(
            (Arc::from(rule), key.map(Arc::from)),
            Entry {
                last: now,
                interval,
                suppressed: 0,
            },
        );
        Decision::Deliver { suppressed: 0 }
    }

    fn evict(&mut self, now: Instant) {
        // Entries with no suppressed count whose interval elapsed carry no information.
        self.entries
            .retain(|_, e| e.suppressed > 0 || now.saturating_duration_since(e.last) < e.interval);
        if self.entries.len() >= self.max_entries {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
    }

    /// Alerts suppressed since the limiter was created.
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total
    }

    /// Alerts currently held back (suppressed, not yet reported with a later alert).
    pub fn pending_suppressed(&self) -> u64 {
        self.entries.values().map(|e| e.suppressed).sum()
    }

    /// The number of (rule, key) pairs remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn suppresses_within_interval_and_reports_count() {
        let mut rl = RateLimiter::new(16);
        let t0 = Instant::now();
        assert_eq!(
            rl.check("r", Some("k"), S(300), t0),
            Decision::Deliver { suppressed: 0 }
        );
        for i in 1..=12 {
            assert_eq!(
                rl.check("r", Some("k"), S(300), t0 + S(i)),
                Decision::Suppress
            );
        }
        // Other keys and rules are independent.
        assert_eq!(
            rl.check("r", Some("other"), S(300), t0),
            Decision::Deliver { suppressed: 0 }
        );
        assert_eq!(
            rl.check("q", Some("k"), S(300), t0),
            Decision::Deliver { suppressed: 0 }
        );
        assert_eq!(
            rl.check("r", None, S(300), t0),
            Decision::Deliver { suppressed: 0 }
        );
        assert_eq!(rl.pending_suppressed(), 12);
        assert_eq!(
            rl.check("r", Some("k"), S(300), t0 + S(300)),
            Decision::Deliver { suppressed: 12 }
        );
        assert_eq!(
            rl.check("r", Some("k"), S(300), t0 + S(301)),
            Decision::Suppress
        );
        assert_eq!(rl.suppressed_total(), 13);
    }

    #[test]
    fn zero_interval_never_suppresses() {
        let mut rl = RateLimiter::new(4);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(
                rl.check("r", None, Duration::ZERO, t0),
                Decision::Deliver { suppressed: 0 }
            );
        }
        assert!(rl.is_empty());
    }

    #[test]
    fn bounded() {
        let mut rl = RateLimiter::new(8);
        let t0 = Instant::now();
        for i in 0..100u64 {
            let k = i.to_string();
            rl.check("r", Some(&k), S(300), t0 + Duration::from_millis(i));
            assert!(rl.len() <= 8);
        }
    }
}
