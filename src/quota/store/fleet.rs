//! The Redis store at work: leases spent with atomics on the request path, and the
//! background task that refills, returns, flushes and renews them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use crate::error::ConfigError;
use crate::event::{Event, QuotaEvent, QuotaEventKind};
use crate::quota::config::{Config, EnforcementAction, GroupRt, Limit};
use crate::quota::error::{QuotaExceeded, QuotaResource};
use crate::quota::state::{Admitted, Ctx, Permit, Refused, Shared};
use crate::quota::tenant::Tenant;

use super::StoreStatus;
use super::redis::{Cells, FallbackMode, RedisStore, Scripts, StoreError, Window};

/// Per-tenant leases and the fleet readings they came with. All `Relaxed`: each word is
/// its own datum (a count, or a reading that is only ever a hint for classification);
/// `seen` and `broken` are `Acquire`/`Release` so that a request that sees `seen` also sees
/// the lease stored before it.
#[derive(Debug, Default)]
pub(crate) struct FleetCell {
    /// A fleet reply arrived for this tenant since it was created (or since recovery).
    seen: AtomicBool,
    /// The tenant's keys hold a bad value: decided on the fallback mode.
    broken: AtomicBool,
    /// Queued for the background task.
    queued: AtomicBool,
    rate_lease: AtomicU64,
    /// Cells admitted on the local share while the tenant had no lease yet: charged to the
    /// fleet bucket (as far as it has room) with the first lease.
    rate_unsynced: AtomicU64,
    /// Fleet bucket level (ns) when last read, and when (local ns since epoch).
    rate_level: AtomicU64,
    rate_at: AtomicU64,
    /// Redis had no room for a lease before this (local ns).
    rate_retry_at: AtomicU64,
    units_pending: AtomicU64,
    units_level: AtomicU64,
    units_at: AtomicU64,
    conc_held: AtomicU32,
    conc_others: AtomicU32,
    conc_renewed: AtomicU64,
    last_spend: AtomicU64,
    /// The lease this tenant asks for (cells; 0 until first sized: the base lease), sized
    /// from its recent spend rate.
    rate_target: AtomicU64,
    /// Cells spent (from the lease or on the local share) since the last refill, and when
    /// that refill was asked for (local ns).
    rate_spent: AtomicU64,
    rate_refilled: AtomicU64,
    /// The latest suspension (`suspended_until` encoding: end + 1) this replica wrote to
    /// Redis or learned from it: a suspension later than this is new and is written.
    susp_known: AtomicU64,
    /// A suspension (end + 1) to write to Redis, 0 when none.
    susp_push: AtomicU64,
    /// The fleet-wide burst window as the last rate lease reply gave it: 0 when the fleet
    /// has none (the burst limit applies; a burst starts one in Redis), otherwise the
    /// window's end + 1 (local ns; 1: expired, the hard limit applies).
    burst_until: AtomicU64,
}

impl FleetCell {
    pub(crate) fn reset(&self) {
        for b in [&self.seen, &self.broken, &self.queued] {
            b.store(false, Ordering::Relaxed);
        }
        for a in [
            &self.rate_lease,
            &self.rate_unsynced,
            &self.rate_level,
            &self.rate_at,
            &self.rate_retry_at,
            &self.units_pending,
            &self.units_level,
            &self.units_at,
            &self.conc_renewed,
            &self.last_spend,
            &self.rate_target,
            &self.rate_spent,
            &self.rate_refilled,
            &self.susp_known,
            &self.susp_push,
            &self.burst_until,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.conc_held.store(0, Ordering::Relaxed);
        self.conc_others.store(0, Ordering::Relaxed);
    }
}

/// A level read at `at`, drained to `now`.
fn drained(level: u64, at: u64, now: u64) -> u64 {
    level.saturating_sub(now.saturating_sub(at))
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Limits divided by the expected number of replicas (rounded up, at least 1).
fn share(l: Limit, n: u64) -> Limit {
    let d = |v: u64| v.div_ceil(n).max(1);
    Limit {
        soft: l.soft.div_ceil(n),
        hard: d(l.hard),
        burst: d(l.burst),
        action: l.action,
    }
}

/// Whether `a` refuses a request over the limit (`Warn` and `Degrade` admit it).
fn refuses(a: EnforcementAction) -> bool {
    !matches!(a, EnforcementAction::Warn | EnforcementAction::Degrade(_))
}

/// A bursting tenant's lease grows up to this many base leases.
pub(crate) const MAX_LEASE_FACTOR: u64 = 8;

/// The Redis store of one layer.
#[derive(Debug)]
pub(crate) struct Fleet {
    cfg: RedisStore,
    scripts: Scripts,
    /// The groups with every limit divided by the expected replicas (the local share).
    share_groups: Vec<GroupRt>,
    /// Cells per rate lease, per group (the base lease).
    rate_lease: Vec<u64>,
    /// The largest lease a bursting tenant may ask for, per group.
    rate_lease_max: Vec<u64>,
    /// Slots per concurrency lease step, per group.
    conc_step: Vec<u64>,
    degraded: AtomicBool,
    round_trips: AtomicU64,
    errors: AtomicU64,
    degradations: AtomicU64,
    last_error: Mutex<Option<StoreError>>,
    queue: Mutex<Vec<Arc<Tenant>>>,
    notify: Notify,
}

impl Fleet {
    pub(crate) fn new(cfg: &Config, store: RedisStore) -> Result<Self, ConfigError> {
        store.validate()?;
        let n = store.replicas;
        let lease = |l: Option<Limit>| {
            l.map_or(1, |l| {
                ((l.hard as f64 * store.lease_fraction).ceil() as u64).clamp(1, l.hard.max(1))
            })
        };
        Ok(Self {
            share_groups: cfg
                .groups
                .iter()
                .map(|g| {
                    let mut q = g.cfg.clone();
                    q.rate = q.rate.map(|l| share(l, n));
                    q.units = q.units.map(|l| share(l, n));
                    q.concurrency = q.concurrency.map(|l| share(l, n));
                    GroupRt::new(q)
                })
                .collect(),
            rate_lease: cfg.groups.iter().map(|g| lease(g.cfg.rate)).collect(),
            rate_lease_max: cfg
                .groups
                .iter()
                .map(|g| {
                    let base = lease(g.cfg.rate);
                    g.cfg.rate.map_or(base, |l| {
                        base.saturating_mul(MAX_LEASE_FACTOR)
                            .min(l.hard.max(1))
                            .max(base)
                    })
                })
                .collect(),
            conc_step: cfg
                .groups
                .iter()
                .map(|g| lease(g.cfg.concurrency))
                .collect(),
            scripts: Scripts::new(),
            degraded: AtomicBool::new(false),
            round_trips: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            degradations: AtomicU64::new(0),
            last_error: Mutex::new(None),
            queue: Mutex::new(Vec::new()),
            notify: Notify::new(),
            cfg: store,
        })
    }

    /// Spawns the background task (needs a tokio runtime).
    pub(crate) fn start(&self, shared: Weak<Shared>) -> Result<(), ConfigError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "store",
                "redis",
                "the Redis store needs a tokio runtime: build the layer inside one",
            )
        })?;
        rt.spawn(run(shared));
        Ok(())
    }

    pub(crate) fn last_error(&self) -> Option<StoreError> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn status(&self, shared: &Shared) -> StoreStatus {
        let leased = shared
            .registry
            .all()
            .map(|t| {
                t.fleet.rate_lease.load(Ordering::Relaxed)
                    + u64::from(t.fleet.conc_held.load(Ordering::Relaxed))
            })
            .sum();
        StoreStatus {
            kind: "redis",
            degraded: self.degraded.load(Ordering::Relaxed),
            fallback: Some(self.cfg.fallback.as_str()),
            round_trips: self.round_trips.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            degradations: self.degradations.load(Ordering::Relaxed),
            leased,
            last_error: self.last_error().map(|e| e.to_string()),
        }
    }

    /// Queues `t` for the background task (once until the task takes it). The mutex is
    /// taken once per lease, not per request.
    fn request(&self, t: &Arc<Tenant>) {
        if !t.fleet.queued.swap(true, Ordering::AcqRel) {
            self.queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(t.clone());
            self.notify.notify_one();
        }
    }

    /// Decides one request while the store is usable, or on the fallback mode.
    pub(crate) fn decide<'a>(
        &'a self,
        cx: &mut Ctx<'a>,
        deadline: Option<u64>,
    ) -> Result<Admitted, Refused> {
        let t = cx.tenant;
        let r = self.decide_here(cx, deadline);
        if let Err(Refused::Quota(e)) = &r
            && e.is_suspended()
        {
            self.note_suspension(t);
        }
        r
    }

    /// A suspension decided on this replica (newer than any it wrote or learned) is queued
    /// for Redis, so the other replicas learn it with their next lease reply.
    fn note_suspension(&self, t: &Arc<Tenant>) {
        let su = t.suspended_until.load(Ordering::Acquire);
        let f = &t.fleet;
        // A plain load first: every request of a suspended tenant passes here.
        if su > f.susp_known.load(Ordering::Relaxed)
            && su > f.susp_known.fetch_max(su, Ordering::Relaxed)
        {
            f.susp_push.fetch_max(su, Ordering::Relaxed);
            self.request(t);
        }
    }

    /// Whether the tenant may use its burst limits now. A group with a rate limit follows
    /// the fleet-wide window its rate lease replies report (kept in Redis by the lease
    /// script, see [`RedisStore`]); until the first reply, and for groups without a rate
    /// limit, this replica's own window (`local`) decides.
    fn burst_ok(f: &FleetCell, g: &GroupRt, local: bool, unseen: bool, now: u64) -> bool {
        if unseen || g.rate.is_none() {
            return local;
        }
        let until = f.burst_until.load(Ordering::Relaxed);
        until == 0 || now < until - 1
    }

    /// A rate lease reply's burst window (`state` 0: none, 1: running for `left_ms` more,
    /// 2: expired), read at `now`.
    fn learn_burst(f: &FleetCell, state: u64, left_ms: u64, now: u64) {
        let until = match state {
            0 => 0,
            1 => now
                .saturating_add(left_ms.saturating_mul(1_000_000))
                .saturating_add(1),
            _ => 1,
        };
        f.burst_until.store(until, Ordering::Relaxed);
    }

    /// The burst window the rate lease script keeps for group `g` (none when the group's
    /// burst limit is its hard limit).
    fn window(g: &GroupRt) -> Window {
        match g.rate.as_ref() {
            Some(gc) if gc.burst_tol > gc.hard_tol => Window {
                hard_tol_us: gc.hard_tol as f64 / 1e3,
                soft_tol_us: gc.soft_tol as f64 / 1e3,
                ms: g.burst_window_ns.div_ceil(1_000_000).max(1),
            },
            _ => Window::default(),
        }
    }

    /// The lease tenant `t` asks for now (cells).
    fn lease_target(&self, f: &FleetCell, gi: usize) -> u64 {
        let base = self.rate_lease[gi];
        f.rate_target
            .load(Ordering::Relaxed)
            .clamp(base, self.rate_lease_max[gi])
    }

    fn decide_here<'a>(
        &'a self,
        cx: &mut Ctx<'a>,
        deadline: Option<u64>,
    ) -> Result<Admitted, Refused> {
        let t = cx.tenant;
        if self.degraded.load(Ordering::Relaxed) || t.fleet.broken.load(Ordering::Acquire) {
            if t.fleet.broken.load(Ordering::Relaxed) {
                // Retried by the background task: the tenant comes back when its keys do.
                self.request(t);
            }
            return self.fallback(cx, deadline);
        }
        // No fleet reply yet (a new tenant, or leases possibly stale after a recovery):
        // decided as with an empty lease, on the local share, until the first reply lands;
        // the fleet is not known to be full, so no action applies.
        let unseen = !t.fleet.seen.load(Ordering::Acquire);
        if unseen {
            self.request(t);
        }
        let (g, now) = (cx.group, cx.now);
        let gi = t
            .group
            .load(Ordering::Relaxed)
            .min(self.rate_lease.len() - 1);
        let local_burst = Shared::suspension_and_burst(cx)?;
        let f = &t.fleet;
        let burst_ok = Self::burst_ok(f, g, local_burst, unseen, now);
        if let (Some(l), Some(gc)) = (g.cfg.units, g.units.as_ref()) {
            let level = drained(
                f.units_level.load(Ordering::Relaxed),
                f.units_at.load(Ordering::Relaxed),
                now,
            )
            .saturating_add(f.units_pending.load(Ordering::Relaxed).saturating_mul(gc.t));
            let (tol, cap) = if burst_ok {
                (gc.burst_tol, l.burst)
            } else {
                (gc.hard_tol, l.hard)
            };
            let share = self.share_groups[gi].units.as_ref();
            let share_level = share.map_or(0, |s| s.level(&t.units_tat, now));
            let share_tol = share.map_or(
                u64::MAX,
                |s| {
                    if burst_ok { s.burst_tol } else { s.hard_tol }
                },
            );
            if unseen && share_level > share_tol && refuses(l.action) {
                // Over the local share's units before the fleet's level is known: refused
                // softly.
                return Err(Refused::Quota(QuotaExceeded::new(
                    Arc::from(cx.key),
                    QuotaResource::Units,
                    cap,
                    Duration::from_nanos(share_level - share_tol),
                    false,
                )));
            } else if level > tol {
                let retry = Duration::from_nanos(level - tol);
                cx.over(QuotaResource::Units, l, cap, retry)?;
            } else {
                cx.classify(
                    QuotaResource::Units,
                    level > gc.soft_tol,
                    level > gc.hard_tol,
                );
            }
        }
        if let (Some(l), Some(gc)) = (g.cfg.rate, g.rate.as_ref()) {
            // The lease is the reservation: a compare-exchange decrement, never below 0.
            let took = if unseen {
                Err(0)
            } else {
                f.rate_lease
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            };
            let level = drained(
                f.rate_level.load(Ordering::Relaxed),
                f.rate_at.load(Ordering::Relaxed),
                now,
            );
            match took {
                Ok(left) => {
                    f.last_spend.store(now, Ordering::Relaxed);
                    f.rate_spent.fetch_add(1, Ordering::Relaxed);
                    if left.saturating_sub(1) <= self.lease_target(f, gi) / 2 {
                        self.request(t);
                    }
                    cx.classify(
                        QuotaResource::Rate,
                        level > gc.soft_tol,
                        level > gc.hard_tol,
                    );
                }
                Err(_) => self.lease_empty(cx, (l, gc), gi, level, burst_ok)?,
            }
        }
        let n = t.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let permit = Permit(t.clone());
        if let Some(l) = g.cfg.concurrency {
            f.last_spend.store(now, Ordering::Relaxed);
            let held = if unseen {
                0
            } else {
                f.conc_held.load(Ordering::Relaxed)
            };
            let cap = if burst_ok { l.burst } else { l.hard };
            if u64::from(n) + self.conc_step[gi] / 2 >= u64::from(held) {
                self.request(t);
            }
            let fleet = u64::from(f.conc_others.load(Ordering::Relaxed)) + u64::from(n);
            if n > held {
                if fleet > cap {
                    // The fleet is known to be at its limit: the action.
                    let retry = cx.shared.cfg.concurrency_retry_after;
                    cx.over(QuotaResource::Concurrency, l, cap, retry)?;
                } else {
                    // The lease ran out but the fleet has room as far as this replica
                    // knows: the local share decides until the next lease lands (counted
                    // in the fleet then, as this replica's lease asks for what is in
                    // flight); past it, a soft refusal, never the action.
                    let share = self.share_groups[gi]
                        .cfg
                        .concurrency
                        .map_or(cap, |s| if burst_ok { s.burst } else { s.hard });
                    if u64::from(n) > share && refuses(l.action) {
                        return Err(Refused::Quota(QuotaExceeded::new(
                            Arc::from(cx.key),
                            QuotaResource::Concurrency,
                            cap,
                            self.cfg.timeout,
                            false,
                        )));
                    }
                    cx.classify(QuotaResource::Concurrency, fleet > l.soft, fleet > l.hard);
                }
            } else {
                cx.classify(QuotaResource::Concurrency, fleet > l.soft, fleet > l.hard);
            }
        }
        Ok(Admitted {
            permit,
            delay: Duration::ZERO,
            status: cx.status,
            degrade: cx.degrade,
            units: g.cfg.units.is_some(),
        })
    }

    /// The rate lease is empty. The action applies only when the fleet is known to be at
    /// its limit: Redis said it had no room (until `rate_retry_at`), or the fleet level last
    /// read, drained since and plus what this replica admitted on its share since, leaves no
    /// room for one more cell. Otherwise (a burst faster than a round trip, a tenant back
    /// from idle) the request is decided like the in-process store would on this replica's
    /// local share and charged to Redis with the next lease; past the local share it is
    /// refused softly (`retry_after` of about one refill, no hard-limit event, never a
    /// suspension).
    fn lease_empty(
        &self,
        cx: &mut Ctx<'_>,
        (l, gc): (Limit, &crate::quota::gcra::Gcra),
        gi: usize,
        level: u64,
        burst_ok: bool,
    ) -> Result<(), QuotaExceeded> {
        let (t, now) = (cx.tenant, cx.now);
        let f = &t.fleet;
        let retry_at = f.rate_retry_at.load(Ordering::Relaxed);
        let (tol, cap) = if burst_ok {
            (gc.burst_tol, l.burst)
        } else {
            (gc.hard_tol, l.hard)
        };
        let unsynced = f.rate_unsynced.load(Ordering::Relaxed);
        let fleet = level.saturating_add(unsynced.saturating_mul(gc.t));
        let idle =
            now.saturating_sub(f.last_spend.load(Ordering::Relaxed)) > ns(self.cfg.idle_return);
        if now >= retry_at {
            self.request(t);
            if idle || fleet.saturating_add(gc.t) <= tol {
                let share = self.share_groups[gi].rate.as_ref();
                let local = share.map_or(Ok(0), |s| {
                    let stol = if burst_ok { s.burst_tol } else { s.hard_tol };
                    s.acquire(&t.rate_tat, now, 1, stol)
                });
                if local.is_ok() || !refuses(l.action) {
                    f.rate_unsynced.fetch_add(1, Ordering::Relaxed);
                    f.rate_spent.fetch_add(1, Ordering::Relaxed);
                    f.last_spend.store(now, Ordering::Relaxed);
                    let after = fleet.saturating_add(gc.t);
                    cx.classify(
                        QuotaResource::Rate,
                        after > gc.soft_tol,
                        after > gc.hard_tol,
                    );
                    return Ok(());
                }
                return Err(QuotaExceeded::new(
                    Arc::from(cx.key),
                    QuotaResource::Rate,
                    cap,
                    self.cfg.timeout.max(Duration::from_nanos(gc.t)),
                    false,
                ));
            }
        }
        let retry = Duration::from_nanos(
            retry_at
                .saturating_sub(now)
                .max(fleet.saturating_sub(tol))
                .max(gc.t),
        );
        cx.over(QuotaResource::Rate, l, cap, retry)
    }

    fn fallback<'a>(
        &'a self,
        cx: &mut Ctx<'a>,
        deadline: Option<u64>,
    ) -> Result<Admitted, Refused> {
        match self.cfg.fallback {
            FallbackMode::LocalShare => self.local_share(cx, deadline),
            FallbackMode::FailOpen => {
                cx.tenant.in_flight.fetch_add(1, Ordering::Relaxed);
                Ok(Admitted {
                    permit: Permit(cx.tenant.clone()),
                    delay: Duration::ZERO,
                    status: None,
                    degrade: None,
                    units: cx.group.cfg.units.is_some(),
                })
            }
            FallbackMode::FailClosed => Err(Refused::Store(StoreError::unavailable(
                &self
                    .last_error()
                    .map_or_else(|| "store degraded".to_string(), |e| e.to_string()),
            ))),
        }
    }

    /// The in-process algorithm on this replica's share of the limits.
    fn local_share<'a>(
        &'a self,
        cx: &mut Ctx<'a>,
        deadline: Option<u64>,
    ) -> Result<Admitted, Refused> {
        let gi = cx
            .tenant
            .group
            .load(Ordering::Relaxed)
            .min(self.share_groups.len() - 1);
        cx.group = &self.share_groups[gi];
        let shared = cx.shared;
        shared.decide(cx, deadline).map_err(Refused::from)
    }

    /// Units reported after the fact: counted for the fleet (flushed by the background
    /// task) and in the local-share bucket (used while degraded).
    pub(crate) fn charge(&self, shared: &Shared, t: &Tenant, units: u64, now: u64) {
        t.fleet.units_pending.fetch_add(units, Ordering::Relaxed);
        let gi = t.group.load(Ordering::Relaxed);
        if let Some(g) = self
            .share_groups
            .get(gi)
            .and_then(|g| g.units.as_ref())
            .or(shared.group_of(t).units.as_ref())
        {
            g.charge(&t.units_tat, now, units);
        }
    }

    fn fail(&self, shared: &Shared, tenant: Option<&Tenant>, e: StoreError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let reason: Arc<str> = Arc::from(e.to_string());
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        let (name, group, newly) = match tenant {
            Some(t) if !e.is_store_wide() => (
                t.name(),
                shared.group_of(t).cfg.name.clone(),
                !t.fleet.broken.swap(true, Ordering::AcqRel),
            ),
            _ => {
                let newly = !self.degraded.swap(true, Ordering::AcqRel);
                if newly {
                    self.degradations.fetch_add(1, Ordering::Relaxed);
                }
                (Arc::from("*"), Arc::from("*"), newly)
            }
        };
        if newly {
            shared.cfg.events.emit(Event::Quota(QuotaEvent {
                tenant: name,
                group,
                kind: QuotaEventKind::StoreDegraded { reason },
                at: tokio::time::Instant::now(),
            }));
        }
    }

    fn recovered(&self, shared: &Shared) {
        if self.degraded.swap(false, Ordering::AcqRel) {
            // Leases may be stale: every tenant is decided on its share until it has a
            // fresh one.
            for t in shared.registry.all() {
                t.fleet.seen.store(false, Ordering::Release);
            }
            shared.cfg.events.emit(Event::Quota(QuotaEvent {
                tenant: Arc::from("*"),
                group: Arc::from("*"),
                kind: QuotaEventKind::StoreRecovered,
                at: tokio::time::Instant::now(),
            }));
        }
    }

    fn key(&self, shared: &Shared, t: &Tenant, what: &str) -> String {
        format!(
            "{}:{{{}/{}}}:{what}",
            self.cfg.prefix,
            shared.group_of(t).cfg.name,
            t.name()
        )
    }

    /// Bounds one call by the store's timeout and counts it.
    async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.cfg.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::new(
                super::StoreErrorKind::Timeout,
                format!("no reply within {:?}", self.cfg.timeout),
            )),
        }
    }

    /// A lease reply said tenant `t` is suspended fleet-wide for `left_ms` more: enforced
    /// here until it ends (a suspension this replica wrote itself comes back a little
    /// shorter and changes nothing).
    /// What every rate-lease reply tells besides the grant: the fleet bucket's level (in
    /// ms, a Redis value: saturating), the fleet suspension and the burst window.
    fn learn_rate_reply(
        &self,
        shared: &Shared,
        t: &Tenant,
        f: &FleetCell,
        [level, susp, window_state, window_left]: [u64; 4],
        now: u64,
    ) {
        f.rate_level
            .store(level.saturating_mul(1000), Ordering::Relaxed);
        f.rate_at.store(now, Ordering::Relaxed);
        self.learn_suspension(shared, t, susp, now);
        Self::learn_burst(f, window_state, window_left, now);
    }

    fn learn_suspension(&self, shared: &Shared, t: &Tenant, left_ms: u64, now: u64) {
        if left_ms == 0 {
            return;
        }
        let until = now
            .saturating_add(left_ms.saturating_mul(1_000_000))
            .saturating_add(1);
        // Already known (written here, or read with an earlier reply)? A millisecond of
        // slack for the reply's rounding.
        let known = t.fleet.susp_known.fetch_max(until, Ordering::Relaxed);
        if until <= known.saturating_add(1_000_000) {
            return;
        }
        let cur = t.suspended_until.fetch_max(until, Ordering::AcqRel);
        if cur == 0 || cur - 1 <= now {
            shared.cfg.events.emit(Event::Quota(QuotaEvent {
                tenant: t.name(),
                group: shared.group_of(t).cfg.name.clone(),
                kind: QuotaEventKind::Suspended {
                    duration: Duration::from_millis(left_ms),
                },
                at: tokio::time::Instant::now(),
            }));
        }
    }

    /// Refills (or returns, flushes, renews) what tenant `t` needs. `Err` only for
    /// store-wide failures.
    async fn sync_tenant(
        &self,
        shared: &Shared,
        con: &mut ConnectionManager,
        t: &Arc<Tenant>,
        idle_return: bool,
    ) -> Result<(), StoreError> {
        let f = &t.fleet;
        let g = shared.group_of(t);
        let gi = t
            .group
            .load(Ordering::Relaxed)
            .min(self.rate_lease.len() - 1);
        let now = shared.nanos(tokio::time::Instant::now());
        let bs = t.burst_since.load(Ordering::Relaxed);
        let local_burst = bs == 0 || now.saturating_sub(bs - 1) < g.burst_window_ns;
        let seen = f.seen.load(Ordering::Acquire);
        let burst_ok = Self::burst_ok(f, &g, local_burst, !seen, now);
        let bkey = self.key(shared, t, "burst");
        let window = Self::window(&g);
        let mut bad: Option<StoreError> = None;
        let mut check = |r: Result<(), StoreError>| -> Result<(), StoreError> {
            match r {
                Err(e) if e.is_store_wide() => Err(e),
                Err(e) => {
                    bad = Some(e);
                    Ok(())
                }
                Ok(()) => Ok(()),
            }
        };
        let skey = self.key(shared, t, "suspended");
        // A suspension decided here goes to Redis (one call per suspension, not per
        // request); the other replicas read it with their next lease reply.
        let push = f.susp_push.swap(0, Ordering::Relaxed);
        if push > now.saturating_add(1) {
            let ms = (push - 1 - now).div_ceil(1_000_000).max(1);
            let r = self
                .call(self.scripts.suspend(con, &skey, ms))
                .await
                .map(|left| self.learn_suspension(shared, t, left, now));
            if r.is_err() {
                f.susp_push.fetch_max(push, Ordering::Relaxed);
            }
            check(r)?;
        }
        if let Some(gc) = g.rate.as_ref() {
            // The script lowers the tolerance to hard once the fleet's window has expired.
            let tol = gc.burst_tol;
            let t_us = gc.t as f64 / 1e3;
            let target = self.lease_target(f, gi);
            let have = f.rate_lease.load(Ordering::Relaxed);
            let idle =
                now.saturating_sub(f.last_spend.load(Ordering::Relaxed)) > ns(self.cfg.idle_return);
            let key = self.key(shared, t, "rate");
            let r = if idle_return && idle && have > 0 {
                let back = f.rate_lease.swap(0, Ordering::Relaxed);
                let unsynced = f.rate_unsynced.swap(0, Ordering::Relaxed);
                f.rate_target.store(0, Ordering::Relaxed);
                let cells = Cells {
                    want: 0,
                    ret: back,
                    charge: unsynced,
                };
                let r = self
                    .call(self.scripts.gcra(
                        con,
                        (&key, &skey, &bkey),
                        t_us,
                        tol as f64 / 1e3,
                        cells,
                        window,
                    ))
                    .await
                    .map(|[_, level, _, susp, ws, wleft]| {
                        self.learn_rate_reply(shared, t, f, [level, susp, ws, wleft], now);
                    });
                if r.is_err() {
                    f.rate_unsynced.fetch_add(unsynced, Ordering::Relaxed);
                }
                r
            } else if have <= target / 2 && now >= f.rate_retry_at.load(Ordering::Relaxed) {
                let unsynced = f.rate_unsynced.swap(0, Ordering::Relaxed);
                // Lease sizing: what the recent spend rate needs for two store timeouts
                // (the longest a refill may take), at least the base lease, at most
                // `MAX_LEASE_FACTOR` base leases; doubled while the tenant outruns its
                // lease (cells admitted on the local share since the last refill).
                let spent = f.rate_spent.swap(0, Ordering::Relaxed);
                let since = now
                    .saturating_sub(f.rate_refilled.swap(now, Ordering::Relaxed))
                    .max(1);
                let horizon = ns(self.cfg.timeout).saturating_mul(2);
                let by_rate = (u128::from(spent) * u128::from(horizon) / u128::from(since))
                    .min(u128::from(u64::MAX)) as u64;
                let mut size = by_rate;
                if unsynced > 0 {
                    size = size.max(target.saturating_mul(2)).max(unsynced);
                }
                f.rate_target.store(size, Ordering::Relaxed);
                let target = self.lease_target(f, gi);
                let want = target.saturating_sub(have);
                let cells = Cells {
                    want,
                    ret: 0,
                    charge: unsynced,
                };
                let r = self
                    .call(self.scripts.gcra(
                        con,
                        (&key, &skey, &bkey),
                        t_us,
                        tol as f64 / 1e3,
                        cells,
                        window,
                    ))
                    .await
                    .map(|[granted, level, wait, susp, ws, wleft]| {
                        f.rate_lease.fetch_add(granted.min(want), Ordering::Relaxed);
                        let retry = if granted < want {
                            now.saturating_add(wait.saturating_mul(1000))
                        } else {
                            0
                        };
                        f.rate_retry_at.store(retry, Ordering::Relaxed);
                        self.learn_rate_reply(shared, t, f, [level, susp, ws, wleft], now);
                    });
                if r.is_err() {
                    // Charged with a later lease (a call that timed out may have been
                    // charged already: counting it twice only makes the fleet admit less).
                    f.rate_unsynced.fetch_add(unsynced, Ordering::Relaxed);
                }
                r
            } else {
                Ok(())
            };
            check(r)?;
        }
        if let Some(gc) = g.units.as_ref() {
            let pending = f.units_pending.swap(0, Ordering::Relaxed);
            let key = self.key(shared, t, "units");
            let cells = Cells {
                want: pending,
                ret: 0,
                charge: 0,
            };
            let r = self
                .call(self.scripts.gcra(
                    con,
                    (&key, &skey, &bkey),
                    gc.t as f64 / 1e3,
                    1e18,
                    cells,
                    Window::default(),
                ))
                .await
                .map(|[_, level, _, susp, _, _]| {
                    f.units_level
                        .store(level.saturating_mul(1000), Ordering::Relaxed);
                    f.units_at.store(now, Ordering::Relaxed);
                    self.learn_suspension(shared, t, susp, now);
                });
            if r.is_err() {
                f.units_pending.fetch_add(pending, Ordering::Relaxed);
            }
            check(r)?;
        }
        if let Some(l) = g.cfg.concurrency {
            let step = self.conc_step[gi];
            let in_flight = u64::from(t.in_flight.load(Ordering::Relaxed));
            let held = u64::from(f.conc_held.load(Ordering::Relaxed));
            let idle = in_flight == 0
                && now.saturating_sub(f.last_spend.load(Ordering::Relaxed))
                    > ns(self.cfg.idle_return);
            // An idle replica gives its slots back; a busy one holds a step of headroom.
            let want = if idle { 0 } else { in_flight + step };
            let renew_due = now.saturating_sub(f.conc_renewed.load(Ordering::Relaxed))
                >= ns(self.cfg.lease_ttl) / 3;
            if want > held
                || (renew_due && held > 0)
                || held > want + step
                || (want == 0 && held > 0)
            {
                let cap = if burst_ok { l.burst } else { l.hard };
                let keys = (
                    self.key(shared, t, "conc:slots"),
                    self.key(shared, t, "conc:expiry"),
                );
                let keys = (keys.0.as_str(), keys.1.as_str(), skey.as_str());
                let ttl = ns(self.cfg.lease_ttl) / 1_000_000;
                let r = self
                    .call(
                        self.scripts
                            .conc(con, keys, &self.cfg.replica, want, cap, ttl),
                    )
                    .await
                    .map(|[granted, others, susp]| {
                        self.learn_suspension(shared, t, susp, now);
                        f.conc_held
                            .store(granted.min(u32::MAX as u64) as u32, Ordering::Relaxed);
                        f.conc_others
                            .store(others.min(u32::MAX as u64) as u32, Ordering::Relaxed);
                        f.conc_renewed.store(now, Ordering::Relaxed);
                    });
                check(r)?;
            }
        }
        match bad {
            Some(e) => self.fail(shared, Some(t), e),
            None => {
                if f.broken.swap(false, Ordering::AcqRel) {
                    shared.cfg.events.emit(Event::Quota(QuotaEvent {
                        tenant: t.name(),
                        group: g.cfg.name.clone(),
                        kind: QuotaEventKind::StoreRecovered,
                        at: tokio::time::Instant::now(),
                    }));
                }
                f.seen.store(true, Ordering::Release);
            }
        }
        Ok(())
    }
}

/// Connects (bounded by the connect timeout) and loads the scripts.
async fn connect(fleet: &Fleet) -> Result<ConnectionManager, StoreError> {
    let fut = async {
        let mut con = ConnectionManager::new_with_config(
            fleet.cfg.client.clone(),
            fleet.cfg.manager_config(),
        )
        .await
        .map_err(|e| StoreError::from_redis(&e))?;
        fleet.scripts.load(&mut con).await?;
        Ok(con)
    };
    fleet.round_trips.fetch_add(1, Ordering::Relaxed);
    match tokio::time::timeout(fleet.cfg.connect_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::new(
            super::StoreErrorKind::Timeout,
            format!("no connection within {:?}", fleet.cfg.connect_timeout),
        )),
    }
}

/// The background task: lives as long as the layer's state.
async fn run(weak: Weak<Shared>) {
    let mut con: Option<ConnectionManager> = None;
    let mut last_maintenance = tokio::time::Instant::now();
    // Tenants whose lease Redis could not fill yet, retried when due.
    let mut waiting: Vec<Arc<Tenant>> = Vec::new();
    loop {
        let (sleep_for, notified) = {
            let Some(shared) = weak.upgrade() else { return };
            let crate::quota::store::Store::Fleet(fleet) = &shared.store else {
                return;
            };
            let fleet = fleet.clone();
            drop(shared);
            let d = if fleet.degraded.load(Ordering::Relaxed) {
                fleet.cfg.probe_interval
            } else if waiting.is_empty() {
                fleet.cfg.maintenance_interval
            } else {
                Duration::from_millis(1)
            };
            (d, fleet)
        };
        tokio::select! {
            () = notified.notify.notified() => {}
            () = tokio::time::sleep(sleep_for) => {}
        }
        drop(notified);
        let Some(shared) = weak.upgrade() else { return };
        let crate::quota::store::Store::Fleet(fleet) = &shared.store else {
            return;
        };
        let fleet = fleet.clone();
        // (Re)connect when needed; a degraded store probes here.
        if con.is_none() {
            match connect(&fleet).await {
                Ok(c) => con = Some(c),
                Err(e) => {
                    fleet.fail(&shared, None, e);
                    continue;
                }
            }
        }
        let Some(c) = con.as_mut() else { continue };
        if fleet.degraded.load(Ordering::Relaxed) {
            let ping = fleet
                .call(async {
                    redis::cmd("PING")
                        .query_async::<String>(c)
                        .await
                        .map_err(|e| StoreError::from_redis(&e))
                })
                .await;
            match ping {
                Ok(_) => {
                    if fleet.scripts.load(c).await.is_ok() {
                        fleet.recovered(&shared);
                    }
                }
                Err(e) => {
                    fleet.fail(&shared, None, e);
                    // A fresh manager next time: the old one may be stuck reconnecting.
                    con = None;
                    continue;
                }
            }
        }
        let mut batch: Vec<Arc<Tenant>> =
            std::mem::take(&mut *fleet.queue.lock().unwrap_or_else(|p| p.into_inner()));
        let now = tokio::time::Instant::now();
        let maintenance =
            now.saturating_duration_since(last_maintenance) >= fleet.cfg.maintenance_interval;
        if maintenance {
            last_maintenance = now;
            batch.extend(
                shared
                    .registry
                    .all()
                    .filter(|t| {
                        let f = &t.fleet;
                        f.rate_lease.load(Ordering::Relaxed) > 0
                            || f.units_pending.load(Ordering::Relaxed) > 0
                            || f.conc_held.load(Ordering::Relaxed) > 0
                            || t.in_flight.load(Ordering::Relaxed) > 0
                            // Units are reported by every replica: read the fleet's level.
                            || (f.seen.load(Ordering::Relaxed)
                                && shared.group_of(t).units.is_some())
                    })
                    .cloned(),
            );
        }
        let n = shared.nanos(now);
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut waiting)
            .into_iter()
            .partition(|t| n >= t.fleet.rate_retry_at.load(Ordering::Relaxed));
        waiting = later;
        batch.extend(due);
        batch.sort_by_key(|t| Arc::as_ptr(t) as usize);
        batch.dedup_by_key(|t| Arc::as_ptr(t) as usize);
        let mut failed = false;
        for t in &batch {
            t.fleet.queued.store(false, Ordering::Release);
            if failed {
                continue;
            }
            if let Err(e) = fleet.sync_tenant(&shared, c, t, maintenance).await {
                fleet.fail(&shared, None, e);
                failed = true;
                continue;
            }
            if n < t.fleet.rate_retry_at.load(Ordering::Relaxed) {
                waiting.push(t.clone());
            }
        }
    }
}
