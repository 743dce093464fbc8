//! HTTP: a body that holds the slot until its end, and the 503/429 mapping of refusals.

use http_body::Body;

use super::error::Overloaded;
use super::future::Finish;
use super::mode::BodyEnd;
use super::state::Permit;

/// A response body that holds the request's concurrency slot until the body ends (or is
/// dropped), and records the latency to its end; a body error counts as a drop when
/// `errors_as_drops` is set.
pub type PermitBody<B> = crate::body::GuardedBody<B, Permit>;

impl crate::body::sealed::Sealed for Permit {}

impl crate::body::BodyGuard for Permit {
    fn body_ended(mut self, errored: bool) {
        let as_drop = errored && self.errors_as_drops();
        self.finish(as_drop);
    }
}

impl<B: Body> Finish<http::Response<B>> for BodyEnd {
    type Output = http::Response<PermitBody<B>>;
    fn finish(res: http::Response<B>, mut permit: Permit) -> Self::Output {
        let end = res.body().is_end_stream();
        let permit = if end {
            permit.finish(false);
            None
        } else {
            Some(permit)
        };
        res.map(|inner| PermitBody::new(inner, permit))
    }
}

/// The `Retry-After` header value for `d`: whole seconds, rounded up, at least 1.
///
/// ```
/// use std::time::Duration;
/// use tower_pressure::concurrency::retry_after_value;
/// assert_eq!(retry_after_value(Duration::from_millis(1500)), "2");
/// assert_eq!(retry_after_value(Duration::ZERO), "1");
/// ```
pub fn retry_after_value(d: std::time::Duration) -> http::HeaderValue {
    http::HeaderValue::from(crate::outcome::pushback::retry_after_secs(d))
}

impl Overloaded {
    /// The HTTP response for this refusal: 503 (or 429 when configured with
    /// `too_many_requests`), `Retry-After`, and the reason as a plain-text body.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use tower::{BoxError, ServiceExt, service_fn};
    /// use tower_pressure::concurrency::{AdaptiveConcurrencyLayer, Overloaded, PressurePolicy};
    /// use tower_pressure::{Priority, pressure::PressureMonitor};
    /// use tower::Layer;
    ///
    /// let (monitor, manual) = PressureMonitor::manual();
    /// let layer = AdaptiveConcurrencyLayer::new(monitor.clone());
    /// let svc = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// }));
    /// manual.set(96.0); // Emergency: only Critical requests pass
    /// monitor.sample_now();
    /// let err: BoxError = svc.oneshot(http::Request::new(())).await.unwrap_err();
    /// let res = err.downcast_ref::<Overloaded>().unwrap().to_response::<String>();
    /// assert_eq!(res.status(), 503);
    /// assert_eq!(res.headers()["retry-after"], "1");
    /// # }
    /// ```
    pub fn to_response<B: From<String>>(&self) -> http::Response<B> {
        let mut res = http::Response::new(B::from(self.to_string()));
        *res.status_mut() = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE);
        res.headers_mut().insert(
            http::header::RETRY_AFTER,
            retry_after_value(self.retry_after),
        );
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    }
}

/// Maps a boxed middleware error to a response when it is an [`Overloaded`]: for axum's
/// `HandleErrorLayer` (`None` means the error is someone else's).
pub fn overloaded_response<B: From<String>>(err: &tower::BoxError) -> Option<http::Response<B>> {
    err.downcast_ref::<Overloaded>()
        .map(Overloaded::to_response)
}
