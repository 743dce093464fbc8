//! TODO(psi): filled in by the sources work.
