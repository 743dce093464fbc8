//! A request type that keeps its `Constraints` in a field goes through both whole stacks
//! without a heap allocation (one test per binary: the counting allocator is process-wide).

use std::alloc::System;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, service_fn};
use tower_pressure::constraints::HasExtensions;
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::{Constraints, ResilienceStack};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A non-HTTP request with a field for its constraints.
#[derive(Clone)]
struct Job {
    id: u64,
    constraints: Option<Constraints>,
    ext: http::Extensions,
}

impl HasExtensions for Job {
    fn extensions(&self) -> &http::Extensions {
        &self.ext
    }
    fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.ext
    }
    fn constraints(&self) -> Option<&Constraints> {
        self.constraints.as_ref()
    }
    fn set_constraints(&mut self, c: Constraints) {
        self.constraints = Some(c);
    }
}

fn job(id: u64) -> Job {
    Job {
        id,
        constraints: None,
        ext: http::Extensions::new(),
    }
}

/// The handler sees the constraints the stack set, and answers at once.
async fn handler(j: Job) -> Result<u64, Infallible> {
    let c = Constraints::from_request(&j).expect("degradation set the constraints");
    Ok(j.id + c.entity_limit(1) as u64)
}

fn allocations<S>(svc: &mut S, n: u64) -> u64
where
    S: Service<Job>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let region = Region::new(GLOBAL);
    for i in 0..n {
        assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        let fut = pin!(svc.call(job(i)));
        match fut.poll(&mut cx) {
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => panic!("call failed: {e:?}"),
            Poll::Pending => panic!("the handler answers at once"),
        }
    }
    region.change().allocations as u64
}

fn custom_requests_go_through_both_stacks_without_allocating() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (monitor, _manual) = PressureMonitor::manual();

    let mut inbound = ResilienceStack::inbound(monitor.clone()).layer(service_fn(handler));
    let mut outbound = ResilienceStack::outbound(monitor.clone()).layer(service_fn(handler));
    // Warm-up: first-use allocations (thread-locals, lazily built tables) are not per call.
    allocations(&mut inbound, 1_000);
    allocations(&mut outbound, 1_000);

    assert_eq!(allocations(&mut inbound, 10_000), 0, "inbound stack");
    assert_eq!(allocations(&mut outbound, 10_000), 0, "outbound stack");

    // The counter does count: an `http::Request` keeps its constraints in the extension map,
    // which the degradation layer allocates (the map, its table, the value).
    let mut http_inbound =
        ResilienceStack::inbound(monitor).layer(service_fn(|r: http::Request<()>| async move {
            Ok::<_, Infallible>(Constraints::from_request(&r).is_some())
        }));
    let mut cx = Context::from_waker(Waker::noop());
    let region = Region::new(GLOBAL);
    for _ in 0..100 {
        assert!(matches!(
            http_inbound.poll_ready(&mut cx),
            Poll::Ready(Ok(()))
        ));
        let fut = pin!(http_inbound.call(http::Request::new(())));
        assert!(matches!(fut.poll(&mut cx), Poll::Ready(Ok(true))));
    }
    assert_eq!(region.change().allocations, 300, "3 per HTTP request");
}

/// Runs without the libtest harness (`harness = false` in Cargo.toml): the counting allocator is
/// process-wide, and libtest's own threads allocate while a test runs, which made the count
/// depend on the machine's load.
fn main() {
    custom_requests_go_through_both_stacks_without_allocating();
    println!("test custom_requests_go_through_both_stacks_without_allocating ... ok");
}
