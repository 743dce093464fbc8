//! The response future of [`ProviderLimitsService`](super::ProviderLimitsService).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::Shared;
use crate::quota::QuotaUsage;

type Observe = Option<(Arc<Shared>, usize, Option<QuotaUsage>)>;

pin_project! {
    /// Reads the response head's rate-limit headers when it arrives.
    ///
    /// ```
    /// fn is_future<F: std::future::Future>() {}
    /// is_future::<tower_pressure::provider_limits::ResponseFuture<std::future::Ready<Result<http::Response<()>, ()>>>>();
    /// ```
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        observe: Observe,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, observe: Observe) -> Self {
        Self { inner, observe }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let (Ok(res), Some((shared, i, quota))) = (&out, this.observe.take()) {
            shared.observe(i, res.headers(), quota.as_ref());
        }
        Poll::Ready(out)
    }
}
