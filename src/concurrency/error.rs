//! The error of a refused request. Defined in the shared core (so other layers can recognise
//! a shed request without importing this one) and re-exported here.

pub use crate::outcome::shed::Overloaded;
