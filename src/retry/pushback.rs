//! Server pushback: `Retry-After` (RFC 9110 §10.2.3) and gRPC's `grpc-retry-pushback-ms`
//! (gRFC A6). Pure parsing: the wall-clock "now" needed for HTTP-dates is an argument.
//!
//! * `Retry-After: 120` (delta-seconds) and `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`
//!   (HTTP-date, all three RFC 9110 formats, parsed with the `httpdate` crate) give a delay;
//!   a date in the past gives zero. Values too large for a `Duration` saturate; the layer
//!   then does not retry at all when the delay is above its `max_pushback` (it never retries
//!   before the server's time).
//! * Anything else is garbage: it is ignored (the layer falls back to its own backoff) and
//!   logged at `debug` level.
//! * `grpc-retry-pushback-ms: 250` gives 250 ms. Per gRFC A6 a negative or unparseable value
//!   means "do not retry": [`Pushback::Stop`].
//!
//! Defined in the shared core (other layers read pushback too) and re-exported here.

pub use crate::outcome::pushback::{Pushback, parse_grpc_pushback, parse_retry_after};
