//! TODO(cgroup): filled in by the sources work.
