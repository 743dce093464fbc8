//! The webhook sink: alerts as JSON POSTs, delivered by a background task through this
//! crate's own [`RetryLayer`] and [`CircuitBreakerLayer`].
//!
//! # What protects the service that raised the alert
//!
//! [`WebhookSink::deliver`] serialises the alert and pushes it onto a bounded queue: it never
//! waits for the network. When the queue is full the *oldest* alert is dropped and counted
//! (`dropped` in [`SinkStats`]), so a slow or dead endpoint costs bounded memory and
//! nothing else. A background task posts the alerts one at a time. Redirects are never
//! followed: a 3xx is a failed delivery.
//!
//! # What protects the endpoint
//!
//! Each POST goes through this stack, built once with the sink:
//!
//! ```text
//! RetryLayer (HttpClassifier)  ->  CircuitBreakerLayer (ServerErrorsAsFailures)  ->  timeout  ->  client
//! ```
//!
//! * **Retries** ([`RetryLayer`] with [`HttpClassifier`]): by default 3 attempts in all,
//!   exponential backoff from 500 ms (x2, capped at 30 s) with full jitter, the retry budget
//!   (retries add at most 20 % on top of deliveries, plus 10 per second), `Retry-After`
//!   honoured up to 30 s. Connection errors, timeouts, 502, 503, 504, 429 and 408 are
//!   retried; other statuses are final.
//! * **Circuit breaker** ([`CircuitBreakerLayer`], named `webhook`): every *attempt* is
//!   recorded (5xx, 429, transport errors and timeouts are failures); by default 5
//!   consecutive failures open it for 30 s. While it is open deliveries fail at once,
//!   without connecting, and are counted in `failed` and `rejected` with the reason logged.
//!   After the wait one probe is let through: its success closes the breaker. The retry layer
//!   never retries a [`CircuitOpen`] rejection.
//! * **Timeout**: each attempt (connect included) is bounded by
//!   [`WebhookSinkBuilder::timeout`]; the breaker sees a timeout as a failure.
//!
//! [`WebhookSink::breaker`] and [`WebhookSink::retry`] return the handles, which are
//! [`StatusProvider`](crate::status::StatusProvider)s: register them to put the webhook's
//! breaker and retry counters on the status page. Their events go to a private
//! [`EventBus`], not the alert manager's, so that the webhook's own
//! breaker opening cannot raise an alert that is posted to the same dead webhook.
//!
//! ## Why POSTs are retried
//!
//! The retry layer only replays idempotent requests, and POST is not idempotent by HTTP's
//! rules. A webhook delivery is made idempotent by construction: every alert gets a unique
//! id, sent as the `Idempotency-Key` header and as `"id"` in the JSON body, identical on
//! every attempt of that alert, and the request carries the [`Idempotent`] extension. A
//! receiver that deduplicates on the key sees each alert once; one that does not may see an
//! alert twice when a response is lost after the receiver processed it, which for alerts
//! is the better failure than losing it. Set [`WebhookSinkBuilder::max_attempts`] to 1 to
//! never replay.
//!
//! # What protects the network
//!
//! * Only `http` and `https` URLs are accepted, at build time.
//! * The URL's userinfo becomes an `Authorization: Basic` header and never appears in logs,
//!   `Debug` output or errors; neither does the query string (tokens often live there).
//! * Unless [`WebhookSinkBuilder::allow_private_destinations`] is set, every connection's
//!   *resolved* address is checked and refused when it is loopback, private, link-local,
//!   shared (CGNAT), unique-local, unspecified, broadcast or multicast, so that a URL given at
//!   run time cannot reach internal services. Numeric spellings resolve to the same address
//!   and are refused too: `2130706433`, `0x7f.1` and `[::ffff:127.0.0.1]` are all 127.0.0.1.
//!   The check runs in the connector ([`GuardedConnector`]) on the addresses it is about to
//!   connect to, so DNS answers that change between checks do not slip through.
//!
//! # The client
//!
//! The default client is hyper-util's legacy client over [`GuardedConnector`] (plain `http`).
//! For `https`, build any tower service with the [`WebhookClient`] signature (say a TLS
//! client around [`GuardedConnector`]) and pass it to [`WebhookSinkBuilder::client`]: it is
//! wrapped in the same retry, breaker and timeout stack.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower::timeout::Timeout;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt};
use tower_layer::Layer;
use tower_service::Service;

use super::sink::{AlertSink, SinkStats};
use super::{Alert, Severity};
use crate::circuit_breaker::http::ServerErrorsAsFailures;
use crate::circuit_breaker::{
    CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer, CircuitOpen, NoKey,
};
use crate::error::ConfigError;
use crate::event::EventBus;
use crate::pressure::PressureMonitor;
use crate::retry::http::{HttpClassifier, Idempotent};
use crate::retry::{Backoff, Jitter, Retry, RetryLayer};

/// The client signature the webhook sink posts through: any cloneable tower service from a
/// request with a full body to a response whose body is discarded.
pub type WebhookClient =
    BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<()>, BoxError>;

/// The protected stack every delivery goes through (see the [module docs](self)), boxed
/// once at build time (one allocation per delivery for the boxed future; off any request
/// path).
pub(super) type Protected =
    BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<()>, BoxError>;

/// The concrete stack before boxing.
type Stack =
    Retry<CircuitBreaker<Timeout<WebhookClient>, ServerErrorsAsFailures, NoKey>, HttpClassifier>;

/// Posts alerts as JSON to a URL; see the [module docs](self).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_pressure::alert::{AlertManager, WebhookSink};
/// use tower_pressure::status::StatusRegistry;
///
/// let hook = WebhookSink::builder("http://alerts.internal.example:8080/hook")
///     .timeout(Duration::from_secs(5))
///     .max_attempts(3)
///     .breaker_failure_threshold(5)
///     .breaker_wait(Duration::from_secs(30))
///     .queue_capacity(256)
///     .build()?;
/// let status = StatusRegistry::new();
/// status.register(hook.breaker()).register(hook.retry());
/// let alerts = AlertManager::builder().sink(hook).build()?;
/// # Ok(()) }
/// ```
pub struct WebhookSink {
    queue: Arc<Queue>,
    redacted: Arc<str>,
    retry: RetryLayer<HttpClassifier>,
    breaker: CircuitBreakerHandle,
    /// Per-sink random prefix of the alert ids, so ids of two processes do not collide.
    nonce: u64,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.redacted)
            .field("stats", &self.stats())
            .field("breaker", &self.breaker.state())
            .finish()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        self.queue.notify.notify_one();
    }
}

/// One queued delivery: the alert's id (the `Idempotency-Key`) and its JSON.
struct Item {
    id: String,
    body: Bytes,
}

struct Queue {
    items: Mutex<VecDeque<Item>>,
    capacity: usize,
    notify: Notify,
    closed: AtomicBool,
    seq: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Item>> {
        match self.items.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn push(&self, item: Item) {
        {
            let mut q = self.lock();
            if q.len() >= self.capacity {
                q.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(item);
        }
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<Item> {
        self.lock().pop_front()
    }

    fn stats(&self, retried: u64) -> SinkStats {
        SinkStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            retried,
            rejected: self.rejected.load(Ordering::Relaxed),
            queued: self.lock().len() as u64,
        }
    }
}

/// Configures a [`WebhookSink`].
pub struct WebhookSinkBuilder {
    url: String,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    capacity: usize,
    allow_private: bool,
    client: Option<WebhookClient>,
    monitor: Option<PressureMonitor>,
    breaker_failures: u32,
    breaker_wait: Duration,
}

impl fmt::Debug for WebhookSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSinkBuilder")
            .field("url", &redact_str(&self.url))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("queue_capacity", &self.capacity)
            .field("allow_private", &self.allow_private)
            .field("breaker_failure_threshold", &self.breaker_failures)
            .field("breaker_wait", &self.breaker_wait)
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// Starts configuring a sink posting to `url`.
    pub fn builder(url: impl Into<String>) -> WebhookSinkBuilder {
        WebhookSinkBuilder {
            url: url.into(),
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            capacity: 256,
            allow_private: false,
            client: None,
            monitor: None,
            breaker_failures: 5,
            breaker_wait: Duration::from_secs(30),
        }
    }

    /// The URL without userinfo and query string, as it appears in logs.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// The sink's counters.
    pub fn stats(&self) -> SinkStats {
        self.queue.stats(self.retry.stats().retries)
    }

    /// The handle of the breaker protecting the endpoint (state, metrics, reset); a
    /// [`StatusProvider`](crate::status::StatusProvider).
    pub fn breaker(&self) -> CircuitBreakerHandle {
        self.breaker.clone()
    }

    /// The retry layer of the deliveries (counters, budget); a
    /// [`StatusProvider`](crate::status::StatusProvider).
    pub fn retry(&self) -> RetryLayer<HttpClassifier> {
        self.retry.clone()
    }

    /// The default client: hyper-util's legacy client over a [`GuardedConnector`].
    pub fn default_client(allow_private: bool, connect_timeout: Duration) -> WebhookClient {
        let client: Client<GuardedConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .build(GuardedConnector::new(allow_private).connect_timeout(connect_timeout));
        BoxCloneSyncService::new(
            client
                .map_response(|r| r.map(|_| ()))
                .map_err(|e| -> BoxError { Box::new(e) }),
        )
    }
}

impl WebhookSinkBuilder {
    /// Per-attempt timeout, connection included (default 5 s; must be > 0).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Attempts per alert, the first included (default 3; `1..=11`).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    /// Retries after the first attempt: `max_attempts(n + 1)` (default 2; at most 10).
    pub fn retries(mut self, n: u32) -> Self {
        self.max_attempts = n.saturating_add(1);
        self
    }
    /// Base delay of the exponential backoff (x2 per retry, full jitter; default 500 ms).
    pub fn backoff(mut self, d: Duration) -> Self {
        self.backoff = d;
        self
    }
    /// Cap on one backoff delay and on the server's `Retry-After` (default 30 s).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }
    /// Alerts the queue holds before dropping the oldest (default 256; must be >= 1).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }
    /// Allows loopback, private and link-local destinations (default: refused). Set it for
    /// a webhook on the same host or in the same private network, and in tests.
    pub fn allow_private_destinations(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }
    /// Posts through `client` instead of the default one, e.g. a TLS client built around
    /// [`GuardedConnector`]. It is wrapped in the retry, breaker and timeout stack.
    pub fn client(mut self, client: WebhookClient) -> Self {
        self.client = Some(client);
        self
    }
    /// Reads pressure from `monitor`: no retries at `Critical` and above, backoff doubled at
    /// `High` (default: no monitor, pressure never stops a delivery's retries).
    pub fn monitor(mut self, monitor: PressureMonitor) -> Self {
        self.monitor = Some(monitor);
        self
    }
    /// Consecutive failed attempts that open the breaker (default 5; at least 1).
    pub fn breaker_failure_threshold(mut self, n: u32) -> Self {
        self.breaker_failures = n;
        self
    }
    /// How long the open breaker fails deliveries fast before a probe (default 30 s; > 0).
    pub fn breaker_wait(mut self, d: Duration) -> Self {
        self.breaker_wait = d;
        self
    }

    /// Replaces the URL (the Alertmanager sink derives it from its base URL).
    #[cfg(feature = "alertmanager")]
    pub(super) fn set_url(&mut self, url: String) {
        self.url = url;
    }

    /// Validates the transport settings and builds the protected stack (retry, breaker and
    /// timeout named `name`, on a private bus); shared with the Alertmanager sink.
    pub(super) fn transport(self, name: &'static str) -> Result<Transport, ConfigError> {
        let target = Target::parse(&self.url)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", self.timeout, "must be > 0"));
        }
        if !(1..=11).contains(&self.max_attempts) {
            return Err(ConfigError::new(
                "max_attempts",
                self.max_attempts,
                "must be within 1..=11 (at most 10 retries)",
            ));
        }
        if self.backoff.is_zero() {
            return Err(ConfigError::new("backoff", self.backoff, "must be > 0"));
        }
        if self.capacity == 0 {
            return Err(ConfigError::new(
                "queue_capacity",
                self.capacity,
                "must be >= 1",
            ));
        }
        if self.breaker_failures == 0 {
            return Err(ConfigError::new(
                "breaker_failure_threshold",
                0,
                "must be at least 1",
            ));
        }
        if self.breaker_wait.is_zero() {
            return Err(ConfigError::new(
                "breaker_wait",
                self.breaker_wait,
                "must be > 0",
            ));
        }
        if target.https && self.client.is_none() {
            return Err(ConfigError::new(
                "url",
                &*target.redacted,
                "https needs a TLS-capable client: build one around GuardedConnector and pass it with `client`",
            ));
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "runtime",
                "none",
                "WebhookSink::build must run inside a tokio runtime",
            )
        })?;
        // A private bus: the webhook's own breaker and retry events must not feed the alert
        // manager whose alerts this sink delivers (see the module docs).
        let bus = EventBus::new(16);
        let monitor = self.monitor.unwrap_or_else(|| PressureMonitor::manual().0);
        let retry = RetryLayer::http(monitor)
            .name(name)
            .max_attempts(self.max_attempts)
            .backoff(
                Backoff::exponential(self.backoff, 2.0)
                    .max(self.max_backoff.max(self.backoff))
                    .jitter(Jitter::Full),
            )
            .max_pushback(self.max_backoff)
            .event_bus(bus.clone())
            .build()?;
        let breaker_layer = CircuitBreakerLayer::builder()
            .name(name)
            .failure_threshold(self.breaker_failures)
            .wait_duration(self.breaker_wait)
            .permitted_calls_in_half_open(1)
            .success_threshold(1)
            .event_bus(bus)
            .build()?
            .classifier(ServerErrorsAsFailures);
        let breaker = breaker_layer.handle();
        let client = self
            .client
            .unwrap_or_else(|| WebhookSink::default_client(self.allow_private, self.timeout));
        let stack: Stack = retry.layer(breaker_layer.layer(Timeout::new(client, self.timeout)));
        let svc: Protected = BoxCloneSyncService::new(stack);
        Ok(Transport {
            svc,
            target: Arc::new(target),
            retry,
            breaker,
            capacity: self.capacity,
            handle,
        })
    }

    /// Validates the configuration, builds the protection stack and starts the delivery
    /// task.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `url` (not http(s), unparsable, `https` with the default
    /// client), `timeout`, `max_attempts`, `backoff`, `queue_capacity`,
    /// `breaker_failure_threshold`, `breaker_wait`, or `runtime` outside a tokio runtime.
    pub fn build(self) -> Result<WebhookSink, ConfigError> {
        let Transport {
            svc,
            target,
            retry,
            breaker,
            capacity,
            handle,
        } = self.transport("webhook")?;
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            capacity,
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        });
        let redacted = target.redacted.clone();
        let worker = Worker {
            queue: queue.clone(),
            svc,
            target,
        };
        handle.spawn(worker.run());
        Ok(WebhookSink {
            queue,
            redacted,
            retry,
            breaker,
            nonce: fastrand::u64(..),
        })
    }
}

impl AlertSink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    fn deliver(&self, alert: &Alert) {
        let seq = self.queue.seq.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016x}-{seq}", self.nonce);
        match payload(alert, &id) {
            Ok(body) => self.queue.push(Item { id, body }),
            Err(e) => {
                self.queue.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "tower_pressure::alert", url = %self.redacted, error = %e, "webhook: cannot serialise alert");
            }
        }
    }

    fn stats(&self) -> Option<SinkStats> {
        Some(self.stats())
    }
}

#[derive(serde::Serialize)]
struct Payload<'a> {
    /// The alert's id, also sent as `Idempotency-Key`: the same on every attempt.
    id: &'a str,
    source: &'static str,
    severity: Severity,
    kind: &'a str,
    rule: &'a str,
    key: Option<&'a str>,
    message: String,
    suppressed: u64,
    fields: BTreeMap<&'a str, &'a str>,
    /// Unix time in seconds, derived from the alert's age (display only).
    timestamp: f64,
}

fn payload(a: &Alert, id: &str) -> Result<Bytes, serde_json::Error> {
    let age = tokio::time::Instant::now().saturating_duration_since(a.at);
    let timestamp = std::time::SystemTime::now()
        .checked_sub(age)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let p = Payload {
        id,
        source: "tower-pressure",
        severity: a.severity,
        kind: &a.kind,
        rule: &a.rule,
        key: a.key.as_deref(),
        message: a.display_message(),
        suppressed: a.suppressed,
        fields: a.fields().collect(),
        timestamp,
    };
    serde_json::to_vec(&p).map(Bytes::from)
}

/// The validated target and the protected stack of a sink, built by
/// [`WebhookSinkBuilder::transport`]: shared by the webhook and Alertmanager sinks.
pub(super) struct Transport {
    pub(super) svc: Protected,
    pub(super) target: Arc<Target>,
    pub(super) retry: RetryLayer<HttpClassifier>,
    pub(super) breaker: CircuitBreakerHandle,
    pub(super) capacity: usize,
    pub(super) handle: tokio::runtime::Handle,
}

/// A parsed, validated destination.
pub(super) struct Target {
    /// The URI sent (userinfo removed, query kept).
    pub(super) uri: Uri,
    /// `Authorization: Basic ...` from the userinfo, if any.
    pub(super) auth: Option<http::HeaderValue>,
    /// scheme://host[:port]/path, for logs.
    pub(super) redacted: Arc<str>,
    https: bool,
}

impl Target {
    fn parse(url: &str) -> Result<Target, ConfigError> {
        let shown = redact_str(url);
        let uri: Uri = url
            .parse()
            .map_err(|_| ConfigError::new("url", &shown, "not a valid URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(ConfigError::new(
                    "url",
                    &shown,
                    "scheme must be http or https",
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| ConfigError::new("url", &shown, "has no host"))?;
        let host = authority.host();
        if host.is_empty() {
            return Err(ConfigError::new("url", &shown, "has no host"));
        }
        let hostport = match authority.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let auth = authority
            .as_str()
            .rsplit_once('@')
            .map(|(userinfo, _)| {
                let decoded = percent_decode(userinfo);
                let mut v = http::HeaderValue::try_from(format!("Basic {}", base64(&decoded)))
                    .map_err(|_| ConfigError::new("url", &shown, "invalid userinfo"))?;
                v.set_sensitive(true);
                Ok::<_, ConfigError>(v)
            })
            .transpose()?;
        let path = uri.path();
        let pq = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or(path);
        let scheme = if https { "https" } else { "http" };
        let clean: Uri = format!("{scheme}://{hostport}{pq}")
            .parse()
            .map_err(|_| ConfigError::new("url", &shown, "not a valid URL"))?;
        Ok(Target {
            uri: clean,
            auth,
            redacted: Arc::from(format!("{scheme}://{hostport}{path}")),
            https,
        })
    }
}

/// The URL with userinfo, query and fragment removed, for messages about unparsable input.
pub(super) fn redact_str(url: &str) -> String {
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..cut];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = auth.rsplit_once('@').map(|(_, h)| h).unwrap_or(auth);
            format!("{scheme}://{host}{path}")
        }
        None => url
            .rsplit_once('@')
            .map(|(_, h)| h)
            .unwrap_or(url)
            .to_string(),
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = match chunk {
            [a, b, c] => (*a as u32) << 16 | (*b as u32) << 8 | *c as u32,
            [a, b] => (*a as u32) << 16 | (*b as u32) << 8,
            [a] => (*a as u32) << 16,
            _ => 0,
        };
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Worker {
    queue: Arc<Queue>,
    svc: Protected,
    target: Arc<Target>,
}

impl Worker {
    async fn run(mut self) {
        loop {
            match self.queue.pop() {
                Some(item) => self.deliver(item).await,
                None => {
                    if self.queue.closed.load(Ordering::Acquire) {
                        return;
                    }
                    self.queue.notify.notified().await;
                }
            }
        }
    }

    fn request(&self, item: Item) -> http::Request<Full<Bytes>> {
        let mut req = http::Request::new(Full::new(item.body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.target.uri.clone();
        // Replayable by the retry layer: see "Why POSTs are retried" in the module docs.
        req.extensions_mut().insert(Idempotent);
        let h = req.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("tower-pressure-alerts"),
        );
        // The id is hex, '-' and digits: always a valid header value.
        if let Ok(v) = http::HeaderValue::try_from(item.id) {
            h.insert(http::HeaderName::from_static("idempotency-key"), v);
        }
        if let Some(a) = &self.target.auth {
            h.insert(http::header::AUTHORIZATION, a.clone());
        }
        req
    }

    async fn deliver(&mut self, item: Item) {
        let req = self.request(item);
        let result = match self.svc.ready().await {
            Ok(svc) => svc.call(req).await,
            Err(e) => Err(e),
        };
        let error = match result {
            Ok(resp) if resp.status().is_success() => {
                self.queue.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(resp) if resp.status().is_redirection() => {
                format!("status {} (redirects are not followed)", resp.status())
            }
            Ok(resp) => format!("status {}", resp.status()),
            Err(e) => {
                if e.is::<CircuitOpen>() {
                    self.queue.rejected.fetch_add(1, Ordering::Relaxed);
                }
                error_chain(&*e)
            }
        };
        self.queue.failed.fetch_add(1, Ordering::Relaxed);
        // Only the redacted URL is logged: never userinfo or query.
        tracing::warn!(target: "tower_pressure::alert", url = %self.target.redacted, error = %error, "webhook delivery failed");
    }
}

pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Refused destination: the resolved address is loopback, private, link-local or otherwise
/// not publicly routable.
#[derive(Debug, Clone)]
pub struct ForbiddenDestination {
    addr: IpAddr,
    why: &'static str,
}

impl ForbiddenDestination {
    /// The refused address (IPv4-mapped IPv6 addresses are shown as IPv4).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }
}

impl fmt::Display for ForbiddenDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "destination {} refused: {} address", self.addr, self.why)
    }
}

impl std::error::Error for ForbiddenDestination {}

/// Why `ip` is not a public destination, or `None` when it is. IPv4-mapped and
/// IPv4-compatible IPv6 addresses are judged as the IPv4 address they carry.
///
/// ```
/// use tower_pressure::alert::forbidden_reason;
/// assert_eq!(forbidden_reason("::ffff:127.0.0.1".parse().unwrap()), Some("loopback"));
/// assert_eq!(forbidden_reason("10.1.2.3".parse().unwrap()), Some("private"));
/// assert_eq!(forbidden_reason("93.184.216.34".parse().unwrap()), None);
/// ```
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                // Deprecated IPv4-compatible form ::a.b.c.d (not :: or ::1).
                if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
                    IpAddr::V4(Ipv4Addr::new(
                        (s[6] >> 8) as u8,
                        s[6] as u8,
                        (s[7] >> 8) as u8,
                        s[7] as u8,
                    ))
                } else {
                    IpAddr::V6(v6)
                }
            }
        },
        v4 => v4,
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (CGNAT)")
    } else if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("broadcast, multicast or reserved")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s0 = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if (s0 & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (s0 & 0xfe00) == 0xfc00 {
        Some("unique-local (private)")
    } else if (s0 & 0xffc0) == 0xfec0 {
        Some("site-local (private)")
    } else if ip.is_multicast() {
        Some("broadcast, multicast or reserved")
    } else {
        None
    }
}

fn check(addr: IpAddr) -> Result<(), ForbiddenDestination> {
    match forbidden_reason(addr) {
        Some(why) => Err(ForbiddenDestination {
            addr: canonical(addr),
            why,
        }),
        None => Ok(()),
    }
}

/// A DNS resolver that refuses names resolving to any non-public address (see the
/// [module docs](self)); the addresses it returns are the ones the connector connects to.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    inner: GaiResolver,
    allow_private: bool,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = BoxFut<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let fut = self.inner.call(name);
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = fut.await?.collect();
            if !allow {
                for a in &addrs {
                    check(a.ip())?;
                }
            }
            Ok(addrs.into_iter())
        })
    }
}

/// hyper-util's `HttpConnector` with every destination checked (see the
/// [module docs](self)). Host names go through [`GuardedResolver`]; IP literals, which the
/// `HttpConnector` would connect to without resolving, are checked here first.
///
/// It does not enforce the `http` scheme, so a TLS connector can wrap it.
#[derive(Debug, Clone)]
pub struct GuardedConnector {
    http: HttpConnector<GuardedResolver>,
    allow_private: bool,
}

impl GuardedConnector {
    /// A connector refusing non-public destinations unless `allow_private`.
    pub fn new(allow_private: bool) -> Self {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            inner: GaiResolver::new(),
            allow_private,
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        Self {
            http,
            allow_private,
        }
    }

    /// Sets the TCP connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.http.set_connect_timeout(Some(d));
        self
    }
}

impl Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFut<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if !self.allow_private {
            let host = uri.host().unwrap_or("");
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>()
                && let Err(e) = check(ip)
            {
                return Box::pin(async move { Err(e.into()) });
            }
        }
        let fut = self.http.call(uri);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CircuitState;

    #[test]
    fn numeric_forms_of_loopback_are_loopback() {
        for s in ["127.0.0.1", "::ffff:127.0.0.1", "::1", "::127.0.0.1"] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(forbidden_reason(ip), Some("loopback"), "{s}");
        }
        for s in ["10.0.0.1", "172.16.5.4", "192.168.1.1", "fd00::1"] {
            assert!(forbidden_reason(s.parse().unwrap()).is_some(), "{s}");
        }
        for s in ["169.254.169.254", "fe80::1"] {
            assert_eq!(
                forbidden_reason(s.parse().unwrap()),
                Some("link-local"),
                "{s}"
            );
        }
        assert_eq!(forbidden_reason("8.8.8.8".parse().unwrap()), None);
        assert_eq!(forbidden_reason("2001:4860::8888".parse().unwrap()), None);
    }

    #[test]
    fn target_strips_userinfo_and_query_from_logs() {
        let t = Target::parse("http://bob:s3cr%65t@example.com:8080/hook?token=abc").unwrap();
        assert_eq!(&*t.redacted, "http://example.com:8080/hook");
        assert_eq!(t.uri.to_string(), "http://example.com:8080/hook?token=abc");
        // bob:s3cret
        assert_eq!(t.auth.unwrap().to_str().unwrap(), "Basic Ym9iOnMzY3JldA==");
        assert_eq!(redact_str("ftp://u:p@h/x?q=1"), "ftp://h/x");
    }

    #[test]
    fn schemes() {
        for bad in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "example.com/x",
            "gopher://a",
        ] {
            let e = Target::parse(bad).err().unwrap();
            assert_eq!(e.field(), "url", "{bad}");
        }
        assert!(Target::parse("https://example.com/").unwrap().https);
    }

    /// Lets the worker task run until `f` holds (paused time: yields, then lets the
    /// runtime auto-advance to the next timer, e.g. a retry backoff).
    async fn settle(mut f: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_fails_fast_and_probes_after_the_wait() {
        use std::sync::atomic::AtomicU32;
        let calls = Arc::new(AtomicU32::new(0));
        let up = Arc::new(AtomicBool::new(false));
        let (c, u) = (calls.clone(), up.clone());
        let client =
            BoxCloneSyncService::new(tower::service_fn(move |req: http::Request<Full<Bytes>>| {
                c.fetch_add(1, Ordering::SeqCst);
                let up = u.load(Ordering::SeqCst);
                async move {
                    assert!(req.headers().contains_key("idempotency-key"));
                    if up {
                        Ok(http::Response::new(()))
                    } else {
                        Err::<_, BoxError>(
                            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
                        )
                    }
                }
            }));
        // Defaults: 3 attempts, breaker opens after 5 consecutive failures for 30 s.
        let hook = WebhookSink::builder("http://hooks.example.com/x")
            .client(client)
            .build()
            .unwrap();
        let breaker = hook.breaker();
        let alert = |n: u32| Alert::new(Severity::Warning, "t", format!("alert {n}"));

        // Alert 1: three attempts, all refused.
        hook.deliver(&alert(1));
        settle(|| hook.stats().failed == 1).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(hook.stats().retried, 2);
        assert_eq!(breaker.state(), CircuitState::Closed);
        // Alert 2: the 5th failed attempt opens the breaker; the third attempt is refused.
        hook.deliver(&alert(2));
        settle(|| hook.stats().failed == 2).await;
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(hook.stats().rejected, 1);
        // Alerts 3..=12 fail fast: the client is never called.
        for n in 3..=12 {
            hook.deliver(&alert(n));
        }
        settle(|| hook.stats().failed == 12).await;
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(hook.stats().rejected, 11);
        assert_eq!(hook.stats().delivered, 0);
        // After the wait one probe goes out; the endpoint is back, the breaker closes.
        tokio::time::advance(Duration::from_secs(30)).await;
        up.store(true, Ordering::SeqCst);
        hook.deliver(&alert(13));
        settle(|| hook.stats().delivered == 1).await;
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        assert_eq!(breaker.state(), CircuitState::Closed);
        let m = breaker.metrics();
        assert_eq!((m.failures, m.successes, m.rejected), (5, 1, 11));
    }

    #[tokio::test]
    async fn builder_validates_protection_settings() {
        let b = || WebhookSink::builder("http://example.com/x");
        assert_eq!(b().retries(11).build().unwrap_err().field(), "max_attempts");
        assert_eq!(
            b().max_attempts(0).build().unwrap_err().field(),
            "max_attempts"
        );
        assert_eq!(
            b().breaker_failure_threshold(0)
                .build()
                .unwrap_err()
                .field(),
            "breaker_failure_threshold"
        );
        assert_eq!(
            b().breaker_wait(Duration::ZERO)
                .build()
                .unwrap_err()
                .field(),
            "breaker_wait"
        );
        assert_eq!(
            b().backoff(Duration::ZERO).build().unwrap_err().field(),
            "backoff"
        );
        assert!(b().retries(10).build().is_ok());
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
