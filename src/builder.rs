//! [`ServiceBuilderExt`]: one `ServiceBuilder` method per layer of the crate.

use tower::ServiceBuilder;
use tower_layer::Stack;

use crate::alert::AlertLayer;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::concurrency::AdaptiveConcurrencyLayer;
use crate::degradation::DegradationLayer;
use crate::retry::RetryLayer;

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Extension methods on [`tower::ServiceBuilder`] for the crate's layers, in the style of
/// tower-http's `ServiceBuilderExt`. Sealed: only `ServiceBuilder` implements it.
///
/// Add a [`RetryLayer`] with [`retries`](ServiceBuilderExt::retries): tower's
/// `ServiceBuilder` has an inherent `retry` method, which wins over
/// [`retry`](ServiceBuilderExt::retry) in method-call syntax (see its docs).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_pressure::ServiceBuilderExt;
/// use tower_pressure::circuit_breaker::CircuitBreakerLayer;
/// use tower_pressure::degradation::DegradationLayer;
/// use tower_pressure::pressure::PressureMonitor;
/// use tower_pressure::retry::RetryLayer;
///
/// let (monitor, _) = PressureMonitor::manual();
/// let client = ServiceBuilder::new()
///     .degradation(DegradationLayer::new(monitor.clone()))
///     .retries(RetryLayer::new(monitor.clone()))
///     .circuit_breaker(CircuitBreakerLayer::builder().monitor(monitor).build()?)
///     .service(service_fn(|req: http::Request<()>| async move {
///         Ok::<_, tower::BoxError>(req.uri().to_string())
///     }));
/// let req = http::Request::get("http://127.0.0.1/v1/models").body(())?;
/// assert_eq!(client.oneshot(req).await?, "http://127.0.0.1/v1/models");
/// # Ok(()) }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a [`CircuitBreakerLayer`].
    fn circuit_breaker<C, K>(
        self,
        layer: CircuitBreakerLayer<C, K>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C, K>, L>>;

    /// Adds a [`RetryLayer`]: the name to use in method-call syntax,
    /// `ServiceBuilder::new().retries(layer)` (see [`retry`](ServiceBuilderExt::retry) for why
    /// not `.retry(..)`).
    ///
    /// ```
    /// use tower::{ServiceBuilder, service_fn};
    /// use tower_pressure::ServiceBuilderExt;
    /// use tower_pressure::{pressure::PressureMonitor, retry::RetryLayer};
    ///
    /// let (monitor, _) = PressureMonitor::manual();
    /// let _client = ServiceBuilder::new()
    ///     .retries(RetryLayer::new(monitor))
    ///     .service(service_fn(|_: http::Request<()>| async { Ok::<_, tower::BoxError>(()) }));
    /// ```
    fn retries<C>(self, layer: RetryLayer<C>) -> ServiceBuilder<Stack<RetryLayer<C>, L>>;

    /// Adds a [`RetryLayer`], like [`retries`](ServiceBuilderExt::retries).
    ///
    /// Call it by path: tower's `ServiceBuilder` has an inherent `retry(policy)` method (for
    /// a `tower::retry::Policy`), and inherent methods win in method-call syntax, so
    /// `ServiceBuilder::new().retry(layer)` builds tower's `Retry` with the layer as its
    /// "policy", which is not a service. `ServiceBuilderExt::retry(builder, layer)` and
    /// `builder.retries(layer)` add the layer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_pressure::ServiceBuilderExt;
    /// use tower_pressure::pressure::PressureMonitor;
    /// use tower_pressure::retry::{RetryLayer, Retryable};
    ///
    /// let (monitor, _) = PressureMonitor::manual();
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let c = calls.clone();
    /// let client = ServiceBuilderExt::retry(ServiceBuilder::new(), RetryLayer::new(monitor))
    ///     .service(service_fn(move |_req: http::Request<()>| {
    ///         let first = c.fetch_add(1, Ordering::SeqCst) == 0;
    ///         async move { if first { Err(Retryable::new("flaky")) } else { Ok("done") } }
    ///     }));
    /// assert_eq!(client.oneshot(http::Request::new(())).await?, "done");
    /// assert_eq!(calls.load(Ordering::SeqCst), 2);
    /// # Ok(()) }
    /// ```
    fn retry<C>(self, layer: RetryLayer<C>) -> ServiceBuilder<Stack<RetryLayer<C>, L>>;

    /// Adds an [`AdaptiveConcurrencyLayer`].
    fn adaptive_concurrency<C, M>(
        self,
        layer: AdaptiveConcurrencyLayer<C, M>,
    ) -> ServiceBuilder<Stack<AdaptiveConcurrencyLayer<C, M>, L>>;

    /// Adds a [`DegradationLayer`].
    fn degradation<H>(
        self,
        layer: DegradationLayer<H>,
    ) -> ServiceBuilder<Stack<DegradationLayer<H>, L>>;

    /// Adds an [`AlertLayer`].
    fn alerts<K, C>(self, layer: AlertLayer<K, C>) -> ServiceBuilder<Stack<AlertLayer<K, C>, L>>;

    /// Adds a whole [`ResilienceStack`](crate::ResilienceStack) (inbound or outbound).
    fn resilience<S>(self, stack: S) -> ServiceBuilder<Stack<S, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn circuit_breaker<C, K>(
        self,
        layer: CircuitBreakerLayer<C, K>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C, K>, L>> {
        self.layer(layer)
    }

    fn retries<C>(self, layer: RetryLayer<C>) -> ServiceBuilder<Stack<RetryLayer<C>, L>> {
        self.layer(layer)
    }

    fn retry<C>(self, layer: RetryLayer<C>) -> ServiceBuilder<Stack<RetryLayer<C>, L>> {
        self.layer(layer)
    }

    fn adaptive_concurrency<C, M>(
        self,
        layer: AdaptiveConcurrencyLayer<C, M>,
    ) -> ServiceBuilder<Stack<AdaptiveConcurrencyLayer<C, M>, L>> {
        self.layer(layer)
    }

    fn degradation<H>(
        self,
        layer: DegradationLayer<H>,
    ) -> ServiceBuilder<Stack<DegradationLayer<H>, L>> {
        self.layer(layer)
    }

    fn alerts<K, C>(self, layer: AlertLayer<K, C>) -> ServiceBuilder<Stack<AlertLayer<K, C>, L>> {
        self.layer(layer)
    }

    fn resilience<S>(self, stack: S) -> ServiceBuilder<Stack<S, L>> {
        self.layer(stack)
    }
}
