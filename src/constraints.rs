//! [`Constraints`]: what a request may spend right now.
//!
//! The [`DegradationLayer`](crate::degradation::DegradationLayer) puts one `Constraints`
//! value on every request (in its extensions, or in a field of its own: see
//! [`HasExtensions`]); handlers read it and do less under pressure: fewer
//! entities, no optional analysis, simpler methods, smaller embeddings, smaller LLM budgets.
//! The helpers mirror seed 000's `ResourceConstraints` API.

use std::fmt;

use tokio::time::Instant;

use crate::pressure::{PressureLevel, Signal};
use crate::priority::Priority;

/// Request types that carry an [`http::Extensions`] map.
///
/// Implemented for `http::Request<B>` and `http::request::Parts`; implement it for your own
/// request type to use the crate's layers with non-HTTP services.
///
/// ```
/// use tower_pressure::constraints::HasExtensions;
/// struct Job { id: u64, ext: http::Extensions }
/// impl HasExtensions for Job {
///     fn extensions(&self) -> &http::Extensions { &self.ext }
///     fn extensions_mut(&mut self) -> &mut http::Extensions { &mut self.ext }
/// }
/// # let _ = Job { id: 1, ext: Default::default() }.id;
/// ```
///
/// The [`Constraints`] of a request live in its extension map by default, and the map's first
/// insert allocates it (three allocations). A request type with a field of its own for them
/// overrides [`constraints`](HasExtensions::constraints) and
/// [`set_constraints`](HasExtensions::set_constraints), and then goes through every layer of
/// the crate, a whole `ResilienceStack` included, without allocating:
///
/// ```
/// use tower_pressure::{Constraints, constraints::HasExtensions};
/// #[derive(Clone)]
/// struct Job { id: u64, constraints: Option<Constraints>, ext: http::Extensions }
/// impl HasExtensions for Job {
///     fn extensions(&self) -> &http::Extensions { &self.ext }
///     fn extensions_mut(&mut self) -> &mut http::Extensions { &mut self.ext }
///     fn constraints(&self) -> Option<&Constraints> { self.constraints.as_ref() }
///     fn set_constraints(&mut self, c: Constraints) { self.constraints = Some(c); }
/// }
/// let mut job = Job { id: 1, constraints: None, ext: Default::default() };
/// job.set_constraints(Constraints::default());
/// assert!(Constraints::from_request(&job).is_some());
/// assert!(job.ext.is_empty(), "nothing went into the map");
/// # let _ = job.id;
/// ```
pub trait HasExtensions {
    /// The extensions map.
    fn extensions(&self) -> &http::Extensions;
    /// The extensions map, mutably.
    fn extensions_mut(&mut self) -> &mut http::Extensions;
    /// The request's constraints, set by a
    /// [`DegradationLayer`](crate::degradation::DegradationLayer) or the caller. By default
    /// read from the extension map.
    fn constraints(&self) -> Option<&Constraints> {
        self.extensions().get::<Constraints>()
    }
    /// Stores the request's constraints. By default in the extension map (which allocates
    /// the map on its first insert); override it together with
    /// [`constraints`](HasExtensions::constraints) to keep them in a field.
    fn set_constraints(&mut self, constraints: Constraints) {
        self.extensions_mut().insert(constraints);
    }
}

impl<B> HasExtensions for http::Request<B> {
    fn extensions(&self) -> &http::Extensions {
        http::Request::extensions(self)
    }
    fn extensions_mut(&mut self) -> &mut http::Extensions {
        http::Request::extensions_mut(self)
    }
}

impl HasExtensions for http::request::Parts {
    fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }
    fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }
}

/// Why a request is constrained: the signal that drove the pressure level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cause {
    /// The driving signal.
    pub signal: Signal,
    /// Its value when the level was published.
    pub value: f32,
}

/// What a request may spend right now. Small and `Copy`: one is inserted per request.
///
/// ```
/// use tower_pressure::{Constraints, PressureLevel};
/// let c = Constraints::for_level(PressureLevel::Critical);
/// assert_eq!(c.entity_limit(100), 50);
/// assert!(c.should_skip_optional());
/// assert!(c.should_use_simplified());
/// assert_eq!(Constraints::unconstrained().entity_limit(100), 100);
/// ```
#[derive(Clone, Copy, PartialEq)]
pub struct Constraints {
    pub(crate) level: PressureLevel,
    pub(crate) priority: Priority,
    pub(crate) entity_limit_factor: f32,
    pub(crate) embedding_dimensions_factor: f32,
    pub(crate) skip_optional: bool,
    pub(crate) skip_expensive: bool,
    pub(crate) use_simplified: bool,
    pub(crate) deadline: Option<Instant>,
    pub(crate) cause: Cause,
}

impl fmt::Debug for Constraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraints")
            .field("level", &self.level)
            .field("priority", &self.priority)
            .field("entity_limit_factor", &self.entity_limit_factor)
            .field(
                "embedding_dimensions_factor",
                &self.embedding_dimensions_factor,
            )
            .field("skip_optional", &self.skip_optional)
            .field("skip_expensive", &self.skip_expensive)
            .field("use_simplified", &self.use_simplified)
            .field("deadline", &self.deadline)
            .field("cause", &self.cause)
            .finish()
    }
}

impl Default for Constraints {
    fn default() -> Self {
        Self::unconstrained()
    }
}

impl Constraints {
    /// No constraint: full budget, nothing skipped.
    pub const fn unconstrained() -> Self {
        Self {
            level: PressureLevel::Normal,
            priority: Priority::Normal,
            entity_limit_factor: 1.0,
            embedding_dimensions_factor: 1.0,
            skip_optional: false,
            skip_expensive: false,
            use_simplified: false,
            deadline: None,
            cause: Cause {
                signal: Signal::None,
                value: f32::NAN,
            },
        }
    }

    /// The seed's defaults for `level`; strategies accumulate as the level rises:
    ///
    /// | level | entity limit | skip optional | skip expensive | simplified | embedding dims |
    /// |---|---|---|---|---|---|
    /// | Normal | 100 % | no | no | no | 100 % |
    /// | Elevated | 80 % | no | no | no | 100 % |
    /// | High | 80 % | yes | yes | no | 100 % |
    /// | Critical | 50 % | yes | yes | yes | 50 % |
    /// | Emergency | 30 % | yes | yes | yes | 25 % |
    pub const fn for_level(level: PressureLevel) -> Self {
        let mut c = Self::unconstrained();
        c.level = level;
        match level {
            PressureLevel::Normal => {}
            PressureLevel::Elevated => c.entity_limit_factor = 0.8,
            PressureLevel::High => {
                c.entity_limit_factor = 0.8;
                c.skip_optional = true;
                c.skip_expensive = true;
            }
            PressureLevel::Critical => {
                c.entity_limit_factor = 0.5;
                c.skip_optional = true;
                c.skip_expensive = true;
                c.use_simplified = true;
                c.embedding_dimensions_factor = 0.5;
            }
            PressureLevel::Emergency => {
                c.entity_limit_factor = 0.3;
                c.skip_optional = true;
                c.skip_expensive = true;
                c.use_simplified = true;
                c.embedding_dimensions_factor = 0.25;
            }
        }
        c
    }

    /// Reads the constraints of a request; `None` when no `DegradationLayer` ran.
    pub fn from_request<R: HasExtensions + ?Sized>(req: &R) -> Option<Constraints> {
        req.constraints().copied()
    }

    /// The pressure level the constraints were derived from.
    pub fn level(&self) -> PressureLevel {
        self.level
    }
    /// The request's priority class.
    pub fn priority(&self) -> Priority {
        self.priority
    }
    /// The signal that drove the level, and its value.
    pub fn cause(&self) -> Cause {
        self.cause
    }
    /// `true` when any constraint applies (level above `Normal`).
    pub fn is_degraded(&self) -> bool {
        self.level > PressureLevel::Normal
    }
    /// The factor applied to entity limits (1.0 = unchanged).
    pub fn entity_limit_factor(&self) -> f32 {
        self.entity_limit_factor
    }
    /// The factor applied to embedding dimensions (1.0 = unchanged).
    pub fn embedding_dimensions_factor(&self) -> f32 {
        self.embedding_dimensions_factor
    }
    /// `default` scaled by the entity-limit factor, never below 1 (unless `default` is 0).
    pub fn entity_limit(&self, default: usize) -> usize {
        scale(default, self.entity_limit_factor)
    }
    /// `default` scaled by the embedding-dimensions factor, never below 1 (unless 0).
    pub fn embedding_dimensions(&self, default: usize) -> usize {
        scale(default, self.embedding_dimensions_factor)
    }
    /// Skip optional analysis (from `High` by default).
    pub fn should_skip_optional(&self) -> bool {
        self.skip_optional
    }
    /// Skip expensive computations (from `High` by default).
    pub fn should_skip_expensive(&self) -> bool {
        self.skip_expensive
    }
    /// Use simplified methods (from `Critical` by default).
    pub fn should_use_simplified(&self) -> bool {
        self.use_simplified
    }
    /// The request's deadline, if known.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    /// Time left before the deadline at `now` (`None` without deadline; zero once passed).
    pub fn remaining(&self, now: Instant) -> Option<std::time::Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }

    /// Sets the entity-limit factor (clamped to `0.0..=1.0`; NaN leaves it unchanged).
    pub fn with_entity_limit_factor(mut self, f: f32) -> Self {
        if !f.is_nan() {
            self.entity_limit_factor = f.clamp(0.0, 1.0);
        }
        self
    }
    /// Sets the embedding-dimensions factor (clamped to `0.0..=1.0`; NaN leaves it unchanged).
    pub fn with_embedding_dimensions_factor(mut self, f: f32) -> Self {
        if !f.is_nan() {
            self.embedding_dimensions_factor = f.clamp(0.0, 1.0);
        }
        self
    }
    /// Sets whether optional analysis is skipped.
    pub fn with_skip_optional(mut self, on: bool) -> Self {
        self.skip_optional = on;
        self
    }
    /// Sets whether expensive computations are skipped.
    pub fn with_skip_expensive(mut self, on: bool) -> Self {
        self.skip_expensive = on;
        self
    }
    /// Sets whether simplified methods are used.
    pub fn with_use_simplified(mut self, on: bool) -> Self {
        self.use_simplified = on;
        self
    }
    /// Sets the priority.
    pub fn with_priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }
    /// Sets the deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }
    /// Sets the cause.
    pub fn with_cause(mut self, signal: Signal, value: f32) -> Self {
        self.cause = Cause { signal, value };
        self
    }
}

fn scale(default: usize, factor: f32) -> usize {
    if default == 0 {
        return 0;
    }
    // f32 factors such as 0.9 are slightly below their decimal value: round away the error.
    let v = (default as f64 * factor as f64 + 1e-4).floor();
    (v as usize).clamp(1, default)
}

#[cfg(feature = "axum")]
mod axum_impl {
    use super::Constraints;
    use axum_core::extract::FromRequestParts;
    use axum_core::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    /// `Constraints` was extracted but no `DegradationLayer` ran for the route.
    #[derive(Debug)]
    #[non_exhaustive]
    pub struct MissingConstraints;

    impl std::fmt::Display for MissingConstraints {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("missing request extension `tower_pressure::Constraints`: is `DegradationLayer` (or `ResilienceStack::inbound`) applied to this route?")
        }
    }

    impl std::error::Error for MissingConstraints {}

    impl IntoResponse for MissingConstraints {
        fn into_response(self) -> Response {
            (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Constraints {
        type Rejection = MissingConstraints;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<Constraints>()
                .copied()
                .ok_or(MissingConstraints)
        }
    }
}

#[cfg(feature = "axum")]
pub use axum_impl::MissingConstraints;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_table() {
        let f: Vec<f32> = PressureLevel::ALL
            .iter()
            .map(|l| Constraints::for_level(*l).entity_limit_factor())
            .collect();
        assert_eq!(f, [1.0, 0.8, 0.8, 0.5, 0.3]);
        assert!(!Constraints::for_level(PressureLevel::Elevated).should_skip_optional());
        assert!(Constraints::for_level(PressureLevel::High).should_skip_expensive());
        assert!(!Constraints::for_level(PressureLevel::High).should_use_simplified());
        assert_eq!(
            Constraints::for_level(PressureLevel::Emergency).embedding_dimensions(768),
            192
        );
        assert_eq!(
            Constraints::for_level(PressureLevel::Emergency).entity_limit(1),
            1
        );
        assert_eq!(
            Constraints::for_level(PressureLevel::Emergency).entity_limit(0),
            0
        );
    }

    #[test]
    fn builders_clamp() {
        let c = Constraints::unconstrained()
            .with_entity_limit_factor(7.0)
            .with_embedding_dimensions_factor(f32::NAN);
        assert_eq!(c.entity_limit_factor(), 1.0);
        assert_eq!(c.embedding_dimensions_factor(), 1.0);
    }
}
