//! Tenant key extractors.

use std::borrow::Cow;

use crate::constraints::HasExtensions;

/// Picks a request's tenant; `None` uses the layer's default tenant.
///
/// Implemented by [`HeaderKey`], [`ExtensionKey`] and closures `Fn(&Req) -> Option<String>`.
pub trait TenantKey<Req> {
    /// The request's tenant.
    fn tenant<'a>(&self, req: &'a Req) -> Option<Cow<'a, str>>;
}

impl<F, Req> TenantKey<Req> for F
where
    F: Fn(&Req) -> Option<String>,
{
    fn tenant<'a>(&self, req: &'a Req) -> Option<Cow<'a, str>> {
        self(req).map(Cow::Owned)
    }
}

/// The tenant is the value of a header (borrowed, no allocation), e.g. `x-tenant`.
#[derive(Debug, Clone)]
pub struct HeaderKey(http::HeaderName);

impl HeaderKey {
    /// Reads `header`.
    pub fn new(header: http::HeaderName) -> Self {
        Self(header)
    }
    /// Reads `x-tenant`.
    pub fn x_tenant() -> Self {
        Self(http::HeaderName::from_static("x-tenant"))
    }
}

impl<B> TenantKey<http::Request<B>> for HeaderKey {
    fn tenant<'a>(&self, req: &'a http::Request<B>) -> Option<Cow<'a, str>> {
        req.headers()
            .get(&self.0)
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
            .map(Cow::Borrowed)
    }
}

/// A tenant set by an earlier layer (authentication) as a request extension.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(pub String);

/// The tenant is the request's [`TenantId`] extension.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtensionKey;

impl<Req: HasExtensions> TenantKey<Req> for ExtensionKey {
    fn tenant<'a>(&self, req: &'a Req) -> Option<Cow<'a, str>> {
        req.extensions()
            .get::<TenantId>()
            .map(|t| Cow::Borrowed(t.0.as_str()))
    }
}
