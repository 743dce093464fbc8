//! `[fallbacks]`: settings of the fallback strategies that a document can describe.
//!
//! A queue for rate-limited calls is fully described by the document. The other strategies
//! need code (a fallback service, a value, a cache key): build those with
//! [`FallbackLayer`] and take their numbers from here (`cache`).

use serde::{Deserialize, Serialize};

use super::error::ConfigFileError;
use super::units::HumanDuration;
use crate::event::EventBus;
use crate::fallback::FallbackLayer;
use crate::fallback::strategy::{CacheFallback, QueueFallback};

/// `[fallbacks.queue]`: wait out a rate limit's `Retry-After` and try again.
///
/// ```
/// use tower_pressure::config::QueueFallbackConfig;
/// assert_eq!(QueueFallbackConfig::default().max_queued, 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueFallbackConfig {
    /// Longest wait (default `"5s"`).
    pub max_wait: HumanDuration,
    /// Most requests waiting at once (default 64).
    pub max_queued: usize,
}

impl Default for QueueFallbackConfig {
    fn default() -> Self {
        Self {
            max_wait: HumanDuration::secs(5),
            max_queued: 64,
        }
    }
}

/// `[fallbacks.cache]`: serve the last good response.
///
/// ```
/// use tower_pressure::config::CacheFallbackConfig;
/// assert_eq!(CacheFallbackConfig::default().capacity, 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheFallbackConfig {
    /// Keys kept (default 1024).
    pub capacity: usize,
    /// Oldest response served (default `"5m"`).
    pub max_age: HumanDuration,
    /// Least time between two stores of one key (default `"1s"`).
    pub store_every: HumanDuration,
}

impl Default for CacheFallbackConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            max_age: HumanDuration::secs(300),
            store_every: HumanDuration::secs(1),
        }
    }
}

/// The `[fallbacks]` section.
///
/// ```
/// use tower_pressure::config::Config;
/// let c = Config::from_toml("[fallbacks.queue]\nmax_wait = \"2s\"\n")?;
/// let layer = c.fallbacks.queue_layer(Default::default())?.expect("configured");
/// assert_eq!(layer.name(), "queue");
/// # Ok::<(), tower_pressure::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FallbacksConfig {
    /// The queue fallback (default none).
    pub queue: Option<QueueFallbackConfig>,
    /// The cache fallback's settings (default none).
    pub cache: Option<CacheFallbackConfig>,
}

impl FallbacksConfig {
    /// The queue fallback layer, if configured.
    ///
    /// # Errors
    /// A zero `max_wait` or `max_queued`, with its path.
    pub fn queue_layer(
        &self,
        events: EventBus,
    ) -> Result<Option<FallbackLayer<QueueFallback>>, ConfigFileError> {
        self.queue
            .map(|q| {
                FallbackLayer::queue(q.max_wait.get(), q.max_queued)
                    .events(events)
                    .build()
                    .map_err(|e| ConfigFileError::from_builder("fallbacks.queue", e, &[]))
            })
            .transpose()
    }

    /// The cache fallback layer keyed by `key`, if configured.
    ///
    /// # Errors
    /// A zero `capacity`, `max_age` or `store_every`, with its path.
    ///
    /// ```
    /// use tower_pressure::config::Config;
    /// let c = Config::from_toml("[fallbacks.cache]\ncapacity = 10\n")?;
    /// let layer = c.fallbacks.cache_layer::<_, String>(|q: &String| Some(q.clone()), Default::default())?;
    /// assert!(layer.is_some());
    /// # Ok::<(), tower_pressure::config::ConfigFileError>(())
    /// ```
    pub fn cache_layer<K, Res>(
        &self,
        key: K,
        events: EventBus,
    ) -> Result<Option<FallbackLayer<CacheFallback<K, Res>>>, ConfigFileError> {
        self.cache
            .map(|c| {
                FallbackLayer::cache(key, c.capacity, c.max_age.get())
                    .store_every(c.store_every.get())
                    .events(events)
                    .build()
                    .map_err(|e| ConfigFileError::from_builder("fallbacks.cache", e, &[]))
            })
            .transpose()
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigFileError> {
        self.queue_layer(EventBus::default())?;
        self.cache_layer::<_, ()>(|_: &()| None::<String>, EventBus::default())?;
        Ok(())
    }
}
