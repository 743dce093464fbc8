//! The pure part of a health checker: Envoy's thresholds as a small state machine that takes
//! check results and says when the state changes. No clock, no runtime.

use crate::event::HealthState;

/// Counts consecutive results and applies the thresholds.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    state: HealthState,
    consecutive_failures: u32,
    consecutive_successes: u32,
    unhealthy_threshold: u32,
    healthy_threshold: u32,
}

impl Tracker {
    /// Both thresholds are at least 1 (the builder validates them).
    pub(crate) fn new(unhealthy_threshold: u32, healthy_threshold: u32) -> Self {
        Self {
            state: HealthState::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            unhealthy_threshold: unhealthy_threshold.max(1),
            healthy_threshold: healthy_threshold.max(1),
        }
    }

    pub(crate) fn state(&self) -> HealthState {
        self.state
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub(crate) fn consecutive_successes(&self) -> u32 {
        self.consecutive_successes
    }

    /// Records one check; returns the previous state when the state changed.
    ///
    /// * From `Unknown` one passing check is enough to be `Healthy` (as Envoy does at start),
    ///   and `unhealthy_threshold` failures make it `Unhealthy`.
    /// * `Healthy` -> `Unhealthy` after `unhealthy_threshold` consecutive failures.
    /// * `Unhealthy` -> `Healthy` after `healthy_threshold` consecutive passes.
    pub(crate) fn record(&mut self, pass: bool) -> Option<HealthState> {
        if pass {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
        } else {
            self.consecutive_successes = 0;
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        }
        let next = match self.state {
            HealthState::Unknown if pass => HealthState::Healthy,
            HealthState::Unhealthy
                if pass && self.consecutive_successes >= self.healthy_threshold =>
            {
                HealthState::Healthy
            }
            HealthState::Unknown | HealthState::Healthy
                if !pass && self.consecutive_failures >= self.unhealthy_threshold =>
            {
                HealthState::Unhealthy
            }
            s => s,
        };
        if next == self.state {
            return None;
        }
        let from = self.state;
        self.state = next;
        Some(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_thresholds() {
        let mut t = Tracker::new(3, 2);
        assert_eq!(t.record(true), Some(HealthState::Unknown));
        assert_eq!(t.state(), HealthState::Healthy);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a pass resets the failure count");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(HealthState::Healthy));
        assert_eq!(t.state(), HealthState::Unhealthy);
        assert_eq!(t.consecutive_failures(), 3);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None, "a failure resets the pass count");
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(HealthState::Unhealthy));
        assert_eq!(t.consecutive_successes(), 2);
    }

    #[test]
    fn unknown_goes_unhealthy_after_threshold() {
        let mut t = Tracker::new(2, 5);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(HealthState::Unknown));
        assert_eq!(t.state(), HealthState::Unhealthy);
    }

    #[test]
    fn zero_thresholds_are_one() {
        let mut t = Tracker::new(0, 0);
        assert!(t.record(false).is_some());
        assert!(t.record(true).is_some());
    }
}
