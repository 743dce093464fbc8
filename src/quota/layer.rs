//! The [`QuotaLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::config::QuotaLayerBuilder;
use super::handle::QuotaHandle;
use super::service::Quota;
use super::state::Shared;
use crate::error::ConfigError;

/// Per-tenant quotas; the state is created by [`build`](QuotaLayerBuilder::build), so every
/// service this layer makes (every axum route) shares it.
#[derive(Debug, Clone)]
pub struct QuotaLayer<K> {
    key: K,
    shared: Arc<Shared>,
}

impl QuotaLayer<()> {
    /// A builder.
    pub fn builder() -> QuotaLayerBuilder {
        QuotaLayerBuilder::default()
    }
}

impl QuotaLayerBuilder {
    /// Validates the configuration and builds the layer with tenant key extractor `key`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the offending field; with a Redis store, also when no tokio
    /// runtime is running (the store's background task is spawned here).
    pub fn build<K>(self, key: K) -> Result<QuotaLayer<K>, ConfigError> {
        let shared = Arc::new(Shared::new(self.build_config()?)?);
        #[cfg(feature = "redis")]
        if let super::store::Store::Fleet(f) = &shared.store {
            f.start(Arc::downgrade(&shared))?;
        }
        Ok(QuotaLayer { key, shared })
    }
}

impl<K> QuotaLayer<K> {
    /// A handle on the shared state: usage, reports, recommendations, status.
    pub fn handle(&self) -> QuotaHandle {
        QuotaHandle::new(self.shared.clone())
    }
}

impl<S, K: Clone> Layer<S> for QuotaLayer<K> {
    type Service = Quota<S, K>;
    fn layer(&self, inner: S) -> Self::Service {
        Quota::new(inner, self.key.clone(), self.shared.clone())
    }
}
