//! Status snapshot (in progress).
