//! The target an attempt is for: the [`RouteKey`] and [`FallbackKeys`] request extensions.
//!
//! Core, so the [circuit breaker](crate::circuit_breaker) (which keys by the route key) and the
//! [retry layer](crate::retry) (which reroutes to the next fallback) read them without
//! importing each other or the [`route`](crate::route) glue, which re-exports them and
//! explains the whole mechanism.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::constraints::HasExtensions;

/// The key of the target (provider, host, region) this attempt is for: a request extension.
///
/// Set by the caller, or by the [`RetryLayer`](crate::retry::RetryLayer) when it reroutes an
/// attempt to a [`FallbackKeys`] entry. The crate's breaker key extractors use it instead of
/// what they would read from the request; the client underneath should send the attempt to
/// the target it names.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RouteKey(Arc<str>);

impl RouteKey {
    /// A route key.
    ///
    /// ```
    /// let k = tower_pressure::route::RouteKey::new("openai");
    /// assert_eq!(k.as_str(), "openai");
    /// ```
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self(key.into())
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RouteKey").field(&&*self.0).finish()
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The targets a request may be rerouted to, in order, when its current target rejects it
/// locally (`CircuitOpen`, `Overloaded`): a request extension. See the [`route` module docs](crate::route).
///
/// Each reroute takes the next key; cloning is cheap (the list is shared).
#[derive(Clone, PartialEq, Eq)]
pub struct FallbackKeys {
    keys: Arc<[Arc<str>]>,
    next: usize,
}

impl FallbackKeys {
    /// Fallbacks in order of preference. Empty keys are kept as given (a key is whatever the
    /// breaker's extractor and the client understand).
    ///
    /// ```
    /// use tower_pressure::route::FallbackKeys;
    /// let f = FallbackKeys::new(["anthropic", "local-llm"]);
    /// assert_eq!(f.remaining().collect::<Vec<_>>(), ["anthropic", "local-llm"]);
    /// ```
    pub fn new<I>(keys: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Arc<str>>,
    {
        Self {
            keys: keys.into_iter().map(Into::into).collect(),
            next: 0,
        }
    }

    /// The fallbacks not tried yet, in order.
    pub fn remaining(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().skip(self.next).map(|k| &**k)
    }

    /// Takes the next fallback, if any.
    pub(crate) fn take_next(&mut self) -> Option<Arc<str>> {
        let k = self.keys.get(self.next)?.clone();
        self.next += 1;
        Some(k)
    }
}

impl fmt::Debug for FallbackKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.remaining()).finish()
    }
}

/// Points `req` at its next fallback: sets its [`RouteKey`] and advances its
/// [`FallbackKeys`]. `false` (and `req` unchanged) when it has none left.
pub(crate) fn reroute<Req: HasExtensions>(req: &mut Req) -> bool {
    let ext = req.extensions_mut();
    let Some(next) = ext
        .get_mut::<FallbackKeys>()
        .and_then(FallbackKeys::take_next)
    else {
        return false;
    };
    ext.insert(RouteKey(next));
    true
}

/// Whether `req` names a fallback it has not tried yet.
pub(crate) fn has_fallback<Req: HasExtensions>(req: &Req) -> bool {
    req.extensions()
        .get::<FallbackKeys>()
        .is_some_and(|f| f.remaining().next().is_some())
}

/// The [`RouteKey`] in `ext`, borrowed.
#[inline]
pub(crate) fn route_key(ext: &http::Extensions) -> Option<Cow<'_, str>> {
    ext.get::<RouteKey>().map(|k| Cow::Borrowed(k.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reroute_walks_the_fallbacks_in_order_then_stops() {
        let mut req = http::Request::new(());
        assert!(!has_fallback(&req));
        assert!(!reroute(&mut req));
        req.extensions_mut().insert(FallbackKeys::new(["b", "c"]));
        assert!(has_fallback(&req));
        assert!(reroute(&mut req));
        assert_eq!(
            req.extensions().get::<RouteKey>(),
            Some(&RouteKey::new("b"))
        );
        assert!(reroute(&mut req));
        assert_eq!(
            req.extensions().get::<RouteKey>(),
            Some(&RouteKey::new("c"))
        );
        assert!(!has_fallback(&req));
        assert!(!reroute(&mut req));
        assert_eq!(
            req.extensions().get::<RouteKey>(),
            Some(&RouteKey::new("c"))
        );
    }

    #[test]
    fn clones_advance_independently() {
        let a = FallbackKeys::new(["x", "y"]);
        let mut b = a.clone();
        assert_eq!(b.take_next().as_deref(), Some("x"));
        assert_eq!(a.remaining().count(), 2);
        assert_eq!(format!("{b:?}"), r#"["y"]"#);
    }
}
