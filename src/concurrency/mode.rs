//! How long a slot is held: the [`ResponseEnd`] and [`BodyEnd`] markers. Their own module so
//! the layer, the service and the future all use them and imports run one way.

/// Marker: a slot is held until the response future completes (the default).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ResponseEnd;

/// Marker: a slot is held until the end of the HTTP response body.
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct BodyEnd;
