//! A per-call timeout that costs nothing when the response is ready at once.
//!
//! [`TimeoutLayer`] fails a call with tower's own [`Elapsed`] error (so every mapping of it,
//! in [`rejection`](crate::rejection), the retry classifier and the breaker, applies
//! unchanged) when the response takes longer than the timeout. Unlike `tower::timeout`,
//! it neither reads the clock nor creates a timer in `call`:
//!
//! * the timer is armed only when the inner future first returns `Pending`, so a response
//!   that is ready on its first poll (a cache hit, a fast in-process service, a rejection by
//!   a layer inside) costs one poll and no timer;
//! * the timeout runs from the call time shared by the stack's layers (`crate::clock`: an
//!   outer timing layer already read it) when there is one, and otherwise from the first poll
//!   that finds the response not ready, which for a response future polled right after its
//!   call (the norm) is the same instant.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::timeout::TimeoutLayer;
//!
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_millis(100)))
//!     .service(service_fn(|slow: bool| async move {
//!         if slow {
//!             tokio::time::sleep(Duration::from_secs(1)).await;
//!         }
//!         Ok::<_, tower::BoxError>("done")
//!     }));
//! assert_eq!(svc.clone().oneshot(false).await.unwrap(), "done");
//! let err = svc.oneshot(true).await.unwrap_err();
//! assert!(err.is::<tower::timeout::error::Elapsed>());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::BoxError;
pub use tower::timeout::error::Elapsed;
use tower_layer::Layer;
use tower_service::Service;

/// Fails a call with [`Elapsed`] when its response takes longer than the timeout. See the
/// [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// A layer that allows each call `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// The timeout.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service built by [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with `timeout`.
    pub const fn new(inner: S, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
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

impl<S, Req> Service<Req> for Timeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            // Free inside a timing layer's call; otherwise fixed at the first `Pending`.
            called: crate::clock::scope_time(),
            inner: self.inner.call(req),
            timeout: self.timeout,
            sleep: None,
        }
    }
}

pin_project! {
    /// The response future of [`Timeout`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        called: Option<Instant>,
        timeout: Duration,
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("timeout", &self.timeout)
            .field("armed", &self.sleep.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(r) = this.inner.poll(cx) {
            return Poll::Ready(r.map_err(Into::into));
        }
        if this.sleep.is_none() {
            let from = this.called.unwrap_or_else(Instant::now);
            let deadline = crate::clock::deadline(from, *this.timeout);
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => {
                ready!(sleep.poll(cx));
                Poll::Ready(Err(Box::new(Elapsed::new())))
            }
            // Invariant: armed just above.
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{ServiceExt, service_fn};

    fn slow(
        d: Duration,
    ) -> impl Service<(), Response = (), Error = BoxError, Future: Send> + Clone {
        service_fn(move |()| async move {
            tokio::time::sleep(d).await;
            Ok::<_, BoxError>(())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_timeout_and_not_before() {
        let t0 = Instant::now();
        let svc = TimeoutLayer::new(Duration::from_millis(100)).layer(slow(Duration::from_secs(5)));
        let err = svc.oneshot(()).await.unwrap_err();
        assert!(err.is::<Elapsed>());
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_millis(102),
            "{waited:?}"
        );

        let svc =
            TimeoutLayer::new(Duration::from_millis(100)).layer(slow(Duration::from_millis(99)));
        svc.oneshot(()).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_timeout_never_fires_and_does_not_overflow() {
        let svc = TimeoutLayer::new(Duration::MAX).layer(slow(Duration::from_secs(3600)));
        svc.oneshot(()).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_response_arms_no_timer_and_inner_errors_pass_through() {
        let svc = TimeoutLayer::new(Duration::from_millis(1)).layer(service_fn(|fail: bool| {
            std::future::ready(if fail { Err("boom") } else { Ok(7) })
        }));
        let mut fut = std::pin::pin!(svc.clone().oneshot(false));
        let out = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        assert!(matches!(out, Poll::Ready(Ok(7))));
        let err = svc.oneshot(true).await.unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }

    #[tokio::test(start_paused = true)]
    async fn inside_a_timing_layer_it_runs_from_the_shared_call_time() {
        let mut svc =
            TimeoutLayer::new(Duration::from_millis(50)).layer(slow(Duration::from_secs(1)));
        svc.ready().await.unwrap();
        let scope = crate::clock::CallScope::enter();
        let t0 = scope.stamp().at;
        let fut = svc.call(());
        drop(scope);
        // Polled only 30 ms after the call: 20 ms remain.
        tokio::time::advance(Duration::from_millis(30)).await;
        let err = fut.await.unwrap_err();
        assert!(err.is::<Elapsed>());
        let at = Instant::now() - t0;
        assert!(
            at >= Duration::from_millis(50) && at < Duration::from_millis(52),
            "{at:?}"
        );
    }
}
