//! The webhook sink: alerts as JSON POSTs, delivered by a background task.
//!
//! # What protects the service that raised the alert
//!
//! [`WebhookSink::deliver`] serialises the alert and pushes it onto a bounded queue: it never
//! waits for the network. When the queue is full the *oldest* alert is dropped and counted
//! (`dropped` in [`SinkStats`]), so a slow or dead endpoint costs bounded memory and
//! nothing else. A background task posts each alert with a per-attempt timeout and a bounded
//! number of retries with exponential backoff (on connection errors, timeouts, 408, 429 and
//! 5xx). Redirects are never followed: a 3xx is a failed delivery.
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
//! For `https`, or to wrap the client in this crate's retry and circuit-breaker layers, build
//! any tower service with the [`WebhookClient`] signature and pass it to
//! [`WebhookSinkBuilder::client`].

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
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt};
use tower_service::Service;

use super::sink::{AlertSink, SinkStats};
use super::{Alert, Severity};
use crate::error::ConfigError;

/// The client signature the webhook sink posts through: any cloneable tower service from a
/// request with a full body to a response whose body is discarded.
pub type WebhookClient =
    BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<()>, BoxError>;

/// Posts alerts as JSON to a URL; see the [module docs](self).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_pressure::alert::{AlertManager, WebhookSink};
///
/// let hook = WebhookSink::builder("http://alerts.internal.example:8080/hook")
///     .timeout(Duration::from_secs(5))
///     .retries(3)
///     .queue_capacity(256)
///     .build()?;
/// let alerts = AlertManager::builder().sink(hook).build()?;
/// # Ok(()) }
/// ```
pub struct WebhookSink {
    queue: Arc<Queue>,
    redacted: Arc<str>,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.redacted)
            .field("stats", &self.queue.stats())
            .finish()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        self.queue.notify.notify_one();
    }
}

struct Queue {
    items: Mutex<VecDeque<Bytes>>,
    capacity: usize,
    notify: Notify,
    closed: AtomicBool,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retried: AtomicU64,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Bytes>> {
        match self.items.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn push(&self, body: Bytes) {
        {
            let mut q = self.lock();
            if q.len() >= self.capacity {
                q.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(body);
        }
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<Bytes> {
        self.lock().pop_front()
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            queued: self.lock().len() as u64,
        }
    }
}

/// Configures a [`WebhookSink`].
pub struct WebhookSinkBuilder {
    url: String,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    capacity: usize,
    allow_private: bool,
    client: Option<WebhookClient>,
}

impl fmt::Debug for WebhookSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSinkBuilder")
            .field("url", &redact_str(&self.url))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("queue_capacity", &self.capacity)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

impl WebhookSink {
    /// Starts configuring a sink posting to `url`.
    pub fn builder(url: impl Into<String>) -> WebhookSinkBuilder {
        WebhookSinkBuilder {
            url: url.into(),
            timeout: Duration::from_secs(5),
            retries: 3,
            backoff: Duration::from_millis(500),
            capacity: 256,
            allow_private: false,
            client: None,
        }
    }

    /// The URL without userinfo and query string, as it appears in logs.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// The sink's counters.
    pub fn stats(&self) -> SinkStats {
        self.queue.stats()
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
    /// Per-attempt timeout (default 5 s; must be > 0).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Retries after the first attempt (default 3; at most 10).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }
    /// Delay before the first retry, doubled for each further one (default 500 ms).
    pub fn backoff(mut self, d: Duration) -> Self {
        self.backoff = d;
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
    /// [`GuardedConnector`], or the default client wrapped in retry and breaker layers.
    pub fn client(mut self, client: WebhookClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Validates the configuration and starts the delivery task.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `url` (not http(s), unparsable, `https` with the default
    /// client), `timeout`, `retries`, `queue_capacity`, or `runtime` outside a tokio runtime.
    pub fn build(self) -> Result<WebhookSink, ConfigError> {
        let target = Target::parse(&self.url)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", self.timeout, "must be > 0"));
        }
        if self.retries > 10 {
            return Err(ConfigError::new(
                "retries",
                self.retries,
                "must be at most 10",
            ));
        }
        if self.capacity == 0 {
            return Err(ConfigError::new(
                "queue_capacity",
                self.capacity,
                "must be >= 1",
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
        let client = self
            .client
            .unwrap_or_else(|| WebhookSink::default_client(self.allow_private, self.timeout));
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            capacity: self.capacity,
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        });
        let redacted = target.redacted.clone();
        let worker = Worker {
            queue: queue.clone(),
            client,
            target: Arc::new(target),
            timeout: self.timeout,
            retries: self.retries,
            backoff: self.backoff,
        };
        handle.spawn(worker.run());
        Ok(WebhookSink { queue, redacted })
    }
}

impl AlertSink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    fn deliver(&self, alert: &Alert) {
        match payload(alert) {
            Ok(body) => self.queue.push(body),
            Err(e) => {
                self.queue.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "tower_pressure::alert", url = %self.redacted, error = %e, "webhook: cannot serialise alert");
            }
        }
    }

    fn stats(&self) -> Option<SinkStats> {
        Some(self.queue.stats())
    }
}

#[derive(serde::Serialize)]
struct Payload<'a> {
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

fn payload(a: &Alert) -> Result<Bytes, serde_json::Error> {
    let age = tokio::time::Instant::now().saturating_duration_since(a.at);
    let timestamp = std::time::SystemTime::now()
        .checked_sub(age)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let p = Payload {
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

/// A parsed, validated destination.
struct Target {
    /// The URI sent (userinfo removed, query kept).
    uri: Uri,
    /// `Authorization: Basic ...` from the userinfo, if any.
    auth: Option<http::HeaderValue>,
    /// scheme://host[:port]/path, for logs.
    redacted: Arc<str>,
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
fn redact_str(url: &str) -> String {
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
    client: WebhookClient,
    target: Arc<Target>,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
}

enum Outcome {
    Delivered,
    Retry(String),
    GiveUp(String),
}

impl Worker {
    async fn run(mut self) {
        loop {
            match self.queue.pop() {
                Some(body) => self.deliver(body).await,
                None => {
                    if self.queue.closed.load(Ordering::Acquire) {
                        return;
                    }
                    self.queue.notify.notified().await;
                }
            }
        }
    }

    async fn deliver(&mut self, body: Bytes) {
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                self.queue.retried.fetch_add(1, Ordering::Relaxed);
                let delay = self.backoff.saturating_mul(1u32 << (attempt - 1).min(16));
                tokio::time::sleep(delay).await;
            }
            match self.attempt(body.clone()).await {
                Outcome::Delivered => {
                    self.queue.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Outcome::Retry(e) => last = e,
                Outcome::GiveUp(e) => {
                    last = e;
                    break;
                }
            }
        }
        self.queue.failed.fetch_add(1, Ordering::Relaxed);
        // Only the redacted URL is logged: never userinfo or query.
        tracing::warn!(target: "tower_pressure::alert", url = %self.target.redacted, error = %last, "webhook delivery failed");
    }

    async fn attempt(&mut self, body: Bytes) -> Outcome {
        let mut req = http::Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.target.uri.clone();
        let h = req.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("tower-pressure-alerts"),
        );
        if let Some(a) = &self.target.auth {
            h.insert(http::header::AUTHORIZATION, a.clone());
        }
        let call = async {
            let svc = self.client.ready().await?;
            svc.call(req).await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Outcome::Retry(format!("timed out after {:?}", self.timeout)),
            Ok(Err(e)) => Outcome::Retry(error_chain(&*e)),
            Ok(Ok(resp)) => {
                let s = resp.status();
                if s.is_success() {
                    Outcome::Delivered
                } else if s.is_redirection() {
                    Outcome::GiveUp(format!("status {s} (redirects are not followed)"))
                } else if s.is_server_error()
                    || s == http::StatusCode::TOO_MANY_REQUESTS
                    || s == http::StatusCode::REQUEST_TIMEOUT
                {
                    Outcome::Retry(format!("status {s}"))
                } else {
                    Outcome::GiveUp(format!("status {s}"))
                }
            }
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
