//! LLM provider rate limits as pressure: the budget a provider reports in its response
//! headers becomes a signal of the [`PressureMonitor`](crate::PressureMonitor), opens the
//! provider's breaker before its budget runs out, and charges the tokens spent to the
//! tenant's quota.
//!
//! LLM APIs say how much budget is left on every response:
//!
//! | provider | headers | reset format |
//! |---|---|---|
//! | OpenAI | `x-ratelimit-{limit,remaining,reset}-{tokens,requests}` | duration, `"6m0s"`, `"1s"`, `"20ms"` |
//! | Anthropic | `anthropic-ratelimit-{tokens,requests}-{limit,remaining,reset}` | RFC 3339 time |
//!
//! [`ProviderLimitsLayer`] sits on the outbound client (inside the breaker, where each
//! attempt's response is seen) and reads them into one [`ProviderLimits`] table, one entry per
//! provider, registered up front by name and host (the key
//! [`HostKey`](crate::circuit_breaker::http::HostKey) gives the provider's breaker). A
//! response from a host that is not registered is not read. Malformed, missing or
//! contradictory values (not a number, remaining above limit, a zero limit, one of the pair
//! missing) are ignored with a `debug` tracing event (target
//! `tower_pressure::provider_limits`); a malformed reset keeps the budget without a reset time.
//!
//! # The signal
//!
//! [`ProviderLimits::gauges`] registers one custom gauge per provider,
//! `llm_budget_used:<name>`: the share of the budget used, in percent, the higher of the
//! token and request budgets (`100 * (limit - remaining) / limit`). Once a budget's reset time
//! has passed it counts 0: the provider refilled it, the next response will say by how much.
//! Default thresholds: Elevated 50 %, High 80 %; Critical and Emergency are out of reach
//! (1000 and 2000): one provider's spent budget is not a process-wide emergency, and at
//! `Critical` the retry layer stops retrying, so it would stop rerouting to the other
//! provider just when that is needed. Through the level the rest of the stack reacts as to
//! any other pressure: the degradation policy tightens `max_tokens`, the adaptive limiter
//! scales its limit down. Pass your own [`thresholds`](ProviderLimitsBuilder::thresholds) to
//! let the budget drive the level higher.
//!
//! # Switching provider before the 429
//!
//! When a response leaves a budget at or below its reserve with its reset still ahead (the
//! reserve: `reserve_percent` of the limit, default 1 %; for tokens at least what the last
//! measured request spent, since the next one would likely not fit; 0 remaining always), the provider's breaker key is
//! opened (`OPEN`, not `FORCED_OPEN`) until the reset, capped at `max_open` (default 60 s).
//! Calls get `CircuitOpen` at once, so a fallback or the retry layer's fallback keys send them
//! to the next provider; after the wait the breaker goes through `HALF_OPEN` as after any
//! trip, and its probe tells whether the budget is back. A breaker already open, or in an
//! operator state, is left alone.
//!
//! # Tokens as quota units
//!
//! If the request carries a [`QuotaUsage`] (a [`QuotaLayer`](crate::quota::QuotaLayer) outside
//! with a custom-unit limit), the drop of `remaining-tokens` since the previous response of
//! the same provider, within one reset window, is charged to it. With requests in flight
//! concurrently the drop is charged to whichever request's response reported it: the totals
//! are right, the attribution per request is approximate.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::PressureMonitor;
//! use tower_pressure::provider_limits::ProviderLimits;
//!
//! let limits = ProviderLimits::builder()
//!     .provider("openai", "api.openai.com")
//!     .build()?;
//! let monitor = limits.gauges(PressureMonitor::builder().without_system_sources()).build()?;
//! let client = ServiceBuilder::new().layer(limits.layer()).service(service_fn(
//!     |_req: http::Request<()>| async {
//!         Ok::<_, tower::BoxError>(
//!             http::Response::builder()
//!                 .header("x-ratelimit-limit-tokens", "1000")
//!                 .header("x-ratelimit-remaining-tokens", "200")
//!                 .header("x-ratelimit-reset-tokens", "30s")
//!                 .body(())?,
//!         )
//!     },
//! ));
//! let req = http::Request::get("https://api.openai.com/v1/chat/completions").body(())?;
//! client.oneshot(req).await?;
//! assert_eq!(limits.used_percent("openai"), Some(80.0));
//! monitor.sample_now();
//! assert_eq!(monitor.level(), tower_pressure::PressureLevel::High);
//! # Ok(()) }
//! ```

mod future;
mod headers;
mod layer;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use self::future::ResponseFuture;
use self::headers::Budget;
pub use self::layer::{ProviderLimitsLayer, ProviderLimitsService};
use crate::circuit_breaker::CircuitBreakerHandle;
use crate::error::ConfigError;
use crate::pressure::{PressureMonitorBuilder, Thresholds};
use crate::quota::QuotaUsage;

const UNKNOWN: u64 = u64::MAX;

/// One budget's atomics. `reset_at`: nanoseconds since the table's epoch, `UNKNOWN` if none.
#[derive(Debug)]
struct Dim {
    limit: AtomicU64,
    remaining: AtomicU64,
    reset_at: AtomicU64,
}

impl Dim {
    fn new() -> Self {
        Self {
            limit: AtomicU64::new(UNKNOWN),
            remaining: AtomicU64::new(UNKNOWN),
            reset_at: AtomicU64::new(UNKNOWN),
        }
    }

    /// Used share in percent at `t`, 0 once the reset passed, `None` if never reported.
    fn used(&self, t: u64) -> Option<f64> {
        let limit = self.limit.load(Ordering::Relaxed);
        let remaining = self.remaining.load(Ordering::Relaxed);
        if limit == UNKNOWN || remaining == UNKNOWN || limit == 0 {
            return None;
        }
        let reset = self.reset_at.load(Ordering::Relaxed);
        if reset != UNKNOWN && t >= reset {
            return Some(0.0);
        }
        Some(100.0 * (limit.saturating_sub(remaining)) as f64 / limit as f64)
    }

    fn snapshot(&self, t: u64) -> Option<BudgetSnapshot> {
        let limit = self.limit.load(Ordering::Relaxed);
        let remaining = self.remaining.load(Ordering::Relaxed);
        if limit == UNKNOWN || remaining == UNKNOWN {
            return None;
        }
        let reset = self.reset_at.load(Ordering::Relaxed);
        Some(BudgetSnapshot {
            limit,
            remaining,
            reset_in: (reset != UNKNOWN).then(|| Duration::from_nanos(reset.saturating_sub(t))),
            used_percent: self.used(t).unwrap_or(0.0),
        })
    }

    /// Stores a report; returns the previous remaining value if it is comparable (same
    /// window: the previous reset has not passed).
    fn store(&self, b: &Budget, t: u64) -> Option<u64> {
        let reset_at = b
            .reset_in
            .map_or(UNKNOWN, |d| t.saturating_add(nanos(d)).min(UNKNOWN - 1));
        let prev_reset = self.reset_at.swap(reset_at, Ordering::Relaxed);
        self.limit.store(b.limit, Ordering::Relaxed);
        let prev = self.remaining.swap(b.remaining, Ordering::Relaxed);
        let same_window = prev != UNKNOWN && (prev_reset == UNKNOWN || t < prev_reset);
        same_window.then_some(prev)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(UNKNOWN - 1)
}

#[derive(Debug)]
pub(crate) struct Provider {
    name: Arc<str>,
    key: Arc<str>,
    tokens: Dim,
    requests: Dim,
    near_exhausted: AtomicU64,
    tokens_charged: AtomicU64,
    /// Tokens the last measured response spent: a budget below it will not fit the next one.
    last_spent: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    providers: Vec<Provider>,
    reserve_percent: f64,
    max_open: Duration,
    thresholds: Thresholds,
    breaker: Option<CircuitBreakerHandle>,
    epoch: Instant,
}

impl Shared {
    fn t(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.epoch))
    }

    pub(crate) fn index_of(&self, key: &str) -> Option<usize> {
        self.providers.iter().position(|p| &*p.key == key)
    }

    /// Reads one response's headers into provider `i`. Runs when the response head arrives.
    pub(crate) fn observe(&self, i: usize, h: &http::HeaderMap, quota: Option<&QuotaUsage>) {
        let Some(p) = self.providers.get(i) else {
            return;
        };
        let r = headers::read(h, SystemTime::now());
        let t = self.t();
        if let Some(b) = &r.tokens
            && let Some(prev) = p.tokens.store(b, t)
            && prev > b.remaining
        {
            // `store` ran for every token report; only a drop within one window is spent.
            let spent = prev - b.remaining;
            p.last_spent.store(spent, Ordering::Relaxed);
            p.tokens_charged.fetch_add(spent, Ordering::Relaxed);
            if let Some(q) = quota {
                q.record(spent);
            }
        }
        if let Some(b) = &r.requests {
            p.requests.store(b, t);
        }
        for (what, b) in [("tokens", r.tokens), ("requests", r.requests)] {
            let Some(b) = b else { continue };
            let mut reserve = (b.limit as f64 * self.reserve_percent / 100.0).floor() as u64;
            if what == "tokens" {
                // The next request will likely cost what the last one did.
                reserve = reserve.max(p.last_spent.load(Ordering::Relaxed).saturating_sub(1));
            }
            let Some(reset_in) = b.reset_in.filter(|d| !d.is_zero()) else {
                continue;
            };
            if b.remaining > reserve && b.remaining > 0 {
                continue;
            }
            let wait = reset_in.min(self.max_open);
            p.near_exhausted.fetch_add(1, Ordering::Relaxed);
            let opened = self.breaker.as_ref().is_some_and(|handle| {
                let reason = format!(
                    "provider {} {what} budget near exhausted: {}/{} left, resets in {} ms",
                    p.name,
                    b.remaining,
                    b.limit,
                    reset_in.as_millis()
                );
                handle.open_for(Some(&p.key), wait, &reason)
            });
            tracing::info!(target: "tower_pressure::provider_limits", provider = %p.name, budget = what, remaining = b.remaining, limit = b.limit, reset_ms = reset_in.as_millis() as u64, breaker_opened = opened, "provider budget near exhausted");
        }
    }
}

/// The budget a provider last reported for tokens or requests.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BudgetSnapshot {
    /// The budget's limit per window.
    pub limit: u64,
    /// What was left at the last response.
    pub remaining: u64,
    /// Time until the reset (zero once it passed), if the provider said.
    pub reset_in: Option<Duration>,
    /// Share used in percent (0 once the reset passed).
    pub used_percent: f64,
}

/// What is known about one provider's budgets.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProviderBudget {
    /// The provider's name.
    pub name: Arc<str>,
    /// Its host (breaker key).
    pub key: Arc<str>,
    /// The token budget.
    pub tokens: Option<BudgetSnapshot>,
    /// The request budget.
    pub requests: Option<BudgetSnapshot>,
    /// How many responses left a budget at or below its reserve.
    pub near_exhausted: u64,
    /// Tokens charged as quota units so far (the remaining-token drops).
    pub tokens_charged: u64,
}

/// The budgets of every registered provider; cheap to clone (one `Arc`). See the
/// [module docs](self).
///
/// ```
/// # fn main() -> Result<(), tower_pressure::ConfigError> {
/// use tower_pressure::provider_limits::ProviderLimits;
/// let limits = ProviderLimits::builder()
///     .provider("openai", "api.openai.com")
///     .provider("anthropic", "api.anthropic.com")
///     .build()?;
/// assert_eq!(limits.used_percent("openai"), Some(0.0));
/// assert_eq!(limits.used_percent("other"), None);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ProviderLimits {
    shared: Arc<Shared>,
}

impl fmt::Debug for ProviderLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderLimits")
            .field("providers", &self.shared.providers.len())
            .finish()
    }
}

impl ProviderLimits {
    /// Starts configuring the table.
    pub fn builder() -> ProviderLimitsBuilder {
        ProviderLimitsBuilder {
            providers: Vec::new(),
            reserve_percent: 1.0,
            max_open: Duration::from_secs(60),
            thresholds: None,
            breaker: None,
        }
    }

    /// The layer that reads responses into this table (clones share it).
    pub fn layer(&self) -> ProviderLimitsLayer {
        ProviderLimitsLayer {
            shared: self.shared.clone(),
        }
    }

    /// Registers one gauge per provider, `llm_budget_used:<name>`, on `builder`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use tower_pressure::PressureMonitor;
    /// use tower_pressure::provider_limits::ProviderLimits;
    /// let limits = ProviderLimits::builder().provider("openai", "api.openai.com").build()?;
    /// let monitor = limits.gauges(PressureMonitor::builder().without_system_sources()).build()?;
    /// assert!(monitor.readings().iter().any(|r| &*r.name == "llm_budget_used:openai"));
    /// # Ok(()) }
    /// ```
    pub fn gauges(&self, mut builder: PressureMonitorBuilder) -> PressureMonitorBuilder {
        for (i, p) in self.shared.providers.iter().enumerate() {
            let shared = self.shared.clone();
            builder = builder.gauge(
                format!("llm_budget_used:{}", p.name),
                Some(self.shared.thresholds),
                move || shared.used(i).unwrap_or(0.0),
            );
        }
        builder
    }

    /// The share of `provider`'s budget used, in percent (the higher of tokens and requests;
    /// 0 when nothing was reported or the reset passed); `None` for an unknown provider.
    pub fn used_percent(&self, provider: &str) -> Option<f64> {
        let i = self
            .shared
            .providers
            .iter()
            .position(|p| &*p.name == provider)?;
        Some(self.shared.used(i).unwrap_or(0.0))
    }

    /// What is known about every provider (allocates).
    pub fn budgets(&self) -> Vec<ProviderBudget> {
        let t = self.shared.t();
        self.shared
            .providers
            .iter()
            .map(|p| ProviderBudget {
                name: p.name.clone(),
                key: p.key.clone(),
                tokens: p.tokens.snapshot(t),
                requests: p.requests.snapshot(t),
                near_exhausted: p.near_exhausted.load(Ordering::Relaxed),
                tokens_charged: p.tokens_charged.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Shared {
    fn used(&self, i: usize) -> Option<f64> {
        let p = self.providers.get(i)?;
        let t = self.t();
        match (p.tokens.used(t), p.requests.used(t)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Configures [`ProviderLimits`]; see [`ProviderLimits::builder`].
#[derive(Debug)]
pub struct ProviderLimitsBuilder {
    providers: Vec<(Arc<str>, Arc<str>)>,
    reserve_percent: f64,
    max_open: Duration,
    thresholds: Option<Thresholds>,
    breaker: Option<CircuitBreakerHandle>,
}

impl ProviderLimitsBuilder {
    /// Registers a provider: `name` for the signal and logs, `host` as the request's host
    /// (and the provider's breaker key, as `HostKey` gives it).
    pub fn provider(mut self, name: impl Into<Arc<str>>, host: impl Into<Arc<str>>) -> Self {
        self.providers.push((name.into(), host.into()));
        self
    }

    /// The reserve below which a budget counts as exhausted, in percent of its limit
    /// (default 1; 0 remaining always counts).
    pub fn reserve_percent(mut self, percent: f64) -> Self {
        self.reserve_percent = percent;
        self
    }

    /// The longest a provider's breaker is opened for a budget that resets later
    /// (default 60 s).
    pub fn max_open(mut self, d: Duration) -> Self {
        self.max_open = d;
        self
    }

    /// Thresholds of the `llm_budget_used:*` gauges (default 50 / 80 / 1000 / 2000: the
    /// budget alone reaches `High` at most, see the module docs).
    pub fn thresholds(mut self, t: Thresholds) -> Self {
        self.thresholds = Some(t);
        self
    }

    /// Opens `handle`'s breaker for the provider's host when a budget is near exhausted
    /// (use a per-key breaker keyed by [`HostKey`](crate::circuit_breaker::http::HostKey)).
    pub fn breaker(mut self, handle: CircuitBreakerHandle) -> Self {
        self.breaker = Some(handle);
        self
    }

    /// Validates and builds the table.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: `provider_limits.reserve_percent` outside
    /// `0..=100`, a zero `provider_limits.max_open`, an empty or duplicate
    /// `provider_limits.provider` name or host.
    pub fn build(self) -> Result<ProviderLimits, ConfigError> {
        if !(0.0..=100.0).contains(&self.reserve_percent) {
            return Err(ConfigError::new(
                "provider_limits.reserve_percent",
                self.reserve_percent,
                "must be within 0..=100",
            ));
        }
        if self.max_open.is_zero() {
            return Err(ConfigError::new(
                "provider_limits.max_open",
                self.max_open,
                "must be greater than zero",
            ));
        }
        for (i, (name, host)) in self.providers.iter().enumerate() {
            if name.is_empty() || host.is_empty() {
                return Err(ConfigError::new(
                    "provider_limits.provider",
                    (&**name, &**host),
                    "name and host must not be empty",
                ));
            }
            if self.providers[..i]
                .iter()
                .any(|(n, h)| n == name || h == host)
            {
                return Err(ConfigError::new(
                    "provider_limits.provider",
                    (&**name, &**host),
                    "duplicate provider name or host",
                ));
            }
        }
        let thresholds = match self.thresholds {
            Some(t) => t,
            None => Thresholds::new(50.0, 80.0, 1000.0, 2000.0)?,
        };
        Ok(ProviderLimits {
            shared: Arc::new(Shared {
                providers: self
                    .providers
                    .into_iter()
                    .map(|(name, key)| Provider {
                        name,
                        key,
                        tokens: Dim::new(),
                        requests: Dim::new(),
                        near_exhausted: AtomicU64::new(0),
                        tokens_charged: AtomicU64::new(0),
                        last_spent: AtomicU64::new(0),
                    })
                    .collect(),
                reserve_percent: self.reserve_percent,
                max_open: self.max_open,
                thresholds,
                breaker: self.breaker,
                epoch: Instant::now(),
            }),
        })
    }
}

/// Section `provider_limits`, one entry per provider: what its budgets were at the last
/// response. Metrics (label `provider`, and `budget` = `tokens` / `requests`):
/// `tower_pressure_provider_budget_used_percent`, `tower_pressure_provider_budget_remaining`,
/// `tower_pressure_provider_budget_reset_seconds`, and the counters
/// `tower_pressure_provider_near_exhausted_total`, `tower_pressure_provider_tokens_charged_total`.
///
/// ```
/// # fn main() -> Result<(), tower_pressure::ConfigError> {
/// use tower_pressure::provider_limits::ProviderLimits;
/// use tower_pressure::status::StatusProvider;
/// let limits = ProviderLimits::builder().provider("openai", "api.openai.com").build()?;
/// let s = limits.section();
/// assert_eq!(s.entries[0].info_value("host"), Some("api.openai.com"));
/// # Ok(()) }
/// ```
impl crate::status::StatusProvider for ProviderLimits {
    fn section(&self) -> crate::status::StatusSection {
        use crate::status::StatusSection;
        let mut s = StatusSection::new("provider_limits", "provider_limits");
        for b in self.budgets() {
            let name = &*b.name;
            let mut e = StatusSection::new(name, "provider").info("host", &b.key);
            for (what, snap) in [("tokens", b.tokens), ("requests", b.requests)] {
                let Some(x) = snap else { continue };
                let l = [("provider", name), ("budget", what)];
                e = e
                    .info(what, format!("{}/{} left", x.remaining, x.limit))
                    .gauge(
                        "tower_pressure_provider_budget_used_percent",
                        "Share of the provider's budget used (0 after the reset).",
                        &l,
                        x.used_percent,
                    )
                    .gauge(
                        "tower_pressure_provider_budget_remaining",
                        "Budget left at the provider's last response.",
                        &l,
                        x.remaining as f64,
                    )
                    .gauge(
                        "tower_pressure_provider_budget_reset_seconds",
                        "Time until the provider's budget resets.",
                        &l,
                        x.reset_in.map_or(0.0, |d| d.as_secs_f64()),
                    );
            }
            let l = [("provider", name)];
            e = e
                .counter(
                    "tower_pressure_provider_near_exhausted_total",
                    "Responses that left a budget at or below its reserve.",
                    &l,
                    b.near_exhausted as f64,
                )
                .counter(
                    "tower_pressure_provider_tokens_charged_total",
                    "Tokens charged as quota units (remaining-token drops).",
                    &l,
                    b.tokens_charged as f64,
                );
            s = s.entry(e);
        }
        s
    }
}
