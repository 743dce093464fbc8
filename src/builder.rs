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
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::{ServiceBuilder, service_fn};
/// use tower_pressure::ServiceBuilderExt;
/// use tower_pressure::circuit_breaker::CircuitBreakerLayer;
/// use tower_pressure::degradation::DegradationLayer;
/// use tower_pressure::pressure::PressureMonitor;
/// use tower_pressure::retry::RetryLayer;
///
/// let (monitor, _) = PressureMonitor::manual();
/// let client = ServiceBuilder::new()
///     .degradation(DegradationLayer::new(monitor.clone()))
///     .retry(RetryLayer::new(monitor.clone()))
///     .circuit_breaker(CircuitBreakerLayer::builder().monitor(monitor).build()?)
///     .service(service_fn(|req: http::Request<()>| async move {
///         Ok::<_, tower::BoxError>(req.uri().to_string())
///     }));
/// # let _ = client; Ok(()) }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a [`CircuitBreakerLayer`].
    fn circuit_breaker<C, K>(
        self,
        layer: CircuitBreakerLayer<C, K>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C, K>, L>>;

    /// Adds a [`RetryLayer`].
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
