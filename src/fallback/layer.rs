use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower::BoxError;
use tower_layer::Layer;

use super::service::Fallback;
use super::shared::Shared;
use super::strategy::{CacheFallback, QueueFallback, ServiceFallback, StrategyInfo, ValueFallback};
use super::trigger::AnyError;
use crate::error::ConfigError;
use crate::event::EventBus;
use crate::section::{StatusProvider, StatusSection};

/// Answers for a failing primary service: an alternate provider, a response built from the
/// error, the last good response, or a second try after the rate limit's wait. See the
/// [module docs](crate::fallback).
///
/// One layer holds one strategy; stack layers for a chain. Everything shared (the strategy's
/// cache or queue counter, the counters, the alternate service) is created by
/// [`FallbackLayerBuilder::build`], never in [`Layer::layer`], so clones and every route of
/// an axum router share one state.
pub struct FallbackLayer<St, T = AnyError, M = ()> {
    pub(crate) shared: Arc<Shared<St, T, M>>,
}

impl<St, T, M> Clone for FallbackLayer<St, T, M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<St: StrategyInfo, T, M> fmt::Debug for FallbackLayer<St, T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("name", &self.shared.name)
            .field("strategy", &self.shared.strategy.kind())
            .finish()
    }
}

impl FallbackLayer<()> {
    /// Switch provider: on a failure, send the request to `fallback` instead.
    ///
    /// `Req: Clone`: a copy is made before every call of the primary (see
    /// [`ServiceFallback`] for the cost); `fallback` must be `Clone + Send + Sync` (hyper's
    /// client, `BoxCloneSyncService`) and is cloned only when used. If it fails too, the
    /// error is a [`FallbackFailed`](super::FallbackFailed) whose source is the primary's
    /// error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_pressure::fallback::{FallbackLayer, is_circuit_open};
    ///
    /// let backup = service_fn(|q: String| async move { Ok::<_, tower::BoxError>(format!("backup: {q}")) });
    /// let svc = ServiceBuilder::new()
    ///     .layer(FallbackLayer::service(backup).build()?)
    ///     .service(service_fn(|_: String| async { Err::<String, tower::BoxError>("primary down".into()) }));
    /// assert_eq!(svc.oneshot("hi".to_string()).await?, "backup: hi");
    /// # Ok(()) }
    /// ```
    pub fn service<F>(fallback: F) -> FallbackLayerBuilder<ServiceFallback<F>> {
        FallbackLayerBuilder::new(ServiceFallback { svc: fallback }, "service")
    }

    /// Degrade: on a failure, answer `f(&error)`. Keeps nothing of the request: no clone,
    /// no cost on the success path. For a failed response (see [`Trigger`](super::Trigger))
    /// the error is a [`FailedResponse`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_pressure::fallback::FallbackLayer;
    ///
    /// let svc = ServiceBuilder::new()
    ///     .layer(FallbackLayer::value(|e: &tower::BoxError| format!("unavailable ({e})")).build()?)
    ///     .service(service_fn(|_: ()| async { Err::<String, tower::BoxError>("down".into()) }));
    /// assert_eq!(svc.oneshot(()).await?, "unavailable (down)");
    /// # Ok(()) }
    /// ```
    pub fn value<F, Res>(f: F) -> FallbackLayerBuilder<ValueFallback<F>>
    where
        F: Fn(&BoxError) -> Res + Send + Sync + 'static,
    {
        FallbackLayerBuilder::new(ValueFallback { f }, "value")
    }

    /// Cache: remember the last successful response of each key (at most `capacity` keys;
    /// stores sampled, see [`CacheFallback`]) and on a failure answer it if younger than
    /// `max_age`. `key` is a [`KeyExtractor`](crate::circuit_breaker::KeyExtractor): a
    /// closure `Fn(&Req) -> Option<String>`, or with the `http` feature the borrowing
    /// `HostKey`/`HeaderKey`; a request without a key is not cached. Use
    /// [`mark`](FallbackLayerBuilder::mark) to tell callers the answer is stale.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// use std::time::Duration;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    /// use tower_pressure::fallback::FallbackLayer;
    ///
    /// let layer = FallbackLayer::cache(|q: &String| Some(q.clone()), 1000, Duration::from_secs(60)).build()?;
    /// let mut up = true;
    /// let mut svc = layer.layer(service_fn(move |q: String| {
    ///     let ok = std::mem::replace(&mut up, false); // succeeds once, then fails
    ///     async move { if ok { Ok(format!("rates for {q}")) } else { Err(tower::BoxError::from("down")) } }
    /// }));
    /// assert_eq!(svc.ready().await?.call("eur".into()).await?, "rates for eur");
    /// assert_eq!(svc.ready().await?.call("eur".into()).await?, "rates for eur"); // from the cache
    /// assert!(svc.ready().await?.call("usd".into()).await.is_err()); // never cached
    /// # Ok(()) }
    /// ```
    pub fn cache<K, Res>(
        key: K,
        capacity: usize,
        max_age: Duration,
    ) -> FallbackLayerBuilder<CacheFallback<K, Res>> {
        let mut b = FallbackLayerBuilder::new(CacheFallback::new(key, capacity, max_age), "cache");
        if capacity == 0 {
            b.error = Some(ConfigError::new("capacity", capacity, "must be > 0"));
        } else if max_age.is_zero() {
            b.error = Some(ConfigError::new("max_age", max_age, "must be > 0"));
        }
        b
    }

    /// Queue: when the failure carries a retry-after (a rate limit's `Retry-After`, a
    /// breaker's remaining open time, see [`retry_after`](super::retry_after)) of at most
    /// `max_wait` and ending before the request's deadline, wait it out and call the primary
    /// once more, with at most `max_queued` requests waiting at once. Beyond those bounds the
    /// original failure goes on at once. `Req: Clone` and `S: Clone` (see [`QueueFallback`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), tower::BoxError> {
    /// use std::time::Duration;
    /// use tower::{Layer, ServiceExt, service_fn};
    /// use tower_pressure::{fallback::FallbackLayer, retry::Retryable};
    ///
    /// let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    /// let c = calls.clone();
    /// let svc = FallbackLayer::queue(Duration::from_secs(5), 100).build()?.layer(service_fn(move |_: http::Request<()>| {
    ///     let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    ///     async move {
    ///         if n == 0 { Err(Retryable::after("rate limited", Duration::from_secs(2)).into()) } else { Ok::<_, tower::BoxError>("ok") }
    ///     }
    /// }));
    /// let start = tokio::time::Instant::now();
    /// assert_eq!(svc.oneshot(http::Request::new(())).await?, "ok");
    /// assert!(start.elapsed() >= Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn queue(max_wait: Duration, max_queued: usize) -> FallbackLayerBuilder<QueueFallback> {
        let mut b = FallbackLayerBuilder::new(
            QueueFallback {
                max_wait,
                max_queued,
                queued: Arc::new(AtomicUsize::new(0)),
            },
            "queue",
        );
        if max_queued == 0 {
            b.error = Some(ConfigError::new("max_queued", max_queued, "must be > 0"));
        } else if max_wait.is_zero() {
            b.error = Some(ConfigError::new("max_wait", max_wait, "must be > 0"));
        }
        b
    }
}

impl<St, T, M> FallbackLayer<St, T, M> {
    /// The layer's name (in events and status).
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use tower_pressure::fallback::FallbackLayer;
    /// let l = FallbackLayer::value(|_: &tower::BoxError| "n/a").name("llm").build()?;
    /// assert_eq!(l.name(), "llm");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The strategy (for its own accessors, e.g. [`QueueFallback::queued`]).
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use tower_pressure::fallback::FallbackLayer;
    /// let l = FallbackLayer::queue(std::time::Duration::from_secs(1), 8).build()?;
    /// assert_eq!(l.strategy().queued(), 0);
    /// # Ok(()) }
    /// ```
    pub fn strategy(&self) -> &St {
        &self.shared.strategy
    }

    /// Cumulative counters of every service this layer built.
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use tower_pressure::fallback::FallbackLayer;
    /// let l = FallbackLayer::value(|_: &tower::BoxError| "n/a").build()?;
    /// assert_eq!(l.stats().used, 0);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> FallbackStats {
        let s = &self.shared;
        FallbackStats {
            used: s.used.load(Ordering::Relaxed),
            declined: s.declined.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of a [`FallbackLayer`]'s counters ([`FallbackLayer::stats`]).
///
/// ```
/// let s = tower_pressure::fallback::FallbackStats::default();
/// assert_eq!((s.used, s.declined, s.failed), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FallbackStats {
    /// Failures the strategy took over.
    pub used: u64,
    /// Failures the strategy did not handle (cache miss, queue full, no retry-after, ...):
    /// the original failure was returned.
    pub declined: u64,
    /// Fallbacks that failed themselves.
    pub failed: u64,
}

impl<S, St, T, M> Layer<S> for FallbackLayer<St, T, M> {
    type Service = Fallback<S, St, T, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Builder of a [`FallbackLayer`], from one of its constructors.
pub struct FallbackLayerBuilder<St, T = AnyError, M = ()> {
    strategy: St,
    trigger: T,
    marker: M,
    name: Arc<str>,
    events: Option<EventBus>,
    error: Option<ConfigError>,
}

impl<St: StrategyInfo, T, M> fmt::Debug for FallbackLayerBuilder<St, T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayerBuilder")
            .field("name", &self.name)
            .field("strategy", &self.strategy.kind())
            .finish_non_exhaustive()
    }
}

impl<St> FallbackLayerBuilder<St> {
    fn new(strategy: St, name: &str) -> Self {
        Self {
            strategy,
            trigger: AnyError,
            marker: (),
            name: Arc::from(name),
            events: None,
            error: None,
        }
    }
}

impl<St, T, M> FallbackLayerBuilder<St, T, M> {
    /// The name in events and status (default: the strategy's kind).
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// let l = tower_pressure::fallback::FallbackLayer::value(|_: &tower::BoxError| 0).name("quotes").build()?;
    /// assert_eq!(l.name(), "quotes");
    /// # Ok(()) }
    /// ```
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The bus fallback events go to (e.g. `monitor.events().clone()`; default: a private
    /// bus, events still reach `tracing`).
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// let (monitor, _) = tower_pressure::PressureMonitor::manual();
    /// let l = tower_pressure::fallback::FallbackLayer::value(|_: &tower::BoxError| 0)
    ///     .events(monitor.events().clone())
    ///     .build()?;
    /// # let _ = l; Ok(()) }
    /// ```
    pub fn events(mut self, bus: EventBus) -> Self {
        self.events = Some(bus);
        self
    }

    /// Handle only the errors `pred` accepts (default: every error); others are returned as
    /// they are. The `is_*` helpers of the [module](crate::fallback) recognise the crate's own
    /// rejections.
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use tower_pressure::fallback::{FallbackLayer, is_circuit_open, is_overloaded};
    /// let l = FallbackLayer::value(|_: &tower::BoxError| "busy")
    ///     .when(|e: &tower::BoxError| is_circuit_open(e) || is_overloaded(e))
    ///     .build()?;
    /// # let _ = l; Ok(()) }
    /// ```
    pub fn when<F>(self, pred: F) -> FallbackLayerBuilder<St, F, M>
    where
        F: Fn(&BoxError) -> bool + Send + Sync + 'static,
    {
        self.trigger(pred)
    }

    /// Any [`Trigger`](super::Trigger), e.g. the `http` feature's
    /// [`ServerErrors`](super::http::ServerErrors), which also handles 5xx/429 responses.
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use tower_pressure::fallback::{AnyError, FallbackLayer};
    /// let l = FallbackLayer::value(|_: &tower::BoxError| 0).trigger(AnyError).build()?;
    /// # let _ = l; Ok(()) }
    /// ```
    pub fn trigger<T2>(self, trigger: T2) -> FallbackLayerBuilder<St, T2, M> {
        FallbackLayerBuilder {
            strategy: self.strategy,
            trigger,
            marker: self.marker,
            name: self.name,
            events: self.events,
            error: self.error,
        }
    }

    /// Marks responses the fallback produced (default: no mark): a closure
    /// `Fn(&mut Res, &FallbackUsed)`, or with the `http` feature
    /// [`FallbackHeader`](super::http::FallbackHeader).
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use tower_pressure::fallback::{FallbackLayer, FallbackUsed};
    /// let l = FallbackLayer::value(|_: &tower::BoxError| String::from("n/a"))
    ///     .mark(|res: &mut String, used: &FallbackUsed| res.insert_str(0, used.strategy()))
    ///     .build()?;
    /// # let _ = l; Ok(()) }
    /// ```
    pub fn mark<M2>(self, marker: M2) -> FallbackLayerBuilder<St, T, M2> {
        FallbackLayerBuilder {
            strategy: self.strategy,
            trigger: self.trigger,
            marker,
            name: self.name,
            events: self.events,
            error: self.error,
        }
    }

    /// Builds the layer and its shared state.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `capacity`/`max_age` of a cache, `max_queued`/
    /// `max_wait` of a queue, `store_every` of a cache, all of which must be > 0.
    ///
    /// ```
    /// use tower_pressure::fallback::FallbackLayer;
    /// let err = FallbackLayer::queue(std::time::Duration::from_secs(1), 0).build().unwrap_err();
    /// assert_eq!(err.field(), "max_queued");
    /// ```
    pub fn build(self) -> Result<FallbackLayer<St, T, M>, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(FallbackLayer {
            shared: Arc::new(Shared {
                name: self.name,
                strategy: self.strategy,
                trigger: self.trigger,
                marker: self.marker,
                events: self.events.unwrap_or_default(),
                epoch: Instant::now(),
                used: AtomicU64::new(0),
                declined: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                reported: AtomicU64::new(0),
                last_report: AtomicU64::new(0),
            }),
        })
    }
}

impl<K, Res, T, M> FallbackLayerBuilder<CacheFallback<K, Res>, T, M> {
    /// How often at most one success per key stores its response (default 1 s, capped at
    /// `max_age`). Shorter: fresher fallback answers, more clones and locks.
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use std::time::Duration;
    /// use tower_pressure::fallback::FallbackLayer;
    /// // The cached response type is usually inferred from the service; named here.
    /// let l = FallbackLayer::cache::<_, String>(|q: &String| Some(q.clone()), 100, Duration::from_secs(60))
    ///     .store_every(Duration::from_millis(100))
    ///     .build()?;
    /// assert!(l.strategy().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn store_every(mut self, every: Duration) -> Self {
        if every.is_zero() && self.error.is_none() {
            self.error = Some(ConfigError::new("store_every", every, "must be > 0"));
        }
        self.strategy.store_every = every.min(self.strategy.max_age);
        self
    }
}

/// Metrics (labels `fallback` = the layer's name, `strategy`):
///
/// | name | type | meaning |
/// |---|---|---|
/// | `tower_pressure_fallback_used_total` | counter | failures the strategy took over |
/// | `tower_pressure_fallback_declined_total` | counter | failures it did not handle |
/// | `tower_pressure_fallback_failed_total` | counter | fallbacks that failed themselves |
/// | `tower_pressure_fallback_queued` | gauge | (queue) requests waiting now |
/// | `tower_pressure_fallback_cache_keys` | gauge | (cache) keys with a slot |
///
/// ```
/// use tower_pressure::{fallback::FallbackLayer, status::StatusRegistry};
/// let l = FallbackLayer::value(|_: &tower::BoxError| 0).name("quotes").build().unwrap();
/// let registry = StatusRegistry::new();
/// registry.register(l.clone());
/// let text = registry.snapshot().to_prometheus();
/// assert!(text.contains("tower_pressure_fallback_used_total{fallback=\"quotes\",strategy=\"value\"} 0"));
/// ```
impl<St, T, M> StatusProvider for FallbackLayer<St, T, M>
where
    St: StrategyInfo,
    T: Send + Sync + 'static,
    M: Send + Sync + 'static,
{
    fn section(&self) -> StatusSection {
        let st = self.stats();
        let name = self.name();
        let kind = self.shared.strategy.kind();
        let l = [("fallback", name), ("strategy", kind)];
        let s = StatusSection::new(name, "fallback")
            .info("strategy", kind)
            .counter(
                "tower_pressure_fallback_used_total",
                "Failures of the primary a fallback strategy took over.",
                &l,
                st.used as f64,
            )
            .counter(
                "tower_pressure_fallback_declined_total",
                "Failures a fallback strategy did not handle (the original failure was returned).",
                &l,
                st.declined as f64,
            )
            .counter(
                "tower_pressure_fallback_failed_total",
                "Fallbacks that failed themselves.",
                &l,
                st.failed as f64,
            );
        self.shared.strategy.status(s, &l)
    }
}
