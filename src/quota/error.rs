//! The error returned when a tenant is over its quota. Defined in the shared core (so other
//! layers can recognise a quota rejection without importing this one) and re-exported here.

pub use crate::outcome::quota::{QuotaExceeded, QuotaResource};
