//! What one check does: an HTTP `GET`, a `grpc.health.v1.Health/Check`, or a user closure.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tower::BoxError;

use crate::error::ConfigError;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// One health check: a probe the [`HealthChecker`](super::HealthChecker) runs on its own task
/// every interval, bounded by its timeout. `Ok(())` passes; an error (or the timeout) fails.
///
/// Build one with [`Check::custom`], [`HttpCheck`] (feature `http`) or `GrpcCheck` (feature
/// `grpc-health`), which convert into a `Check`.
///
/// ```
/// use tower_pressure::health::Check;
/// let check = Check::custom(|| async { Ok(()) });
/// assert_eq!(check.kind(), "custom");
/// ```
#[derive(Clone)]
pub struct Check {
    kind: &'static str,
    target: Arc<str>,
    run: CheckFn,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .finish()
    }
}

impl Check {
    /// A check that runs `f`: `Ok(())` is healthy, any error unhealthy. `f` is called on the
    /// checker's task, never on a request path.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use tower_pressure::health::Check;
    ///
    /// let up = Arc::new(AtomicBool::new(true));
    /// let u = up.clone();
    /// let check = Check::custom(move || {
    ///     let up = u.load(Ordering::Relaxed);
    ///     async move { if up { Ok(()) } else { Err("database unreachable".into()) } }
    /// });
    /// # let _ = check;
    /// ```
    pub fn custom<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self {
            kind: "custom",
            target: Arc::from(""),
            run: Arc::new(move || Box::pin(f())),
        }
    }

    /// `"http"`, `"grpc"` or `"custom"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// What is checked: the URI for HTTP and gRPC checks, empty for a custom check.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub(crate) fn run(&self) -> CheckFuture {
        (self.run)()
    }
}

#[cfg(feature = "http")]
pub use self::http::HttpCheck;

#[cfg(feature = "http")]
mod http {
    use std::ops::RangeInclusive;
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Request, Uri};
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    use super::Check;
    use crate::error::ConfigError;

    /// An HTTP health check: `GET uri` with hyper-util's pooled client; healthy when the
    /// status is in the configured range (default `200..=299`), like Envoy's
    /// `expected_statuses`. Plain `http://` only (the crate ships no TLS connector).
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use tower_pressure::health::{Check, HttpCheck};
    /// let check: Check = HttpCheck::new("http://127.0.0.1:8080/healthz")?
    ///     .healthy_statuses(200..=399)?
    ///     .into();
    /// assert_eq!(check.kind(), "http");
    /// assert!(HttpCheck::new("not a uri").is_err());
    /// assert!(HttpCheck::new("http://x/").unwrap().healthy_statuses(500..=200).is_err());
    /// # Ok(()) }
    /// ```
    #[derive(Debug, Clone)]
    pub struct HttpCheck {
        uri: Uri,
        statuses: RangeInclusive<u16>,
    }

    impl HttpCheck {
        /// Checks `GET uri`.
        ///
        /// # Errors
        /// A [`ConfigError`] (field `health.http.uri`) when `uri` does not parse or is not an
        /// absolute `http://` URI.
        pub fn new(uri: &str) -> Result<Self, ConfigError> {
            let parsed: Uri = uri
                .parse()
                .map_err(|e| ConfigError::new("health.http.uri", uri, format!("{e}")))?;
            if parsed.scheme_str() != Some("http") || parsed.authority().is_none() {
                return Err(ConfigError::new(
                    "health.http.uri",
                    uri,
                    "must be an absolute http:// URI",
                ));
            }
            Ok(Self {
                uri: parsed,
                statuses: 200..=299,
            })
        }

        /// The statuses that count as healthy (inclusive).
        ///
        /// # Errors
        /// A [`ConfigError`] (field `health.http.healthy_statuses`) when the range is empty
        /// or outside `100..=599`.
        pub fn healthy_statuses(mut self, range: RangeInclusive<u16>) -> Result<Self, ConfigError> {
            if range.start() > range.end() || *range.start() < 100 || *range.end() > 599 {
                return Err(ConfigError::new(
                    "health.http.healthy_statuses",
                    &range,
                    "must be a non-empty range within 100..=599",
                ));
            }
            self.statuses = range;
            Ok(self)
        }
    }

    impl From<HttpCheck> for Check {
        fn from(c: HttpCheck) -> Check {
            let client: Client<HttpConnector, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let target: Arc<str> = Arc::from(c.uri.to_string());
            let uri = c.uri;
            let statuses = c.statuses;
            Check {
                kind: "http",
                target,
                run: Arc::new(move || {
                    let client = client.clone();
                    let req = Request::get(uri.clone()).body(Empty::new());
                    let statuses = statuses.clone();
                    Box::pin(async move {
                        let res = client.request(req?).await?;
                        let status = res.status().as_u16();
                        // The body is dropped unread: the connection is not reused then,
                        // which is fine at one check per interval.
                        if statuses.contains(&status) {
                            Ok(())
                        } else {
                            Err(format!("status {status}").into())
                        }
                    })
                }),
            }
        }
    }
}

#[cfg(feature = "grpc-health")]
pub use self::grpc::GrpcCheck;

#[cfg(feature = "grpc-health")]
mod grpc {
    use std::sync::Arc;

    use http::Uri;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    use super::Check;
    use crate::error::ConfigError;

    /// A gRPC health check over the standard `grpc.health.v1.Health/Check` RPC
    /// (`tonic-health`'s client on a hyper-util HTTP/2 client, plaintext): healthy when the
    /// server answers `SERVING` for the service name (empty: the whole server). Any other
    /// status (`NOT_SERVING`, `SERVICE_UNKNOWN`, `UNKNOWN`) or a gRPC error fails.
    ///
    /// ```
    /// # fn main() -> Result<(), tower_pressure::ConfigError> {
    /// use tower_pressure::health::{Check, GrpcCheck};
    /// let check: Check = GrpcCheck::new("http://127.0.0.1:50051")?.service("echo.Echo").into();
    /// assert_eq!(check.kind(), "grpc");
    /// assert!(GrpcCheck::new("ftp://x").is_err());
    /// # Ok(()) }
    /// ```
    #[derive(Debug, Clone)]
    pub struct GrpcCheck {
        origin: Uri,
        service: String,
    }

    impl GrpcCheck {
        /// Checks the server at `origin` (`http://host:port`).
        ///
        /// # Errors
        /// A [`ConfigError`] (field `health.grpc.uri`) when `origin` does not parse or is not
        /// an absolute `http://` URI.
        pub fn new(origin: &str) -> Result<Self, ConfigError> {
            let parsed: Uri = origin
                .parse()
                .map_err(|e| ConfigError::new("health.grpc.uri", origin, format!("{e}")))?;
            if parsed.scheme_str() != Some("http") || parsed.authority().is_none() {
                return Err(ConfigError::new(
                    "health.grpc.uri",
                    origin,
                    "must be an absolute http:// URI",
                ));
            }
            Ok(Self {
                origin: parsed,
                service: String::new(),
            })
        }

        /// The service name to ask about (default empty: the server as a whole).
        pub fn service(mut self, name: impl Into<String>) -> Self {
            self.service = name.into();
            self
        }
    }

    impl From<GrpcCheck> for Check {
        fn from(c: GrpcCheck) -> Check {
            let client: Client<HttpConnector, tonic::body::Body> =
                Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .build_http();
            let target: Arc<str> = Arc::from(format!("{}#{}", c.origin, c.service));
            let origin = c.origin;
            let service = c.service;
            Check {
                kind: "grpc",
                target,
                run: Arc::new(move || {
                    let mut hc = HealthClient::with_origin(client.clone(), origin.clone());
                    let req = HealthCheckRequest {
                        service: service.clone(),
                    };
                    Box::pin(async move {
                        let res = hc.check(req).await?.into_inner();
                        match ServingStatus::try_from(res.status) {
                            Ok(ServingStatus::Serving) => Ok(()),
                            Ok(s) => Err(s.as_str_name().into()),
                            Err(_) => Err(format!("serving status {}", res.status).into()),
                        }
                    })
                }),
            }
        }
    }
}

// Used by the builder to validate names.
pub(crate) fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(
            "health.dependency.name",
            name,
            "must not be empty",
        ));
    }
    Ok(())
}
