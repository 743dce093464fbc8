//! [`ConfigFileError`]: what is wrong in a configuration document, and where.

use std::fmt;

use crate::error::ConfigError;

/// What kind of mistake a [`ConfigFileError`] reports.
///
/// ```
/// use tower_pressure::config::{Config, ErrorKind};
/// let err = Config::from_toml("[outbound.breaker]\nfailure_rat = 5\n").unwrap_err();
/// assert_eq!(err.kind(), &ErrorKind::UnknownKey { suggestion: Some("failure_rate".into()) });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The text is not valid TOML / YAML / JSON.
    Syntax,
    /// A value has the wrong type or is out of range (`150 is above 100`), or a unit is bad.
    Value,
    /// A key that the document does not have, with the nearest valid name if one is close.
    UnknownKey {
        /// The nearest valid key, when one is within a small edit distance.
        suggestion: Option<String>,
    },
    /// A builder refused the combination of settings (e.g. `success_threshold` above
    /// `permitted_calls_in_half_open`): the same [`ConfigError`] the builder API returns.
    Builder(ConfigError),
    /// The file could not be read.
    Io,
}

/// A configuration document was refused: the field path (`outbound.breaker.failure_rate`),
/// the reason, and the line and column where the format has them.
///
/// ```
/// use tower_pressure::config::Config;
///
/// let doc = "[outbound.breaker]\nfailure_rate = 150\n";
/// let err = Config::from_toml(doc).unwrap_err();
/// assert_eq!(err.path(), "outbound.breaker.failure_rate");
/// assert_eq!(err.line(), Some(2));
/// assert_eq!(
///     err.to_string(),
///     "outbound.breaker.failure_rate: 150 is above 100 (line 2, column 16)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError(Box<Inner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    path: String,
    message: String,
    line: Option<usize>,
    column: Option<usize>,
    kind: ErrorKind,
}

impl ConfigFileError {
    pub(crate) fn new(
        path: impl Into<String>,
        message: impl Into<String>,
        kind: ErrorKind,
    ) -> Self {
        Self(Box::new(Inner {
            path: path.into(),
            message: message.into(),
            line: None,
            column: None,
            kind,
        }))
    }

    pub(crate) fn at(mut self, line: Option<usize>, column: Option<usize>) -> Self {
        self.0.line = line;
        self.0.column = column;
        self
    }

    /// Re-reports a builder's [`ConfigError`] under the document path `section`, with the
    /// builder's field name translated to the document's key by `rename`.
    pub(crate) fn from_builder(section: &str, e: ConfigError, rename: &[(&str, &str)]) -> Self {
        let field = rename
            .iter()
            .find(|(b, _)| *b == e.field())
            .map(|(_, c)| *c)
            .unwrap_or(e.field());
        let path = if section.is_empty() {
            field.to_string()
        } else if field.is_empty() {
            section.to_string()
        } else {
            format!("{section}.{field}")
        };
        let message = format!("{} ({})", e.reason(), e.value());
        Self::new(path, message, ErrorKind::Builder(e))
    }

    /// The dotted path of the offending field (`outbound.breaker.failure_rate`), or `""`
    /// for the document itself (a syntax error before any field).
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// Why the value was refused.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The 1-based line, where the format reports it.
    pub fn line(&self) -> Option<usize> {
        self.0.line
    }

    /// The 1-based column, where the format reports it.
    pub fn column(&self) -> Option<usize> {
        self.0.column
    }

    /// The kind of mistake.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        if e.path.is_empty() {
            f.write_str(&e.message)?;
        } else {
            write!(f, "{}: {}", e.path, e.message)?;
        }
        match (e.line, e.column) {
            (Some(l), Some(c)) => write!(f, " (line {l}, column {c})"),
            (Some(l), None) => write!(f, " (line {l})"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for ConfigFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.kind {
            ErrorKind::Builder(e) => Some(e),
            _ => None,
        }
    }
}

/// Levenshtein distance (for "did you mean").
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate nearest to `given`, if it is close enough to be a plausible typo.
pub(crate) fn nearest<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = (given.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(given, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Reads serde's `unknown field `x`, expected one of `a`, `b`` (or `unknown variant`)
/// message: the unknown name and the expected ones.
pub(crate) fn parse_unknown(message: &str) -> Option<(bool, String, Vec<String>)> {
    let (is_field, rest) = if let Some(r) = message.strip_prefix("unknown field `") {
        (true, r)
    } else if let Some(r) = message.strip_prefix("unknown variant `") {
        (false, r)
    } else {
        return None;
    };
    let end = rest.find('`')?;
    let name = rest[..end].to_string();
    let expected: Vec<String> = rest[end + 1..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((is_field, name, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(
            nearest("failure_rat", ["failure_rate", "failure_threshold"]).as_deref(),
            Some("failure_rate")
        );
        assert_eq!(nearest("zzzzzz", ["failure_rate"]), None);
        let (f, n, e) =
            parse_unknown("unknown field `intervl`, expected one of `interval`, `dwell`").unwrap();
        assert!(f);
        assert_eq!(n, "intervl");
        assert_eq!(e, ["interval", "dwell"]);
    }
}
