//! Request priority classes and the classifiers that assign them.
//!
//! Seed 000 schedules "critical executors first": executors `D3-Q3` and `D4-Q2` are
//! [`Priority::Critical`], `D3-Q2`, `D4-Q1` and `D2-Q3` are [`Priority::High`], everything else is
//! [`Priority::Normal`]. A [`PriorityClassifier`] assigns the class of each request; the
//! adaptive concurrency layer sheds lower classes first under pressure.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::constraints::HasExtensions;

/// The priority class of a request. Ordered: `Low < Normal < High < Critical`.
///
/// ```
/// use tower_pressure::Priority;
/// assert!(Priority::Critical > Priority::Low);
/// assert_eq!("high".parse::<Priority>().unwrap(), Priority::High);
/// assert!("urgent".parse::<Priority>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Priority {
    /// Shed first.
    Low = 0,
    /// The default class.
    #[default]
    Normal = 1,
    /// Shed only under critical pressure.
    High = 2,
    /// Shed last; may use a reserved share of capacity.
    Critical = 3,
}

impl Priority {
    /// All classes, lowest first.
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Critical,
    ];

    /// The lowercase name (`"critical"`, `"high"`, `"normal"`, `"low"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    /// Index usable for per-class arrays (`Low = 0` .. `Critical = 3`).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The class for an index produced by [`Priority::index`].
    pub const fn from_index(i: usize) -> Option<Priority> {
        match i {
            0 => Some(Priority::Low),
            1 => Some(Priority::Normal),
            2 => Some(Priority::High),
            3 => Some(Priority::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A priority string (for example from an `x-priority` header) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPriority {
    value: String,
}

impl InvalidPriority {
    /// The rejected input (truncated to 64 bytes).
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for InvalidPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid priority {:?}: expected critical, high, normal, low or 0-3",
            self.value
        )
    }
}

impl std::error::Error for InvalidPriority {}

impl FromStr for Priority {
    type Err = InvalidPriority;

    /// Accepts the names (case-insensitive, surrounding whitespace ignored) and the digits
    /// `0` (critical) to `3` (low), the convention of most priority headers.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let p = if t.eq_ignore_ascii_case("critical") || t == "0" {
            Priority::Critical
        } else if t.eq_ignore_ascii_case("high") || t == "1" {
            Priority::High
        } else if t.eq_ignore_ascii_case("normal") || t == "2" {
            Priority::Normal
        } else if t.eq_ignore_ascii_case("low") || t == "3" {
            Priority::Low
        } else {
            let mut value = s.to_owned();
            if value.len() > 64 {
                let mut cut = 64;
                while !value.is_char_boundary(cut) {
                    cut -= 1;
                }
                value.truncate(cut);
            }
            return Err(InvalidPriority { value });
        };
        Ok(p)
    }
}

/// Assigns a [`Priority`] to a request.
///
/// Implemented for closures `Fn(&Req) -> Priority`, for [`HeaderPriority`],
/// [`ExtensionPriority`] and [`KeyedPriority`].
///
/// ```
/// use tower_pressure::priority::{Priority, PriorityClassifier};
/// let by_len = |req: &String| if req.len() > 10 { Priority::Low } else { Priority::High };
/// assert_eq!(by_len.classify(&"short".to_string()), Priority::High);
/// ```
pub trait PriorityClassifier<Req> {
    /// The class of `req`. Must be cheap: it runs on every request.
    fn classify(&self, req: &Req) -> Priority;
}

impl<Req, F> PriorityClassifier<Req> for F
where
    F: Fn(&Req) -> Priority,
{
    fn classify(&self, req: &Req) -> Priority {
        self(req)
    }
}

/// Reads the priority from a request header such as `x-priority: critical`.
///
/// A missing header gives the default class; an unparsable one also gives the default (the
/// request is not refused for a bad hint), and is counted in [`HeaderPriority::invalid_count`]
/// so the bad input is not silently dropped.
#[derive(Debug, Clone)]
pub struct HeaderPriority {
    name: http::HeaderName,
    default: Priority,
    invalid: Arc<std::sync::atomic::AtomicU64>,
}

impl HeaderPriority {
    /// Reads header `name`, with [`Priority::Normal`] as the default.
    pub fn new(name: http::HeaderName) -> Self {
        Self {
            name,
            default: Priority::Normal,
            invalid: Arc::default(),
        }
    }

    /// Sets the class used when the header is missing or invalid.
    pub fn default_priority(mut self, p: Priority) -> Self {
        self.default = p;
        self
    }

    /// How many requests carried an unparsable priority header.
    pub fn invalid_count(&self) -> u64 {
        self.invalid.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Parses a header map, for callers that are not `http::Request`s.
    pub fn from_headers(&self, headers: &http::HeaderMap) -> Priority {
        match headers.get(&self.name) {
            None => self.default,
            Some(v) => match v.to_str().ok().and_then(|s| s.parse().ok()) {
                Some(p) => p,
                None => {
                    self.invalid
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(header = %self.name, "invalid priority header, using default");
                    self.default
                }
            },
        }
    }
}

impl<B> PriorityClassifier<http::Request<B>> for HeaderPriority {
    fn classify(&self, req: &http::Request<B>) -> Priority {
        self.from_headers(req.headers())
    }
}

/// Reads a [`Priority`] request extension set by an earlier layer or by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtensionPriority {
    default: Priority,
}

impl ExtensionPriority {
    /// Uses `default` when the request has no `Priority` extension.
    pub fn new(default: Priority) -> Self {
        Self { default }
    }
}

impl<Req: HasExtensions> PriorityClassifier<Req> for ExtensionPriority {
    fn classify(&self, req: &Req) -> Priority {
        req.extensions()
            .get::<Priority>()
            .copied()
            .unwrap_or(self.default)
    }
}

/// Maps a key extracted from the request (an executor id, a route, a tenant) to a class.
///
/// ```
/// use tower_pressure::priority::{KeyedPriority, Priority, PriorityClassifier};
/// // The seed's executor table.
/// let classes = KeyedPriority::new(|id: &&str| id.to_string())
///     .with(Priority::Critical, ["D3-Q3", "D4-Q2"])
///     .with(Priority::High, ["D3-Q2", "D4-Q1", "D2-Q3"]);
/// assert_eq!(classes.classify(&"D3-Q3"), Priority::Critical);
/// assert_eq!(classes.classify(&"D1-Q1"), Priority::Normal);
/// ```
pub struct KeyedPriority<K> {
    key: K,
    table: HashMap<String, Priority>,
    default: Priority,
}

impl<K> fmt::Debug for KeyedPriority<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPriority")
            .field("table", &self.table)
            .field("default", &self.default)
            .finish()
    }
}

impl<K> KeyedPriority<K> {
    /// Creates a classifier that extracts a key with `key`; unknown keys are `Normal`.
    pub fn new(key: K) -> Self {
        Self {
            key,
            table: HashMap::new(),
            default: Priority::Normal,
        }
    }

    /// Assigns `priority` to each of `keys`.
    pub fn with<I, S>(mut self, priority: Priority, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for k in keys {
            self.table.insert(k.into(), priority);
        }
        self
    }

    /// Sets the class of unknown keys.
    pub fn default_priority(mut self, p: Priority) -> Self {
        self.default = p;
        self
    }

    /// Looks a key up directly.
    pub fn lookup(&self, key: &str) -> Priority {
        self.table.get(key).copied().unwrap_or(self.default)
    }
}

impl<Req, K, S> PriorityClassifier<Req> for KeyedPriority<K>
where
    K: Fn(&Req) -> S,
    S: AsRef<str>,
{
    fn classify(&self, req: &Req) -> Priority {
        self.lookup((self.key)(req).as_ref())
    }
}
