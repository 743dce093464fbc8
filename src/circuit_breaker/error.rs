//! The error returned when the breaker refuses a call. Defined in the shared core (so other
//! layers can recognise an open breaker without importing this one) and re-exported here.

pub use crate::outcome::circuit::{CircuitOpen, RejectReason};
