//! TODO(process): filled in by the sources work.
