//! Host CPU and memory through sysinfo. (The sources work fills this in.)

use std::time::Duration;

use super::Source;
use crate::pressure::BuiltinSources;

/// What the builder asks of the built-in sources.
#[derive(Debug, Clone)]
pub(crate) struct DefaultSourceOptions {
    pub(crate) builtin: BuiltinSources,
    /// The runtime to spawn the lag probe on (`None` for an unstarted monitor).
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    pub(crate) lag_probe_interval: Duration,
}

/// The built-in sources enabled in `opts` that are available on this host.
pub(crate) fn default_sources(opts: &DefaultSourceOptions) -> Vec<Box<dyn Source>> {
    let _ = opts;
    Vec::new()
}
