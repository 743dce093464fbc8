//! `[quotas]`: per-tenant quota groups, tenant assignments and the tenant key.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{ConfigFileError, ErrorKind};
use super::units::HumanDuration;
use crate::event::EventBus;
use crate::pressure::PressureLevel;
use crate::quota::{
    EnforcementAction, ExtensionKey, HeaderKey, Limit, QuotaGroup, QuotaLayer, QuotaLayerBuilder,
    TenantKey,
};

/// What happens above a hard limit (`action`); `throttle` takes `max_delay`, `suspend`
/// takes `suspend_for`, `degrade` takes `degrade_to`.
///
/// ```
/// use tower_pressure::config::{ActionConfig, Config};
/// let c = Config::from_toml(r#"
///     [quotas.groups.free]
///     rate = { hard = 10, action = "throttle", max_delay = "200ms" }
/// "#)?;
/// assert_eq!(c.quotas.groups["free"].rate.as_ref().unwrap().action, ActionConfig::Throttle);
/// # Ok::<(), tower_pressure::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionConfig {
    /// Let through and report.
    Warn,
    /// Reject (the default).
    #[default]
    Reject,
    /// Delay up to `max_delay`, else reject.
    Throttle,
    /// Reject, and every request of the tenant for `suspend_for`.
    Suspend,
    /// Let through with the constraints of level `degrade_to`.
    Degrade,
}

/// One limit: `soft <= hard <= burst` (soft and burst default to hard).
///
/// ```
/// use tower_pressure::config::LimitConfig;
/// let mut l = LimitConfig::default();
/// l.hard = 100;
/// assert_eq!(l.soft, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitConfig {
    /// Soft limit: an event and a status flag (default: `hard`).
    pub soft: Option<u64>,
    /// Hard limit: the action applies.
    pub hard: u64,
    /// Burst limit, allowed for the group's `burst_window` (default: `hard`).
    pub burst: Option<u64>,
    /// What happens above the hard limit: `warn`, `reject` (default), `throttle`,
    /// `suspend` or `degrade`.
    pub action: ActionConfig,
    /// Longest delay of `throttle` (default `"0s"`: always reject).
    pub max_delay: HumanDuration,
    /// Suspension of `suspend` (default `"1m"`).
    pub suspend_for: HumanDuration,
    /// Level of `degrade` (default `critical`).
    pub degrade_to: PressureLevel,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            soft: None,
            hard: 0,
            burst: None,
            action: ActionConfig::Reject,
            max_delay: HumanDuration::secs(0),
            suspend_for: HumanDuration::secs(60),
            degrade_to: PressureLevel::Critical,
        }
    }
}

impl LimitConfig {
    fn limit(&self) -> Limit {
        Limit::tiers(
            self.soft.unwrap_or(self.hard),
            self.hard,
            self.burst.unwrap_or(self.hard),
        )
        .action(match self.action {
            ActionConfig::Warn => EnforcementAction::Warn,
            ActionConfig::Reject => EnforcementAction::Reject,
            ActionConfig::Throttle => EnforcementAction::Throttle {
                max_delay: self.max_delay.get(),
            },
            ActionConfig::Suspend => EnforcementAction::Suspend {
                duration: self.suspend_for.get(),
            },
            ActionConfig::Degrade => EnforcementAction::Degrade(self.degrade_to),
        })
    }
}

/// A quota group.
///
/// ```
/// use tower_pressure::config::GroupConfig;
/// assert_eq!(GroupConfig::default().period.to_string(), "1s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct GroupConfig {
    /// The period of `rate` and `units` (default `"1s"`).
    pub period: HumanDuration,
    /// How long a tenant may stay between hard and burst (default `"10s"`).
    pub burst_window: HumanDuration,
    /// Requests per period (default: unlimited).
    pub rate: Option<LimitConfig>,
    /// Requests in flight (default: unlimited).
    pub concurrency: Option<LimitConfig>,
    /// Custom units (e.g. LLM tokens) per period (default: unlimited).
    pub units: Option<LimitConfig>,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            period: HumanDuration::secs(1),
            burst_window: HumanDuration::secs(10),
            rate: None,
            concurrency: None,
            units: None,
        }
    }
}

/// Where a request's tenant comes from (`tenant_from`).
///
/// ```
/// use tower_pressure::config::TenantKeyConfig;
/// assert_eq!(TenantKeyConfig::default(), TenantKeyConfig::Header);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TenantKeyConfig {
    /// The header named by `tenant_header` (the default).
    #[default]
    Header,
    /// The [`TenantId`](crate::quota::TenantId) extension set by an earlier layer.
    Extension,
}

/// The tenant key extractor a [`QuotasConfig`] builds.
///
/// ```
/// use tower_pressure::config::QuotasConfig;
/// let key = QuotasConfig::default().key()?;
/// # let _ = key;
/// # Ok::<(), tower_pressure::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone)]
pub struct QuotaKey(KeyKind);

#[derive(Debug, Clone)]
enum KeyKind {
    Header(HeaderKey),
    Extension(ExtensionKey),
}

impl<B> TenantKey<http::Request<B>> for QuotaKey {
    fn tenant<'a>(&self, req: &'a http::Request<B>) -> Option<Cow<'a, str>> {
        match &self.0 {
            KeyKind::Header(h) => h.tenant(req),
            KeyKind::Extension(e) => e.tenant(req),
        }
    }
}

/// The `[quotas]` section, mapped onto [`QuotaLayerBuilder`].
///
/// ```
/// use tower_pressure::config::Config;
/// let c = Config::from_toml(r#"
///     [quotas]
///     default_group = "free"
///     tenants = { acme = "pro" }
///     [quotas.groups.free]
///     rate = { hard = 10 }
///     [quotas.groups.pro]
///     rate = { soft = 80, hard = 100, burst = 150 }
/// "#)?;
/// let layer = c.quotas.layer(Default::default())?.expect("groups are configured");
/// # let _ = layer;
/// # Ok::<(), tower_pressure::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QuotasConfig {
    /// Where the tenant comes from: `header` (default) or `extension`.
    pub tenant_from: TenantKeyConfig,
    /// The header of `tenant_from = "header"` (default `"x-tenant"`).
    pub tenant_header: String,
    /// Groups by name (default none: no quota layer).
    pub groups: BTreeMap<String, GroupConfig>,
    /// Tenant to group.
    pub tenants: BTreeMap<String, String>,
    /// The group of unassigned tenants (required with several groups).
    pub default_group: Option<String>,
    /// The tenant of requests without one (default `"default"`).
    pub default_tenant: String,
    /// Most tenants tracked (default 10000).
    pub max_tenants: usize,
    /// An idle tenant may be evicted after this (default `"10m"`).
    pub idle_timeout: HumanDuration,
    /// `retry_after` of a concurrency rejection (default `"1s"`).
    pub concurrency_retry_after: HumanDuration,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            tenant_from: TenantKeyConfig::Header,
            tenant_header: "x-tenant".into(),
            groups: BTreeMap::new(),
            tenants: BTreeMap::new(),
            default_group: None,
            default_tenant: "default".into(),
            max_tenants: 10_000,
            idle_timeout: HumanDuration::secs(600),
            concurrency_retry_after: HumanDuration::secs(1),
        }
    }
}

impl QuotasConfig {
    /// The tenant key extractor.
    ///
    /// # Errors
    /// An invalid header name.
    pub fn key(&self) -> Result<QuotaKey, ConfigFileError> {
        let h = &self.tenant_header;
        Ok(QuotaKey(match self.tenant_from {
            TenantKeyConfig::Header => KeyKind::Header(HeaderKey::new(
                http::HeaderName::try_from(h.as_str()).map_err(|_| {
                    ConfigFileError::new(
                        "quotas.tenant_header",
                        format!("{h:?} is not a valid header name"),
                        ErrorKind::Value,
                    )
                })?,
            )),
            TenantKeyConfig::Extension => KeyKind::Extension(ExtensionKey),
        }))
    }

    /// A [`QuotaLayerBuilder`] with this section applied, reporting to `events`; `None`
    /// when the document has no groups.
    ///
    /// # Errors
    /// Several groups and no `default_group`, or a tenant in a group that does not exist.
    pub fn builder(&self, events: EventBus) -> Result<Option<QuotaLayerBuilder>, ConfigFileError> {
        if self.groups.is_empty() {
            return Ok(None);
        }
        let default_group = match (&self.default_group, self.groups.len()) {
            (Some(g), _) => g.clone(),
            (None, 1) => self.groups.keys().next().cloned().unwrap_or_default(),
            (None, n) => {
                return Err(ConfigFileError::new(
                    "quotas.default_group",
                    format!("required when there are several groups ({n})"),
                    ErrorKind::Value,
                ));
            }
        };
        for (field, group) in self
            .tenants
            .iter()
            .map(|(t, g)| (format!("quotas.tenants.{t}"), g))
            .chain(std::iter::once((
                "quotas.default_group".to_string(),
                &default_group,
            )))
        {
            if !self.groups.contains_key(group) {
                let suggestion =
                    super::error::nearest(group, self.groups.keys().map(String::as_str));
                let mut msg = format!("no group called `{group}`");
                if let Some(s) = &suggestion {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                }
                return Err(ConfigFileError::new(field, msg, ErrorKind::Value));
            }
        }
        let mut b = QuotaLayer::builder()
            .events(events)
            .default_group(&default_group)
            .default_tenant(&self.default_tenant)
            .max_tenants(self.max_tenants)
            .idle_timeout(self.idle_timeout.get())
            .concurrency_retry_after(self.concurrency_retry_after.get());
        for (name, g) in &self.groups {
            let mut q = QuotaGroup::new(name)
                .period(g.period.get())
                .burst_window(g.burst_window.get());
            if let Some(l) = &g.rate {
                q = q.rate(l.limit());
            }
            if let Some(l) = &g.concurrency {
                q = q.concurrency(l.limit());
            }
            if let Some(l) = &g.units {
                q = q.units(l.limit());
            }
            b = b.group(q);
        }
        for (tenant, group) in &self.tenants {
            b = b.assign(tenant, group);
        }
        Ok(Some(b))
    }

    /// Builds the layer (`None` without groups); builder errors come back with the document
    /// path.
    ///
    /// # Errors
    /// The first refused setting.
    pub fn layer(&self, events: EventBus) -> Result<Option<QuotaLayer<QuotaKey>>, ConfigFileError> {
        let key = self.key()?;
        match self.builder(events)? {
            None => Ok(None),
            Some(b) => b.build(key).map(Some).map_err(|e| self.builder_error(e)),
        }
    }

    pub(crate) fn builder_error(&self, e: crate::error::ConfigError) -> ConfigFileError {
        // The builder names groups as `groups[<name>].<limit>.<field>`.
        let field = e.field().to_string();
        if let Some(rest) = field.strip_prefix("groups[")
            && let Some((name, tail)) = rest.split_once(']')
        {
            let tail = tail
                .replace(".soft_limit", ".soft")
                .replace(".hard_limit", ".hard")
                .replace(".burst_limit", ".burst");
            let path = format!("quotas.groups.{name}{tail}");
            let message = format!("{} ({})", e.reason(), e.value());
            return ConfigFileError::new(path, message, ErrorKind::Builder(e));
        }
        ConfigFileError::from_builder("quotas", e, &[])
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigFileError> {
        self.layer(EventBus::default()).map(drop)
    }
}
