//! Cost of `QuotaLayer` (rate + concurrency limits, tenant from the `x-tenant` header) as a
//! ratio against a bare `service_fn` measured in the same run; every variant builds the same
//! request (with its header) per iteration.
//!
//! ```text
//! cargo bench --bench quota -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::task::{Context, Poll, Waker};

use criterion::Criterion;
use tower::{Layer, Service, service_fn};
use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer};

type Req = http::Request<()>;

fn handler(req: Req) -> Ready<Result<usize, Infallible>> {
    ready(Ok(black_box(&req).extensions().len()))
}

fn call_once<S>(svc: &mut S, tenant: &'static str) -> bool
where
    S: Service<Req>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let _ = svc.poll_ready(&mut cx);
    let req = http::Request::builder()
        .header("x-tenant", tenant)
        .body(())
        .unwrap_or_default();
    let fut = std::pin::pin!(svc.call(req));
    matches!(fut.poll(&mut cx), Poll::Ready(Ok(_)))
}

fn layer() -> QuotaLayer<HeaderKey> {
    QuotaLayer::builder()
        .group(
            QuotaGroup::new("g")
                .rate(Limit::tiers(u64::MAX / 4, u64::MAX / 2, u64::MAX / 2))
                .concurrency(Limit::new(1_000)),
        )
        .max_tenants(4096)
        .build(HeaderKey::x_tenant())
        .unwrap_or_else(|e| panic!("{e}"))
}

const TENANTS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("quota");
    let mut bare = service_fn(handler);
    g.bench_function("bare", |b| b.iter(|| call_once(&mut bare, "a")));
    let mut one = layer().layer(service_fn(handler));
    g.bench_function("quota_one_tenant", |b| b.iter(|| call_once(&mut one, "a")));
    let mut many = layer().layer(service_fn(handler));
    let mut i = 0usize;
    g.bench_function("quota_8_tenants", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            call_once(&mut many, TENANTS[i % 8])
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
