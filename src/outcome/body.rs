//! The error of a request body too large to buffer for replay (feature `http`). Core, so
//! other layers can recognise it; re-exported by [`retry::http`](crate::retry::http).

use std::fmt;
use std::time::Duration;

/// A request body was larger than the replay buffer's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTooLarge {
    limit: usize,
}

impl BodyTooLarge {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
    /// Retrying will not help: `None`.
    pub fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body exceeds the replay buffer limit of {} bytes",
            self.limit
        )
    }
}

impl std::error::Error for BodyTooLarge {}
