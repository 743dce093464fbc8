//! Errors of the retry layer and the marker users wrap transient errors in. Defined in the
//! shared core (so other layers can recognise them without importing this one) and
//! re-exported here.

pub(crate) use crate::outcome::transient::error_pushback;
pub use crate::outcome::transient::{AttemptTimedOut, Retryable, is_retryable};
