//! One list of single-call cases per bench, walked by two binaries: the timing bench hands
//! each case to criterion (no counting allocator in that binary), and `benches/allocs.rs`
//! (with `stats_alloc` as its global allocator) counts the heap allocations of the same
//! calls. Included with `#[path = "support/visit.rs"] mod visit;`.

/// What a bench binary does with each case of a list.
pub(crate) trait Visit {
    /// One case: every call of `f` is one call of the benched operation, its result
    /// black-boxed.
    fn case<F: FnMut()>(&mut self, id: &'static str, f: F);
}

/// Timing: each case becomes one criterion benchmark of the group, under the same id.
impl Visit for criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    fn case<F: FnMut()>(&mut self, id: &'static str, mut f: F) {
        self.bench_function(id, |b| b.iter(&mut f));
    }
}
