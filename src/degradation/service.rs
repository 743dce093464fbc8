use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::shared::Shared;
use crate::constraints::Constraints;
use crate::constraints::HasExtensions;
use crate::pressure::PressureLevel;
use crate::priority::Priority;

/// Marker: no response header (the default).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct NoHeader;

/// The service built by [`DegradationLayer`](super::DegradationLayer).
#[derive(Debug, Clone)]
pub struct Degradation<S, H = NoHeader> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) _header: H,
}

impl<S, H> Degradation<S, H> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl Shared {
    /// Inserts the constraints (and opt-in extensions) for the current level; returns the level.
    #[inline]
    pub(crate) fn constrain<R: HasExtensions + ?Sized>(
        &self,
        req: &mut R,
    ) -> (PressureLevel, crate::pressure::Signal) {
        let (level, signal, value) = self.monitor.level_and_cause();
        let mut c = self.policy.constraints(level);
        c.cause = crate::constraints::Cause { signal, value };
        if let Some(p) = req.extensions().get::<Priority>() {
            c.priority = *p;
        }
        if let Some(d) = self.deadline {
            // The request's call time, shared with the other layers (`crate::clock`).
            c.deadline = Some(crate::clock::deadline(crate::clock::call_time(), d));
        }
        // A deadline already on the request (set by the caller, or by a stack upstream) is
        // kept when it is earlier: degradation only ever tightens it.
        if let Some(prev) = req.constraints().and_then(Constraints::deadline) {
            c.deadline = Some(c.deadline.map_or(prev, |d| d.min(prev)));
        }
        req.set_constraints(c);
        self.policy.apply_extensions(level, req.extensions_mut());
        (level, signal)
    }
}

impl<S, Req> Service<Req> for Degradation<S, NoHeader>
where
    S: Service<Req>,
    Req: HasExtensions,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Req) -> Self::Future {
        self.shared.constrain(&mut req);
        self.inner.call(req)
    }
}

#[cfg(feature = "http")]
pub use http_header::{DegradedHeader, HeaderFuture};

#[cfg(feature = "http")]
mod http_header {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;

    use http::HeaderValue;
    use pin_project_lite::pin_project;

    /// Marker: add the `x-degraded` response header while degraded.
    #[derive(Debug, Clone, Copy, Default)]
    #[non_exhaustive]
    pub struct DegradedHeader;

    pin_project! {
        /// Response future that adds the `x-degraded` header.
        #[derive(Debug)]
        pub struct HeaderFuture<F> {
            #[pin]
            inner: F,
            value: Option<HeaderValue>,
        }
    }

    impl<F, B, E> Future for HeaderFuture<F>
    where
        F: Future<Output = Result<http::Response<B>, E>>,
    {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            let mut res = std::task::ready!(this.inner.poll(cx));
            if let (Ok(r), Some(v)) = (res.as_mut(), this.value.take()) {
                r.headers_mut()
                    .insert(http::HeaderName::from_static("x-degraded"), v);
            }
            Poll::Ready(res)
        }
    }

    impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Degradation<S, DegradedHeader>
    where
        S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = HeaderFuture<S::Future>;

        #[inline]
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
            let (level, signal) = self.shared.constrain(&mut req);
            let value = if level > PressureLevel::Normal {
                let name = self.shared.monitor.signal_name(signal);
                // Signal names are ours or user gauge names; anything not valid in a header
                // value is dropped from the header rather than failing the request.
                HeaderValue::try_from(format!("level={level}; cause={name}"))
                    .or_else(|_| HeaderValue::try_from(format!("level={level}")))
                    .ok()
            } else {
                None
            };
            HeaderFuture {
                inner: self.inner.call(req),
                value,
            }
        }
    }
}
