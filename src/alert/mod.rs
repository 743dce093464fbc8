//! Alerts (in progress).
