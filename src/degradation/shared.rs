//! The state a [`DegradationLayer`](super::DegradationLayer) shares with every service it
//! builds. Its own module so imports run one way: `layer.rs` -> `service.rs`, each using this.

use std::time::Duration;

use super::policy::DegradationPolicy;
use crate::pressure::PressureMonitor;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) monitor: PressureMonitor,
    pub(crate) policy: DegradationPolicy,
    pub(crate) deadline: Option<Duration>,
}
