//! The fallback layer's success path allocates nothing (one test per binary: the counting
//! allocator is process-wide).

use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{BoxError, Layer, Service, service_fn};
use tower_pressure::fallback::FallbackLayer;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn drive<R, S: Service<R, Error = BoxError>>(svc: &mut S, n: u32, mk: impl Fn(u32) -> R) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let region = Region::new(GLOBAL);
    for i in 0..n {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let fut = pin!(svc.call(mk(i)));
        match fut.poll(&mut cx) {
            Poll::Ready(Ok(_)) => {}
            _ => panic!("the primary answers at once"),
        }
    }
    region.change().allocations
}

fn id(i: u32) -> u32 {
    i
}

fn success_path_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _g = rt.enter();
    let primary = || service_fn(|i: u32| std::future::ready(Ok::<u32, BoxError>(i)));

    let mut value = FallbackLayer::value(|_: &BoxError| 0u32)
        .build()
        .unwrap()
        .layer(primary());
    assert_eq!(drive(&mut value, 1000, id), 0, "value");

    // The queue keeps a clone of the request and of the service: free for these.
    let mut queue = FallbackLayer::queue(Duration::from_secs(1), 8)
        .build()
        .unwrap()
        .layer(service_fn(|_: http::Request<()>| {
            std::future::ready(Ok::<u32, BoxError>(1))
        }));
    assert_eq!(
        drive(&mut queue, 1000, |_| http::Request::new(())),
        0,
        "queue"
    );

    let backup = service_fn(|_: u32| std::future::ready(Ok::<u32, BoxError>(0)));
    let mut switch = FallbackLayer::service(backup)
        .build()
        .unwrap()
        .layer(primary());
    assert_eq!(drive(&mut switch, 1000, id), 0, "service");

    // A borrowed key: after the first call (which inserts the key and stores), nothing.
    struct Static;
    impl tower_pressure::circuit_breaker::KeyExtractor<u32> for Static {
        fn key<'a>(&self, _: &'a u32) -> Option<std::borrow::Cow<'a, str>> {
            Some(std::borrow::Cow::Borrowed("k"))
        }
    }
    let mut cache = FallbackLayer::cache(Static, 16, Duration::from_secs(60))
        .build()
        .unwrap()
        .layer(primary());
    assert!(
        drive(&mut cache, 1, id) > 0,
        "the counter counts: a new key allocates"
    );
    assert_eq!(drive(&mut cache, 1000, id), 0, "cache");
}

/// Runs without the libtest harness (`harness = false` in Cargo.toml): the counting allocator is
/// process-wide, and libtest's own threads allocate while a test runs, which made the count
/// depend on the machine's load.
fn main() {
    success_path_allocates_nothing();
    println!("test success_path_allocates_nothing ... ok");
}
