//! Heap allocations per call of every case the timing benches measure (ours and the
//! competitors), counted with `stats_alloc` as this binary's global allocator.
//!
//! ```text
//! cargo bench --bench allocs                      # every table
//! ALLOCS_BENCH=retry cargo bench --bench allocs    # only the benches whose name contains `retry`
//! ```
//!
//! The counting allocator lives here and nowhere else: it does two sequentially consistent
//! atomic read-modify-writes on global counters per allocation and per deallocation, which
//! would slow down every allocating call a timing bench measures and make two threads contend
//! on the counters. So `stack`, `degradation`, `circuit_breaker`, `retry`, `alert` and
//! `concurrency` run on the system allocator and this binary builds the same services from
//! the same code (`benches/support/*_cases.rs`). The crate forbids `unsafe`, hence
//! `stats_alloc` rather than a hand-written allocator.
//!
//! Every single-call case: 1 000 calls of warm-up, then 10 000 counted calls, on one thread
//! (the two-thread cases of the timing benches run the same services). The whole-stack
//! cases are driven as in `benches/stack.rs` (`ready` then `call`, awaited on a
//! current-thread runtime), with empty requests and with requests that already carry one
//! extension (built before counting). Nothing here is timed.

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::Service;

#[path = "support/visit.rs"]
mod visit;
use visit::Visit;

#[macro_use]
#[path = "support/stack_cases.rs"]
mod stack_cases;
use stack_cases::{Case, Req, bare, drive, drive_requests, runtime};

#[path = "support/alert_cases.rs"]
mod alert_cases;
#[path = "support/breaker_cases.rs"]
mod breaker_cases;
#[path = "support/concurrency_cases.rs"]
mod concurrency_cases;
#[path = "support/degradation_cases.rs"]
mod degradation_cases;
#[macro_use]
#[path = "support/retry_cases.rs"]
mod retry_cases;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const WARM_UP: u64 = 1_000;
const N: u64 = 10_000;

/// Allocations and bytes allocated per call over `N` calls.
#[derive(Clone, Copy)]
struct PerCall {
    allocs: f64,
    bytes: f64,
}

impl PerCall {
    fn of(region: &Region<'_, std::alloc::System>) -> Self {
        let s = region.change();
        PerCall {
            allocs: s.allocations as f64 / N as f64,
            bytes: s.bytes_allocated as f64 / N as f64,
        }
    }
}

/// Counts each case of a bench's list (see `support/visit.rs`).
#[derive(Default)]
struct Count(Vec<(&'static str, PerCall)>);

impl Visit for Count {
    fn case<F: FnMut()>(&mut self, id: &'static str, mut f: F) {
        for _ in 0..WARM_UP {
            f();
        }
        let region = Region::new(GLOBAL);
        for _ in 0..N {
            f();
        }
        self.0.push((id, PerCall::of(&region)));
    }
}

/// The whole stack's two counts: fresh empty requests, then requests whose extensions
/// already hold one entry (built before counting; freed inside the region, which counts
/// allocations only).
fn stack_allocations<S: Service<Req>>(
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
) -> (PerCall, PerCall) {
    #[derive(Clone, Copy)]
    struct RequestId(#[allow(dead_code)] u64);
    rt.block_on(async {
        drive(svc, WARM_UP).await;
        let region = Region::new(GLOBAL);
        drive(svc, N).await;
        let empty = PerCall::of(&region);

        let reqs: Vec<Req> = (0..N)
            .map(|i| {
                let mut r = http::Request::new(());
                r.extensions_mut().insert(RequestId(i));
                r
            })
            .collect();
        let region = Region::new(GLOBAL);
        drive_requests(svc, reqs).await;
        (empty, PerCall::of(&region))
    })
}

fn stack_table() {
    let rt = runtime();
    let mut rows = Vec::new();
    for case in Case::ALL {
        let counts = with_service!(case, |svc| {
            let mut svc = svc;
            stack_allocations(&rt, &mut svc)
        });
        rows.push((case.id(), case.label(), counts));
    }
    // Where the stacks' allocations come from: the same stacks without degradation (the layer
    // that inserts `Constraints` into the request's extensions).
    let (m, _manual) = stack_cases::monitor();
    let mut inbound_nd = tower::Layer::layer(
        &tower_pressure::ResilienceStack::inbound(m.clone()).without_degradation(),
        bare(),
    );
    let mut outbound_nd = tower::Layer::layer(
        &tower_pressure::ResilienceStack::outbound(m).without_degradation(),
        bare(),
    );
    rows.push((
        "-",
        "ResilienceStack::inbound without degradation",
        stack_allocations(&rt, &mut inbound_nd),
    ));
    rows.push((
        "-",
        "ResilienceStack::outbound without degradation",
        stack_allocations(&rt, &mut outbound_nd),
    ));

    println!(
        "\nstack: heap allocations per call (empty request / one extension already present)\n"
    );
    println!(
        "| {:<16} | {:<45} | {:>13} | {:>15} |",
        "id", "case", "allocs/call", "bytes/call"
    );
    println!("|{:-<18}|{:-<47}|{:->15}|{:->17}|", "", "", "", "");
    for (id, label, (empty, pre)) in rows {
        println!(
            "| {:<16} | {:<45} | {:>13} | {:>15} |",
            id,
            label,
            format!("{:.2} / {:.2}", empty.allocs, pre.allocs),
            format!("{:.1} / {:.1}", empty.bytes, pre.bytes),
        );
    }
}

/// A bench's list of cases, walked by a [`Count`].
type CaseList = fn(&mut Count);

/// One table for the per-layer benches: each bench's cases under their criterion ids.
fn layer_table(wanted: impl Fn(&str) -> bool) {
    let lists: [(&str, CaseList); 5] = [
        ("degradation", |v| degradation_cases::cases(v)),
        ("circuit_breaker", |v| {
            // tower-resilience's breaker needs a runtime context, as in the timing bench.
            let rt = runtime();
            let _guard = rt.enter();
            breaker_cases::one_thread(v)
        }),
        ("retry", |v| retry_cases::cases(v)),
        ("alert", |v| alert_cases::cases(v)),
        ("concurrency", |v| concurrency_cases::one_thread(v)),
    ];
    let mut rows = Vec::new();
    for (bench, list) in lists {
        if wanted(bench) {
            let mut count = Count::default();
            list(&mut count);
            rows.extend(count.0.into_iter().map(|(id, c)| (bench, id, c)));
        }
    }
    if rows.is_empty() {
        return;
    }
    println!("\nper layer: heap allocations per call (criterion ids of each bench)\n");
    println!(
        "| {:<15} | {:<32} | {:>11} | {:>10} |",
        "bench", "case", "allocs/call", "bytes/call"
    );
    println!("|{:-<17}|{:-<34}|{:->13}|{:->12}|", "", "", "", "");
    for (bench, id, c) in rows {
        println!(
            "| {:<15} | {:<32} | {:>11.2} | {:>10.1} |",
            bench, id, c.allocs, c.bytes
        );
    }
}

fn main() {
    // Arguments (`--bench`, criterion options given to every bench) are ignored.
    let filter = std::env::var("ALLOCS_BENCH").unwrap_or_default();
    let wanted = |bench: &str| bench.contains(filter.as_str());
    println!(
        "heap allocations per call, stats_alloc as global allocator: {WARM_UP} calls of warm-up, \
         then {N} counted calls per case, one thread"
    );
    if wanted("stack") {
        stack_table();
    }
    layer_table(wanted);
}
