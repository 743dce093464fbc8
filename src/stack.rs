//! [`ResilienceStack`]: every layer in the right order around one monitor.
//!
//! # Order
//!
//! **Inbound** (a server): `AlertLayer → DegradationLayer → AdaptiveConcurrencyLayer → handler`.
//!
//! * The alert layer is outermost so it sees everything the service answers, sheds included:
//!   error rate and latency are measured as the client experiences them.
//! * Degradation comes before admission so the request's priority and constraints are set
//!   before the limiter decides, and so a handler that is admitted already knows its budget.
//! * The adaptive limiter is innermost of the three: it sheds *before* any work is spent in
//!   the handler, and its latency samples measure the handler alone, not time spent queued in
//!   outer layers.
//!
//! **Outbound** (a client, e.g. an LLM API): `AlertLayer → RetryLayer → DegradationLayer →
//! CircuitBreakerLayer → [timeout](crate::timeout) → client`.
//!
//! * Retry sits outside the breaker so each attempt is judged by the breaker, and an open
//!   breaker answers a retry with a fast `CircuitOpen` instead of another doomed call; the
//!   retry budget stops retry storms.
//! * The timeout sits inside the breaker so a hung dependency counts as a failure and trips it.
//! * Degradation is inside retry, so each attempt carries the constraints of the pressure at
//!   the moment it is sent (a retry sent under High pressure asks for less), and the retry's
//!   replay copy is taken before any extension is added: for a request without extensions
//!   it costs no allocation, where a copy taken after degradation would copy its extension
//!   map. A deadline the caller put on the request (`Constraints::with_deadline`, or the
//!   inbound stack's constraints forwarded) is kept across attempts: the retry layer never
//!   sleeps past it, and degradation keeps the earlier of it and its own. A deadline set
//!   with `DegradationLayer::deadline` on this stack is therefore per attempt; bound the
//!   whole call with the retry layer's `time_bound` or with a deadline on the request.
//!
//! Every part can be replaced (`.breaker(..)`, `.retry(..)`, ...) or removed
//! (`.without_breaker()`, ...). The default parts share the stack's monitor and report to its
//! [`EventBus`](crate::event::EventBus) (`monitor.events()`); a part you build yourself reports
//! where you tell it: give it the same monitor (`.monitor(monitor.clone())` on the breaker
//! builder; the retry and concurrency builders take it as their argument) or the same bus. [`InboundStack::status_registry`] /
//! [`OutboundStack::status_registry`] give a [`StatusRegistry`] with every part registered.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::{Constraints, ResilienceStack, pressure::PressureMonitor};
//!
//! let (monitor, _manual) = PressureMonitor::manual();
//! let stack = ResilienceStack::inbound(monitor);
//! let svc = ServiceBuilder::new()
//!     .layer(stack.clone())
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         let c = Constraints::from_request(&req).unwrap_or_default();
//!         Ok::<_, tower::BoxError>(http::Response::new(c.entity_limit(10)))
//!     }));
//! let res = svc.oneshot(http::Request::new(())).await?;
//! assert_eq!(*res.body(), 10);
//! assert!(stack.status_registry().snapshot().section("pressure").is_some());
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::{Identity, Layer};

use crate::alert::{AlertLayer, AlertManager};
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::concurrency::AdaptiveConcurrencyLayer;
use crate::degradation::DegradationLayer;
use crate::pressure::PressureMonitor;
use crate::retry::RetryLayer;
use crate::status::{StatusProvider, StatusRegistry};
use crate::timeout::TimeoutLayer;

/// Entry point: [`ResilienceStack::inbound`] for servers, [`ResilienceStack::outbound`] for
/// clients. See the [module docs](self) for the order and why.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ResilienceStack;

/// The default per-attempt timeout of an outbound stack.
pub const DEFAULT_OUTBOUND_TIMEOUT: Duration = Duration::from_secs(30);

impl ResilienceStack {
    /// The inbound stack with every default: `AlertLayer("inbound")`, seed-default
    /// degradation, Gradient2 adaptive concurrency with priority shedding.
    pub fn inbound(monitor: PressureMonitor) -> InboundStack {
        let parts = Parts::new(monitor.clone());
        let alert = default_alert("inbound", &monitor);
        let concurrency = AdaptiveConcurrencyLayer::new(monitor.clone());
        let mut s = InboundStack {
            alert,
            degradation: DegradationLayer::new(monitor),
            concurrency,
            parts,
        };
        s.parts.set("alert", Some(Arc::new(s.alert.metrics())));
        s.parts
            .set("degradation", provider_of_degradation(&s.degradation));
        s.parts
            .set("concurrency", provider_of_concurrency(&s.concurrency));
        s
    }

    /// The outbound stack with every default, for any client whose errors are failures:
    /// `AlertLayer("outbound")`, degradation, a budgeted exponential-backoff retry, one
    /// circuit breaker, and a 30 s per-attempt timeout. See
    /// [`ResilienceStack::outbound_http`] for HTTP clients.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// use std::time::Duration;
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_pressure::{ResilienceStack, ServiceBuilderExt, pressure::PressureMonitor};
    ///
    /// let (monitor, _gauge) = PressureMonitor::manual();
    /// let stack = ResilienceStack::outbound(monitor).timeout(Duration::from_secs(5));
    /// // Any client service: here one that echoes the request's body.
    /// let client = ServiceBuilder::new()
    ///     .resilience(stack)
    ///     .service(service_fn(|req: http::Request<String>| async move {
    ///         Ok::<_, tower::BoxError>(format!("echo: {}", req.body()))
    ///     }));
    /// let answer = client.oneshot(http::Request::new("hello".to_owned())).await?;
    /// assert_eq!(answer, "echo: hello");
    /// # Ok(()) }
    /// ```
    pub fn outbound(monitor: PressureMonitor) -> OutboundStack {
        let parts = Parts::new(monitor.clone());
        let alert = default_alert("outbound", &monitor);
        let retry = RetryLayer::new(monitor.clone());
        let breaker = default_breaker(&monitor);
        let mut s = OutboundStack {
            alert,
            degradation: DegradationLayer::new(monitor),
            retry,
            breaker,
            timeout: TimeoutLayer::new(DEFAULT_OUTBOUND_TIMEOUT),
            parts,
        };
        s.parts.set("alert", Some(Arc::new(s.alert.metrics())));
        s.parts
            .set("degradation", provider_of_degradation(&s.degradation));
        s.parts.set("retry", provider_of_retry(&s.retry));
        s.parts.set("breaker", provider_of_breaker(&s.breaker));
        s
    }
}

#[cfg(feature = "http")]
impl ResilienceStack {
    /// The outbound stack for HTTP clients: like [`ResilienceStack::outbound`], but the retry
    /// layer uses the [`HttpClassifier`](crate::retry::http::HttpClassifier) (502/503/504,
    /// 429 and 408 are retried, `Retry-After` honoured, only idempotent requests replayed) and
    /// there is one breaker per authority (`host:port`) counting 5xx and 429 as failures.
    pub fn outbound_http(
        monitor: PressureMonitor,
    ) -> OutboundStack<
        AlertLayer,
        DegradationLayer,
        RetryLayer<crate::retry::http::HttpClassifier>,
        CircuitBreakerLayer<
            crate::circuit_breaker::http::ServerErrorsAsFailures,
            crate::circuit_breaker::http::AuthorityKey,
        >,
        TimeoutLayer,
    > {
        let retry = match RetryLayer::http(monitor.clone()).name("outbound").build() {
            Ok(r) => r,
            // Invariant: the defaults are valid.
            Err(e) => unreachable!("default RetryLayer config is valid: {e}"),
        };
        let breaker = default_breaker(&monitor)
            .classifier(crate::circuit_breaker::http::ServerErrorsAsFailures)
            .per_key(crate::circuit_breaker::http::AuthorityKey);
        ResilienceStack::outbound(monitor)
            .retry(retry)
            .breaker(breaker)
    }
}

fn default_alert(name: &str, monitor: &PressureMonitor) -> AlertLayer {
    match AlertLayer::builder(name).monitor(monitor).build() {
        Ok(a) => a,
        // Invariant: the defaults with a non-empty name are valid.
        Err(e) => unreachable!("default AlertLayer config is valid: {e}"),
    }
}

fn default_breaker(monitor: &PressureMonitor) -> CircuitBreakerLayer {
    match CircuitBreakerLayer::builder()
        .name("outbound")
        .monitor(monitor.clone())
        .build()
    {
        Ok(b) => b,
        // Invariant: the defaults are valid.
        Err(e) => unreachable!("default CircuitBreakerLayer config is valid: {e}"),
    }
}

/// The stack's monitor and the status providers of its parts.
#[derive(Clone)]
struct Parts {
    monitor: PressureMonitor,
    providers: Vec<(&'static str, Arc<dyn StatusProvider>)>,
    manager: Option<AlertManager>,
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts")
            .field("monitor", &self.monitor)
            .field(
                "providers",
                &self.providers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .field("alert_manager", &self.manager.is_some())
            .finish()
    }
}

impl Parts {
    fn new(monitor: PressureMonitor) -> Self {
        Self {
            monitor,
            providers: Vec::new(),
            manager: None,
        }
    }

    fn set(&mut self, slot: &'static str, provider: Option<Arc<dyn StatusProvider>>) {
        self.providers.retain(|(n, _)| *n != slot);
        if let Some(p) = provider {
            self.providers.push((slot, p));
        }
    }

    fn registry(&self) -> StatusRegistry {
        let r = StatusRegistry::new();
        r.register(self.monitor.clone());
        for (_, p) in &self.providers {
            r.register_arc(p.clone());
        }
        if let Some(m) = &self.manager {
            r.register(m.clone());
        }
        r
    }
}

macro_rules! slot_methods {
    ($stack:ident < $($p:ident),* > ; $field:ident : $P:ident, $with:ident, $without:ident, $doc:literal) => {
        impl<$($p),*> $stack<$($p),*> {
            #[doc = concat!("Replaces the ", $doc, " with `layer` (any tower `Layer`).")]
            pub fn $with<L>(self, layer: L) -> slot_methods!(@ty $stack < $($p),* > ; $P => L) {
                let mut parts = self.parts;
                parts.set(stringify!($field), None);
                slot_methods!(@build $stack { self, parts } ; $field => layer)
            }

            #[doc = concat!("Removes the ", $doc, ".")]
            pub fn $without(self) -> slot_methods!(@ty $stack < $($p),* > ; $P => Identity) {
                let mut parts = self.parts;
                parts.set(stringify!($field), None);
                slot_methods!(@build $stack { self, parts } ; $field => Identity::new())
            }
        }
    };
    (@ty InboundStack < A, D, C > ; A => $L:ty) => { InboundStack<$L, D, C> };
    (@ty InboundStack < A, D, C > ; D => $L:ty) => { InboundStack<A, $L, C> };
    (@ty InboundStack < A, D, C > ; C => $L:ty) => { InboundStack<A, D, $L> };
    (@ty OutboundStack < A, D, R, B, T > ; A => $L:ty) => { OutboundStack<$L, D, R, B, T> };
    (@ty OutboundStack < A, D, R, B, T > ; D => $L:ty) => { OutboundStack<A, $L, R, B, T> };
    (@ty OutboundStack < A, D, R, B, T > ; R => $L:ty) => { OutboundStack<A, D, $L, B, T> };
    (@ty OutboundStack < A, D, R, B, T > ; B => $L:ty) => { OutboundStack<A, D, R, $L, T> };
    (@ty OutboundStack < A, D, R, B, T > ; T => $L:ty) => { OutboundStack<A, D, R, B, $L> };
    (@build InboundStack { $s:ident, $parts:ident } ; alert => $v:expr) => {
        InboundStack { alert: $v, degradation: $s.degradation, concurrency: $s.concurrency, parts: $parts }
    };
    (@build InboundStack { $s:ident, $parts:ident } ; degradation => $v:expr) => {
        InboundStack { alert: $s.alert, degradation: $v, concurrency: $s.concurrency, parts: $parts }
    };
    (@build InboundStack { $s:ident, $parts:ident } ; concurrency => $v:expr) => {
        InboundStack { alert: $s.alert, degradation: $s.degradation, concurrency: $v, parts: $parts }
    };
    (@build OutboundStack { $s:ident, $parts:ident } ; alert => $v:expr) => {
        OutboundStack { alert: $v, degradation: $s.degradation, retry: $s.retry, breaker: $s.breaker, timeout: $s.timeout, parts: $parts }
    };
    (@build OutboundStack { $s:ident, $parts:ident } ; degradation => $v:expr) => {
        OutboundStack { alert: $s.alert, degradation: $v, retry: $s.retry, breaker: $s.breaker, timeout: $s.timeout, parts: $parts }
    };
    (@build OutboundStack { $s:ident, $parts:ident } ; retry => $v:expr) => {
        OutboundStack { alert: $s.alert, degradation: $s.degradation, retry: $v, breaker: $s.breaker, timeout: $s.timeout, parts: $parts }
    };
    (@build OutboundStack { $s:ident, $parts:ident } ; breaker => $v:expr) => {
        OutboundStack { alert: $s.alert, degradation: $s.degradation, retry: $s.retry, breaker: $v, timeout: $s.timeout, parts: $parts }
    };
    (@build OutboundStack { $s:ident, $parts:ident } ; timeout => $v:expr) => {
        OutboundStack { alert: $s.alert, degradation: $s.degradation, retry: $s.retry, breaker: $s.breaker, timeout: $v, parts: $parts }
    };
}

/// The server-side stack: `AlertLayer → DegradationLayer → AdaptiveConcurrencyLayer`.
/// Built by [`ResilienceStack::inbound`]. Cheap to clone; clones share every layer's state.
#[derive(Debug, Clone)]
pub struct InboundStack<A = AlertLayer, D = DegradationLayer, C = AdaptiveConcurrencyLayer> {
    alert: A,
    degradation: D,
    concurrency: C,
    parts: Parts,
}

slot_methods!(InboundStack<A, D, C>; alert: A, alert_layer, without_alert, "alert layer");
slot_methods!(InboundStack<A, D, C>; degradation: D, degradation_layer, without_degradation, "degradation layer");
slot_methods!(InboundStack<A, D, C>; concurrency: C, concurrency_layer, without_concurrency, "adaptive concurrency layer");

impl<A, D, C> InboundStack<A, D, C> {
    /// Replaces the alert layer with a configured [`AlertLayer`] (kept on the status page).
    pub fn alert<K, Cl>(self, layer: AlertLayer<K, Cl>) -> InboundStack<AlertLayer<K, Cl>, D, C> {
        let metrics = layer.metrics();
        let mut s = self.alert_layer(layer);
        s.parts.set("alert", Some(Arc::new(metrics)));
        s
    }

    /// Replaces the adaptive concurrency layer with a configured one (kept on the status page).
    pub fn concurrency<Cl, M>(
        self,
        layer: AdaptiveConcurrencyLayer<Cl, M>,
    ) -> InboundStack<A, D, AdaptiveConcurrencyLayer<Cl, M>> {
        let p = provider_of_concurrency(&layer);
        let mut s = self.concurrency_layer(layer);
        s.parts.set("concurrency", p);
        s
    }

    /// Replaces the degradation layer with a configured one (kept on the status page).
    pub fn degradation<H>(
        self,
        layer: DegradationLayer<H>,
    ) -> InboundStack<A, DegradationLayer<H>, C>
    where
        H: Clone + Send + Sync + 'static,
    {
        let p = provider_of_degradation(&layer);
        let mut s = self.degradation_layer(layer);
        s.parts.set("degradation", p);
        s
    }

    /// Adds an alert manager to the stack's status page.
    pub fn alert_manager(mut self, manager: AlertManager) -> Self {
        self.parts.manager = Some(manager);
        self
    }

    /// The monitor every part shares.
    pub fn monitor(&self) -> &PressureMonitor {
        &self.parts.monitor
    }

    /// A registry with the monitor and every part of the stack registered, for
    /// [`StatusService`](crate::status::StatusService).
    pub fn status_registry(&self) -> StatusRegistry {
        self.parts.registry()
    }

    /// Shows `provider` on the status page in `slot` (for parts wrapped in another layer,
    /// as `config` does with `Either`).
    #[cfg(feature = "config")]
    pub(crate) fn with_status(
        mut self,
        slot: &'static str,
        provider: Arc<dyn StatusProvider>,
    ) -> Self {
        self.parts.set(slot, Some(provider));
        self
    }
}

impl<S, A, D, C> Layer<S> for InboundStack<A, D, C>
where
    C: Layer<S>,
    D: Layer<C::Service>,
    A: Layer<D::Service>,
{
    type Service = A::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.alert
            .layer(self.degradation.layer(self.concurrency.layer(inner)))
    }
}

/// The client-side stack: `AlertLayer → RetryLayer → DegradationLayer → CircuitBreakerLayer →
/// timeout`. Built by [`ResilienceStack::outbound`]. Cheap to clone; clones share every
/// layer's state (one retry budget, one set of breakers).
#[derive(Debug, Clone)]
pub struct OutboundStack<
    A = AlertLayer,
    D = DegradationLayer,
    R = RetryLayer,
    B = CircuitBreakerLayer,
    T = TimeoutLayer,
> {
    alert: A,
    degradation: D,
    retry: R,
    breaker: B,
    timeout: T,
    parts: Parts,
}

slot_methods!(OutboundStack<A, D, R, B, T>; alert: A, alert_layer, without_alert, "alert layer");
slot_methods!(OutboundStack<A, D, R, B, T>; degradation: D, degradation_layer, without_degradation, "degradation layer");
slot_methods!(OutboundStack<A, D, R, B, T>; retry: R, retry_layer, without_retry, "retry layer");
slot_methods!(OutboundStack<A, D, R, B, T>; breaker: B, breaker_layer, without_breaker, "circuit breaker layer");
slot_methods!(OutboundStack<A, D, R, B, T>; timeout: T, timeout_layer, without_timeout, "per-attempt timeout");

impl<A, D, R, B, T> OutboundStack<A, D, R, B, T> {
    /// Replaces the alert layer with a configured [`AlertLayer`] (kept on the status page).
    pub fn alert<K, Cl>(
        self,
        layer: AlertLayer<K, Cl>,
    ) -> OutboundStack<AlertLayer<K, Cl>, D, R, B, T> {
        let metrics = layer.metrics();
        let mut s = self.alert_layer(layer);
        s.parts.set("alert", Some(Arc::new(metrics)));
        s
    }

    /// Replaces the retry layer with a configured [`RetryLayer`] (kept on the status page).
    pub fn retry<C>(self, layer: RetryLayer<C>) -> OutboundStack<A, D, RetryLayer<C>, B, T>
    where
        C: Clone + Send + Sync + 'static,
    {
        let p = provider_of_retry(&layer);
        let mut s = self.retry_layer(layer);
        s.parts.set("retry", p);
        s
    }

    /// Replaces the circuit breaker with a configured [`CircuitBreakerLayer`] (kept on the
    /// status page), e.g. one breaker per host or per provider.
    pub fn breaker<C, K>(
        self,
        layer: CircuitBreakerLayer<C, K>,
    ) -> OutboundStack<A, D, R, CircuitBreakerLayer<C, K>, T> {
        let p = provider_of_breaker(&layer);
        let mut s = self.breaker_layer(layer);
        s.parts.set("breaker", p);
        s
    }

    /// Replaces the degradation layer with a configured one (kept on the status page).
    pub fn degradation<H>(
        self,
        layer: DegradationLayer<H>,
    ) -> OutboundStack<A, DegradationLayer<H>, R, B, T>
    where
        H: Clone + Send + Sync + 'static,
    {
        let p = provider_of_degradation(&layer);
        let mut s = self.degradation_layer(layer);
        s.parts.set("degradation", p);
        s
    }

    /// Sets the per-attempt timeout (inside the breaker, so timeouts count as failures).
    pub fn timeout(self, timeout: Duration) -> OutboundStack<A, D, R, B, TimeoutLayer> {
        self.timeout_layer(TimeoutLayer::new(timeout))
    }

    /// Adds an alert manager to the stack's status page.
    pub fn alert_manager(mut self, manager: AlertManager) -> Self {
        self.parts.manager = Some(manager);
        self
    }

    /// The monitor every part shares.
    pub fn monitor(&self) -> &PressureMonitor {
        &self.parts.monitor
    }

    /// A registry with the monitor and every part of the stack registered.
    pub fn status_registry(&self) -> StatusRegistry {
        self.parts.registry()
    }

    /// Shows `provider` on the status page in `slot` (for parts wrapped in another layer,
    /// as `config` does with `Either`).
    #[cfg(feature = "config")]
    pub(crate) fn with_status(
        mut self,
        slot: &'static str,
        provider: Arc<dyn StatusProvider>,
    ) -> Self {
        self.parts.set(slot, Some(provider));
        self
    }
}

impl<S, A, D, R, B, T> Layer<S> for OutboundStack<A, D, R, B, T>
where
    T: Layer<S>,
    B: Layer<T::Service>,
    D: Layer<B::Service>,
    R: Layer<D::Service>,
    A: Layer<R::Service>,
{
    type Service = A::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.alert.layer(
            self.retry.layer(
                self.degradation
                    .layer(self.breaker.layer(self.timeout.layer(inner))),
            ),
        )
    }
}

fn provider_of_breaker<C, K>(layer: &CircuitBreakerLayer<C, K>) -> Option<Arc<dyn StatusProvider>> {
    Some(Arc::new(layer.handle()))
}

fn provider_of_retry<C>(layer: &RetryLayer<C>) -> Option<Arc<dyn StatusProvider>>
where
    C: Clone + Send + Sync + 'static,
{
    Some(Arc::new(layer.clone()))
}

fn provider_of_concurrency<C, M>(
    layer: &AdaptiveConcurrencyLayer<C, M>,
) -> Option<Arc<dyn StatusProvider>> {
    Some(Arc::new(layer.handle()))
}

fn provider_of_degradation<H>(layer: &DegradationLayer<H>) -> Option<Arc<dyn StatusProvider>>
where
    H: Clone + Send + Sync + 'static,
{
    Some(Arc::new(layer.clone()))
}
