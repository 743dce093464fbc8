use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::policy::DegradationPolicy;
use super::service::{Degradation, NoHeader};
use super::shared::Shared;
use crate::pressure::PressureMonitor;

/// Inserts [`Constraints`](crate::Constraints) into every request from the shared monitor's
/// level. See the [module docs](crate::degradation).
///
/// The layer holds its configuration in an `Arc` created here, in `new`, never in
/// [`Layer::layer`], so every route of an axum router shares it.
#[derive(Debug, Clone)]
pub struct DegradationLayer<H = NoHeader> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) header: H,
}

impl DegradationLayer {
    /// A layer with seed 000's default policy.
    pub fn new(monitor: PressureMonitor) -> Self {
        Self::with_policy(monitor, DegradationPolicy::default())
    }

    /// A layer with the given policy.
    pub fn with_policy(monitor: PressureMonitor, policy: DegradationPolicy) -> Self {
        Self {
            shared: Arc::new(Shared {
                monitor,
                policy,
                deadline: None,
            }),
            header: NoHeader,
        }
    }
}

impl<H: Clone> DegradationLayer<H> {
    /// Sets a deadline `timeout` after each request arrives, carried in
    /// [`Constraints::deadline`](crate::Constraints::deadline) for handlers and for the retry
    /// layer in front of it. It runs from the call time the stack already read; alone, the
    /// layer reads the clock once per request. An earlier deadline already on the request is
    /// kept. Behind a retry layer (as in `ResilienceStack::outbound`) each attempt gets its
    /// own deadline.
    pub fn deadline(self, timeout: Duration) -> Self {
        let s = &*self.shared;
        Self {
            shared: Arc::new(Shared {
                monitor: s.monitor.clone(),
                policy: s.policy.clone(),
                deadline: Some(timeout),
            }),
            header: self.header,
        }
    }

    /// The monitor this layer reads.
    pub fn monitor(&self) -> &PressureMonitor {
        &self.shared.monitor
    }

    /// The policy.
    pub fn policy(&self) -> &DegradationPolicy {
        &self.shared.policy
    }
}

#[cfg(feature = "http")]
impl<H> DegradationLayer<H> {
    /// Adds `x-degraded: level=<level>; cause=<signal>` to every HTTP response served while
    /// the level is above `Normal`.
    pub fn degraded_header(self) -> DegradationLayer<super::service::DegradedHeader> {
        DegradationLayer {
            shared: self.shared,
            header: super::service::DegradedHeader,
        }
    }
}

impl<S, H: Clone> Layer<S> for DegradationLayer<H> {
    type Service = Degradation<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Degradation {
            inner,
            shared: self.shared.clone(),
            _header: self.header.clone(),
        }
    }
}
