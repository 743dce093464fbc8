use std::fmt;
use std::sync::Arc;

use crate::constraints::Constraints;
use crate::pressure::PressureLevel;

type Inserter = Arc<dyn Fn(&mut http::Extensions) + Send + Sync>;

/// A table from pressure level to [`Constraints`], plus opt-in typed extensions per level.
///
/// Defaults are seed 000's table (see [`Constraints::for_level`]).
///
/// ```
/// use tower_pressure::{PressureLevel, degradation::DegradationPolicy};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct MaxTokens(u32);
///
/// let policy = DegradationPolicy::default()
///     .map(PressureLevel::Elevated, |c| c.with_entity_limit_factor(0.9))
///     .extension(PressureLevel::Normal, MaxTokens(2048))
///     .extension(PressureLevel::Critical, MaxTokens(512));
/// assert_eq!(policy.constraints(PressureLevel::Elevated).entity_limit(100), 90);
/// let mut ext = http::Extensions::new();
/// policy.apply_extensions(PressureLevel::Emergency, &mut ext);
/// assert_eq!(ext.get::<MaxTokens>(), Some(&MaxTokens(512)));
/// ```
#[derive(Clone)]
pub struct DegradationPolicy {
    table: [Constraints; 5],
    /// Per level, the inserters of every extension registered at or below it, lowest level
    /// first, so the highest level's value of a type wins.
    extras: [Vec<Inserter>; 5],
    has_extras: bool,
}

impl fmt::Debug for DegradationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DegradationPolicy")
            .field("table", &self.table)
            .field(
                "extensions_per_level",
                &self.extras.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for DegradationPolicy {
    fn default() -> Self {
        Self {
            table: PressureLevel::ALL.map(Constraints::for_level),
            extras: Default::default(),
            has_extras: false,
        }
    }
}

impl DegradationPolicy {
    /// A policy that never constrains anything (every level maps to
    /// [`Constraints::unconstrained`], apart from the level itself).
    pub fn none() -> Self {
        let mut p = Self::default();
        for l in PressureLevel::ALL {
            let mut c = Constraints::unconstrained();
            c.level = l;
            p.table[l.index()] = c;
        }
        p
    }

    /// Replaces the constraints of `level`.
    pub fn set(mut self, level: PressureLevel, constraints: Constraints) -> Self {
        let mut c = constraints;
        c.level = level;
        self.table[level.index()] = c;
        self
    }

    /// Edits the constraints of `level`.
    pub fn map(mut self, level: PressureLevel, f: impl FnOnce(Constraints) -> Constraints) -> Self {
        let mut c = f(self.table[level.index()]);
        c.level = level;
        self.table[level.index()] = c;
        self
    }

    /// Inserts `value` as a typed request extension at `level` and above (until a higher
    /// level registers another value of the same type). Opt-in: costs one extension insert
    /// per registered value per request.
    pub fn extension<T: Clone + Send + Sync + 'static>(
        mut self,
        level: PressureLevel,
        value: T,
    ) -> Self {
        let ins: Inserter = Arc::new(move |ext: &mut http::Extensions| {
            ext.insert(value.clone());
        });
        for l in PressureLevel::ALL.into_iter().filter(|l| *l >= level) {
            self.extras[l.index()].push(ins.clone());
        }
        self.has_extras = true;
        self
    }

    /// Runs `f` on the request's extensions at exactly `level` (a closure per level, for
    /// knobs that need logic).
    pub fn on_level<F>(mut self, level: PressureLevel, f: F) -> Self
    where
        F: Fn(&mut http::Extensions) + Send + Sync + 'static,
    {
        self.extras[level.index()].push(Arc::new(f));
        self.has_extras = true;
        self
    }

    /// The constraints of `level`.
    pub fn constraints(&self, level: PressureLevel) -> Constraints {
        self.table[level.index()]
    }

    /// Applies the typed extensions registered for `level`.
    pub fn apply_extensions(&self, level: PressureLevel, ext: &mut http::Extensions) {
        if self.has_extras {
            for f in &self.extras[level.index()] {
                f(ext);
            }
        }
    }
}
