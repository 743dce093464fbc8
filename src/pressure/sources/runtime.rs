//! TODO(runtime): filled in by the sources work.
