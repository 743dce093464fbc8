//! The [`Quota`] service.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::constraints::Constraints;
use crate::constraints::HasExtensions;

use super::future::ResponseFuture;
use super::key::TenantKey;
use super::state::Shared;
use super::usage::QuotaUsage;

/// Enforces per-tenant quotas in front of `S`; built by [`QuotaLayer`](super::QuotaLayer).
#[derive(Debug, Clone)]
pub struct Quota<S, K> {
    inner: S,
    key: K,
    shared: Arc<Shared>,
}

impl<S, K> Quota<S, K> {
    pub(crate) fn new(inner: S, key: K, shared: Arc<Shared>) -> Self {
        Self { inner, key, shared }
    }
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Consumes the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Merges `c` into `into`: the stricter value of each field wins.
fn merge(into: Option<Constraints>, c: Constraints) -> Constraints {
    let Some(mut m) = into else { return c };
    m.level = m.level.max(c.level);
    m.entity_limit_factor = m.entity_limit_factor.min(c.entity_limit_factor);
    m.embedding_dimensions_factor = m
        .embedding_dimensions_factor
        .min(c.embedding_dimensions_factor);
    m.skip_optional |= c.skip_optional;
    m.skip_expensive |= c.skip_expensive;
    m.use_simplified |= c.use_simplified;
    m
}

impl<S, K, Req> Service<Req> for Quota<S, K>
where
    S: Service<Req>,
    S::Error: Into<tower::BoxError>,
    K: TenantKey<Req>,
    Req: HasExtensions,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let now = tokio::time::Instant::now();
        let constraints = Constraints::from_request(&req);
        let deadline = constraints.and_then(|c| c.deadline());
        let admitted = {
            let key = self.key.tenant(&req);
            let key = key.as_deref().unwrap_or(&self.shared.cfg.default_tenant);
            self.shared.admit(key, now, deadline)
        };
        match admitted {
            Err(e) => ResponseFuture::rejected(e),
            Ok(a) => {
                let ext = req.extensions_mut();
                if let Some(s) = a.status {
                    ext.insert(s);
                }
                if let Some(level) = a.degrade {
                    ext.insert(merge(constraints, Constraints::for_level(level)));
                }
                if a.units {
                    ext.insert(QuotaUsage::new(a.permit.0.clone(), self.shared.clone()));
                }
                let sleep = (!a.delay.is_zero())
                    .then(|| tokio::time::sleep_until(crate::clock::deadline(now, a.delay)));
                ResponseFuture::called(self.inner.call(req), a.permit, sleep)
            }
        }
    }
}
