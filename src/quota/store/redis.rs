//! The Redis store's configuration, its Lua scripts and its typed errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use crate::error::ConfigError;

/// What a quota layer does while its Redis store is unreachable (or a tenant's keys hold a
/// bad value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FallbackMode {
    /// Each replica enforces its share of every limit on its own: `limit / replicas`
    /// (rounded up, at least 1), with the in-process algorithm. The default: the fleet as a
    /// whole stays near its quota while Redis is down.
    #[default]
    LocalShare,
    /// Admit every request (quotas are not enforced until Redis answers again).
    FailOpen,
    /// Refuse every request with [`StoreError`] (`503`): no request is admitted that the
    /// fleet could not account for.
    FailClosed,
}

impl FallbackMode {
    /// `"local-share"`, `"fail-open"` or `"fail-closed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LocalShare => "local-share",
            Self::FailOpen => "fail-open",
            Self::FailClosed => "fail-closed",
        }
    }
}

/// Fleet-wide quotas in Redis (feature `redis`).
///
/// # How it works
///
/// * **Rate and units** are GCRA buckets in Redis (one key per tenant and resource holding
///   the theoretical arrival time, in microseconds of the *server's* clock, so replicas'
///   clocks do not matter). One Lua script, sent once with `SCRIPT LOAD` and run by its SHA
///   (`EVALSHA`, with the `NOSCRIPT` fallback of [`redis::Script`]), takes a **lease** of up
///   to `n` cells atomically: as many as fit under the tolerance, charged to the bucket at
///   once. The same script returns unused cells and charges units reported after the fact.
/// * **Concurrency** slots are leased per replica: a hash of `replica -> slots` and a sorted
///   set of `replica -> expiry`. The script first purges replicas whose lease expired (a
///   crashed replica's slots free themselves after `lease_ttl`), then grants up to the
///   limit. Replicas renew their lease every `lease_ttl / 3`.
/// * **The request path makes no round trip.** It spends leased cells and slots with
///   atomics; a background task (spawned when the layer is built) refills a tenant's lease
///   when it runs below half, returns what an idle tenant holds, flushes units and renews
///   concurrency leases. A tenant seen for the first time (or after a recovery) is decided
///   on the local share until its first lease arrives, as with an empty lease (below).
/// * **Lease sizing.** A tenant's rate lease is sized from its recent spend rate: what it
///   spends in two store `timeout`s, at least the base lease `max(1, ceil(hard *
///   lease_fraction))`, at most `max_lease = min(hard, 8 * base lease)`; doubled while the
///   tenant outruns its lease. A bursting tenant asks for a bigger lease early; a quiet one
///   goes back to the base lease.
/// * **Suspensions are fleet-wide.** The replica that suspends a tenant writes
///   `{prefix}:{<group>/<tenant>}:suspended` with the suspension's expiry (`SET .. PX`, a
///   longer suspension already there is kept): one call per suspension. Every lease script
///   reads that key and returns what is left of it with its reply, so the other replicas
///   enforce the suspension locally until it ends, from their next lease reply on (no
///   extra round trip).
/// * **Burst windows are fleet-wide** (for groups with a rate limit). The rate lease
///   script keeps the window in `{prefix}:{<group>/<tenant>}:burst` (its end, on the
///   server's clock): a lease taking the fleet bucket above hard starts it when there is
///   none (`now + burst_window`); after its end the script grants only up to the hard
///   tolerance; a fleet level back at or under soft deletes it (the next burst gets a full
///   window, the rule of the in-process store). Each reply returns the window's state and
///   what is left of it, and replicas enforce it locally: up to burst while it runs, hard
///   with the group's action after it (no extra round trip). A replica's first requests
///   for a tenant, before its first reply, and an idle replica until its next lease, use
///   what they last knew (their own window at first). Groups without a rate limit, and a
///   degraded store ([`FallbackMode::LocalShare`]), keep a window per replica.
///
/// # Error bound
///
/// Cells are charged to the fleet bucket when leased. A replica whose lease is empty while
/// the fleet is not known to be at its limit (a burst faster than a round trip, a tenant
/// new or back from idle) decides on its **local share** (`limit / replicas`, the
/// in-process algorithm) and charges those cells to the fleet bucket with its next lease,
/// even past the limit: a debt the fleet pays back by admitting less afterwards. So over
/// any interval, fleet-wide admissions are at most the limit's allowance for that interval
/// **plus the cells outstanding in leases at its start** (at most `replicas * 1.5 *
/// max_lease`, the part of earlier leases spent late) **plus the local-share admissions
/// not yet charged at its end** (at most one local share per replica: `burst / replicas`
/// cells plus what that share refills during one round trip). Cells leased and never spent
/// (a replica that crashed) make the fleet admit *less*, never more.
///
/// Soft, hard and burst limits are checked against the fleet's bucket level reported with
/// each lease. The enforcement action applies only when the fleet is **known** to be at its
/// limit: Redis answered the last lease with fewer cells than asked (until the rest would
/// fit), or the level read with the last lease, drained since and plus what this replica
/// admitted on its share since, leaves no room for one more cell. An empty lease otherwise
/// never triggers the action: past the local share the request is refused softly
/// ([`QuotaExceeded`](crate::quota::QuotaExceeded) with a `retry_after` of about one
/// store `timeout`, no hard-limit event, never a suspension; `Warn` and `Degrade` limits
/// admit it). Concurrency works the same way on the slots of the fleet. While degraded on
/// [`FallbackMode::LocalShare`] the fleet admits at most the sum of the replicas' shares.
///
/// # When Redis is down, slow or wrong
///
/// No request waits on Redis: the request path only reads atomics. Every Redis call of the
/// background task is bounded by `timeout` (default 25 ms). A failed or slow call marks the
/// store **degraded**: requests are decided on the [`FallbackMode`] (no request ever waits
/// for Redis), a [`QuotaEventKind::StoreDegraded`](crate::event::QuotaEventKind) event is
/// emitted and the quota status shows `store_state: degraded`. The background task probes
/// Redis every `probe_interval` and goes back to fleet accounting by itself when it answers
/// (event `StoreRecovered`). A reply of the wrong shape, or a key holding something else
/// than the store wrote (wrong type, garbage), is a [`StoreError`] for that tenant, which is
/// then decided on the fallback mode until its keys are usable again: never a panic.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), tower::BoxError> {
/// use std::time::Duration;
/// use tower_pressure::quota::{FallbackMode, HeaderKey, Limit, QuotaGroup, QuotaLayer, RedisStore};
///
/// let store = RedisStore::new("redis://127.0.0.1:6379/")?
///     .expected_replicas(3)
///     .timeout(Duration::from_millis(25))
///     .fallback(FallbackMode::LocalShare);
/// let layer = QuotaLayer::builder()
///     .group(QuotaGroup::new("free").rate(Limit::new(100)))
///     .store(store)
///     .build(HeaderKey::x_tenant())?;
/// println!("{}", layer.handle().store_status());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) client: redis::Client,
    pub(crate) url_display: Arc<str>,
    pub(crate) prefix: Arc<str>,
    pub(crate) replica: Arc<str>,
    pub(crate) replicas: u64,
    pub(crate) fallback: FallbackMode,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) probe_interval: Duration,
    pub(crate) maintenance_interval: Duration,
    pub(crate) idle_return: Duration,
    pub(crate) lease_fraction: f64,
    pub(crate) lease_ttl: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: only its host part is shown.
        f.debug_struct("RedisStore")
            .field("url", &self.url_display)
            .field("prefix", &self.prefix)
            .field("replica", &self.replica)
            .field("replicas", &self.replicas)
            .field("fallback", &self.fallback)
            .field("timeout", &self.timeout)
            .field("lease_fraction", &self.lease_fraction)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis server at `url` (`redis://host:port/db`, `rediss://` needs the
    /// redis crate's TLS features). Defaults: expected replicas 3, fallback
    /// [`FallbackMode::LocalShare`], timeout 5 ms, probe every 100 ms, leases of 2 % of a
    /// limit, concurrency leases expiring after 10 s, key prefix `tower-pressure`, replica
    /// id random.
    ///
    /// ```
    /// use tower_pressure::quota::RedisStore;
    /// assert!(RedisStore::new("redis://127.0.0.1:6379/").is_ok());
    /// assert!(RedisStore::new("http://nope").is_err());
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`] on `url` when it is not a Redis URL.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url)
            .map_err(|e| ConfigError::new("store.redis.url", redact(url), e.to_string()))?;
        Ok(Self {
            client,
            url_display: Arc::from(redact(url)),
            prefix: Arc::from("tower-pressure"),
            replica: Arc::from(format!("replica-{:016x}", fastrand::u64(..))),
            replicas: 3,
            fallback: FallbackMode::LocalShare,
            timeout: Duration::from_millis(25),
            connect_timeout: Duration::from_millis(100),
            probe_interval: Duration::from_millis(100),
            maintenance_interval: Duration::from_millis(20),
            idle_return: Duration::from_secs(1),
            lease_fraction: 0.02,
            lease_ttl: Duration::from_secs(10),
        })
    }

    /// How many replicas share the quota: each one's local share while degraded is
    /// `limit / replicas` (default 3).
    pub fn expected_replicas(mut self, n: u64) -> Self {
        self.replicas = n;
        self
    }

    /// What happens while Redis is unreachable (default [`FallbackMode::LocalShare`]).
    pub fn fallback(mut self, mode: FallbackMode) -> Self {
        self.fallback = mode;
        self
    }

    /// The longest any Redis call may take before the store counts as degraded (default
    /// 25 ms). Requests never wait on Redis at all (their wait budget is zero): this bounds
    /// how long a replica keeps deciding on a silent store's last leases before it
    /// switches to its fallback.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The longest a (re)connection attempt may take (default 100 ms).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How often a degraded store probes Redis (default 100 ms).
    pub fn probe_interval(mut self, d: Duration) -> Self {
        self.probe_interval = d;
        self
    }

    /// The share of a limit leased to a replica at a time (default 0.02: 2 %; at least one
    /// cell): the base lease. A bursting tenant's lease grows with its spend rate up to 8
    /// base leases (at most the hard limit). Larger leases mean fewer round trips and a
    /// larger error bound.
    pub fn lease_fraction(mut self, f: f64) -> Self {
        self.lease_fraction = f;
        self
    }

    /// How long a replica's concurrency lease lives without renewal (default 10 s): the
    /// slots of a replica that crashed are free again after this.
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.lease_ttl = d;
        self
    }

    /// A tenant idle this long returns its unused rate cells (default 1 s).
    pub fn idle_return(mut self, d: Duration) -> Self {
        self.idle_return = d;
        self
    }

    /// The prefix of every key (default `tower-pressure`): keys are
    /// `{prefix}:{<group>/<tenant>}:rate|units|conc:slots|conc:expiry|suspended|burst` (the
    /// braces keep a tenant's keys in one Redis Cluster slot).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// This replica's id in concurrency leases (default random; set it to the pod name to
    /// make `HGETALL` readable).
    pub fn replica_id(mut self, id: &str) -> Self {
        self.replica = Arc::from(id);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let pos = |f: &str, d: Duration| {
            if d.is_zero() {
                Err(ConfigError::new(
                    format!("store.redis.{f}"),
                    d,
                    "must be > 0",
                ))
            } else {
                Ok(())
            }
        };
        pos("timeout", self.timeout)?;
        pos("connect_timeout", self.connect_timeout)?;
        pos("probe_interval", self.probe_interval)?;
        pos("idle_return", self.idle_return)?;
        if self.lease_ttl < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "store.redis.lease_ttl",
                self.lease_ttl,
                "must be >= 100ms",
            ));
        }
        if self.replicas == 0 {
            return Err(ConfigError::new(
                "store.redis.expected_replicas",
                0,
                "must be > 0",
            ));
        }
        if !(self.lease_fraction > 0.0 && self.lease_fraction <= 1.0) {
            return Err(ConfigError::new(
                "store.redis.lease_fraction",
                self.lease_fraction,
                "must be in (0, 1]",
            ));
        }
        if self.prefix.is_empty() || self.replica.is_empty() {
            return Err(ConfigError::new(
                "store.redis.prefix",
                &*self.prefix,
                "prefix and replica id must not be empty",
            ));
        }
        Ok(())
    }

    pub(crate) fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.timeout))
            .set_connection_timeout(Some(self.connect_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(self.probe_interval)
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

pub use crate::outcome::store::{StoreError, StoreErrorKind};

// The Redis-specific constructors stay with the store; the type is core so other layers can
// recognise a store outage.
impl StoreError {
    /// Classifies a redis crate error.
    pub(crate) fn from_redis(e: &redis::RedisError) -> Self {
        let text = e.to_string();
        let kind = if e.is_timeout() {
            StoreErrorKind::Timeout
        } else if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            StoreErrorKind::Unreachable
        } else if text.contains("WRONGTYPE") || text.contains("TPBADSTATE") {
            StoreErrorKind::BadState
        } else if matches!(e.kind(), redis::ErrorKind::Parse) {
            StoreErrorKind::BadReply
        } else {
            StoreErrorKind::Server
        };
        Self::new(kind, text)
    }

    /// Whether the whole store is unusable (as opposed to one tenant's keys).
    pub(crate) fn is_store_wide(&self) -> bool {
        matches!(
            self.kind(),
            StoreErrorKind::Unreachable | StoreErrorKind::Timeout | StoreErrorKind::Server
        )
    }
}

/// GCRA in Redis. KEYS[1]: the bucket (theoretical arrival time in µs of the server clock,
/// stored with three decimals); KEYS[2]: the tenant's fleet-wide suspension (read only);
/// KEYS[3]: the tenant's fleet-wide burst window (its end, µs of the server clock).
/// ARGV: emission interval T (µs), tolerance (µs), cells wanted, cells returned, cells
/// charged unconditionally first (admitted on a replica's local share before this call:
/// they may take the bucket past its tolerance, a debt the fleet pays back by admitting
/// less afterwards), hard tolerance (µs), soft tolerance (µs), burst window (ms; 0: no
/// window kept, the tolerance is used as given). Grants as many of the wanted cells as fit
/// under the tolerance (a charge passes a huge tolerance, a read wants 0).
///
/// The burst window (when ARGV[8] > 0): a level back at or under soft deletes it (the
/// next burst gets a full window, as in the in-process store); an expired window limits
/// the grant to the hard tolerance; a level above hard after the grant starts a window
/// (`now + window`) when there is none. While the level stays above soft the key is kept
/// (its TTL refreshed with every call, to when the bucket would be empty): an expired
/// window is not restarted by a tenant held at its hard limit.
///
/// Returns `{granted, level after (µs), wait until the rest would fit (µs), suspension
/// left (ms, 0 when none), window state (0 none, 1 running, 2 expired), window left
/// (ms)}`.
const GCRA_LUA: &str = r"
local T = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local ret = tonumber(ARGV[4])
local charge = tonumber(ARGV[5])
local htol = tonumber(ARGV[6])
local stol = tonumber(ARGV[7])
local win = tonumber(ARGV[8])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local raw = redis.call('GET', KEYS[1])
local tat = now
if raw then
  tat = tonumber(raw)
  if not tat then return redis.error_reply('TPBADSTATE ' .. KEYS[1] .. ' is not a number') end
end
if tat < now then tat = now end
if ret > 0 then tat = math.max(now, tat - ret * T) end
local ws = 0
local wend = 0
if win > 0 then
  local e = redis.call('GET', KEYS[3])
  if e then
    wend = tonumber(e)
    if not wend then return redis.error_reply('TPBADSTATE ' .. KEYS[3] .. ' is not a number') end
    if tat - now <= stol then
      redis.call('DEL', KEYS[3])
    elseif wend > now then
      ws = 1
    else
      ws = 2
      if tol > htol then tol = htol end
    end
  end
end
if charge > 0 then tat = tat + charge * T end
local free = math.floor((tol - (tat - now)) / T)
if free < 0 then free = 0 end
local g = want
if g > free then g = free end
tat = tat + g * T
local ttl = math.ceil((tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', ttl)
local wait = 0
if g < want then wait = (tat - now) + (want - g) * T - tol end
if wait < 0 then wait = 0 end
local susp = redis.call('PTTL', KEYS[2])
if susp < 0 then susp = 0 end
local lvl = tat - now
if win > 0 and lvl > stol and (ws > 0 or lvl > htol) then
  if ws == 0 then
    ws = 1
    wend = now + win * 1000
  end
  local left = 0
  if wend > now then left = math.ceil((wend - now) / 1000) end
  redis.call('SET', KEYS[3], string.format('%.0f', wend), 'PX', ttl + left)
end
local wleft = 0
if ws == 1 then wleft = math.ceil((wend - now) / 1000) end
return {g, math.floor(tat - now), math.ceil(wait), susp, ws, wleft}
";

/// A fleet-wide suspension. KEYS[1]: the tenant's suspension key. ARGV: its length (ms).
/// Sets the key with that expiry unless a longer suspension is already there. Returns the
/// suspension left (ms).
const SUSPEND_LUA: &str = r"
local ms = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
  left = ms
end
return left
";

/// Concurrency leases. KEYS[1]: hash replica -> slots, KEYS[2]: zset replica -> expiry
/// (ms of the server clock), KEYS[3]: the tenant's fleet-wide suspension (read only).
/// ARGV: replica, slots wanted, cap, ttl (ms). Purges expired replicas, then grants this
/// replica up to `cap - others`. Returns `{granted, others, suspension left (ms)}`.
const CONC_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, r in ipairs(dead) do redis.call('HDEL', KEYS[1], r) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local all = redis.call('HGETALL', KEYS[1])
local others = 0
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local n = tonumber(all[i + 1])
    if not n then return redis.error_reply('TPBADSTATE ' .. KEYS[1] .. ' holds a non-number') end
    others = others + n
  end
end
local g = want
if others + g > cap then g = cap - others end
if g < 0 then g = 0 end
if g > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], g)
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
local susp = redis.call('PTTL', KEYS[3])
if susp < 0 then susp = 0 end
return {g, others, susp}
";

/// The scripts, hashed once (`Script::new` computes the SHA; `invoke_async` runs `EVALSHA`
/// and loads the script on `NOSCRIPT`).
#[derive(Debug)]
pub(crate) struct Scripts {
    gcra: Script,
    conc: Script,
    suspend: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            gcra: Script::new(GCRA_LUA),
            conc: Script::new(CONC_LUA),
            suspend: Script::new(SUSPEND_LUA),
        }
    }

    /// Loads the scripts (`SCRIPT LOAD`), so later calls are plain `EVALSHA`s.
    pub(crate) async fn load(&self, con: &mut ConnectionManager) -> Result<(), StoreError> {
        for s in [&self.gcra, &self.conc, &self.suspend] {
            s.load_async(con)
                .await
                .map_err(|e| StoreError::from_redis(&e))?;
        }
        Ok(())
    }

    /// One GCRA call on `keys` (bucket, suspension, burst window):
    /// `(granted, level_us, wait_us, suspension_ms, window_state, window_left_ms)`.
    pub(crate) async fn gcra(
        &self,
        con: &mut ConnectionManager,
        keys: (&str, &str, &str),
        t_us: f64,
        tol_us: f64,
        cells: Cells,
        window: Window,
    ) -> Result<[u64; 6], StoreError> {
        let v: Value = self
            .gcra
            .key(keys.0)
            .key(keys.1)
            .key(keys.2)
            .arg(t_us)
            .arg(tol_us)
            .arg(cells.want)
            .arg(cells.ret)
            .arg(cells.charge)
            .arg(window.hard_tol_us)
            .arg(window.soft_tol_us)
            .arg(window.ms)
            .invoke_async(con)
            .await
            .map_err(|e| StoreError::from_redis(&e))?;
        let r = ints::<6>(&v)?;
        if r[4] > 2 {
            return Err(StoreError::new(
                StoreErrorKind::BadReply,
                format!("burst window state {} is not 0, 1 or 2", r[4]),
            ));
        }
        Ok(r)
    }

    /// Suspends a tenant fleet-wide for `ms` (unless a longer suspension is there):
    /// returns the suspension left (ms).
    pub(crate) async fn suspend(
        &self,
        con: &mut ConnectionManager,
        key: &str,
        ms: u64,
    ) -> Result<u64, StoreError> {
        let v: Value = self
            .suspend
            .key(key)
            .arg(ms)
            .invoke_async(con)
            .await
            .map_err(|e| StoreError::from_redis(&e))?;
        match v {
            Value::Int(i) if i >= 0 => Ok(i as u64),
            v => Err(StoreError::new(
                StoreErrorKind::BadReply,
                format!("expected a non-negative integer, got {v:?}"),
            )),
        }
    }

    /// One concurrency lease call on `keys` (slots, expiries, suspension):
    /// `(granted, others, suspension_ms)`.
    pub(crate) async fn conc(
        &self,
        con: &mut ConnectionManager,
        keys: (&str, &str, &str),
        replica: &str,
        want: u64,
        cap: u64,
        ttl_ms: u64,
    ) -> Result<[u64; 3], StoreError> {
        let v: Value = self
            .conc
            .key(keys.0)
            .key(keys.1)
            .key(keys.2)
            .arg(replica)
            .arg(want)
            .arg(cap)
            .arg(ttl_ms)
            .invoke_async(con)
            .await
            .map_err(|e| StoreError::from_redis(&e))?;
        ints::<3>(&v)
    }
}

/// The cells of one GCRA call: wanted (granted as far as they fit), returned, and charged
/// unconditionally.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cells {
    pub(crate) want: u64,
    pub(crate) ret: u64,
    pub(crate) charge: u64,
}

/// The fleet-wide burst window a GCRA call maintains: tolerances in µs, the window in ms
/// (`ms == 0`: none kept, for the units bucket).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Window {
    pub(crate) hard_tol_us: f64,
    pub(crate) soft_tol_us: f64,
    pub(crate) ms: u64,
}

/// An array of exactly `N` non-negative integers, or a typed error naming what came.
pub(crate) fn ints<const N: usize>(v: &Value) -> Result<[u64; N], StoreError> {
    let bad = || {
        StoreError::new(
            StoreErrorKind::BadReply,
            format!("expected an array of {N} non-negative integers, got {v:?}"),
        )
    };
    let Value::Array(items) = v else {
        return Err(bad());
    };
    if items.len() != N {
        return Err(bad());
    }
    let mut out = [0u64; N];
    for (o, item) in out.iter_mut().zip(items) {
        *o = match item {
            Value::Int(i) if *i >= 0 => *i as u64,
            _ => return Err(bad()),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_the_wrong_shape_are_typed_errors() {
        assert_eq!(
            ints::<2>(&Value::Array(vec![Value::Int(1), Value::Int(2)])).ok(),
            Some([1, 2])
        );
        for v in [
            Value::Nil,
            Value::Int(3),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Int(1), Value::Int(-1)]),
            Value::Array(vec![Value::Int(1), Value::BulkString(b"x".to_vec())]),
        ] {
            let e = ints::<2>(&v).unwrap_err();
            assert_eq!(e.kind(), StoreErrorKind::BadReply, "{v:?}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://:s3cret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379/"), "redis://host:6379/");
        let s = RedisStore::new("redis://:s3cret@127.0.0.1:6379/").unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn validation_names_the_field() {
        let s = RedisStore::new("redis://127.0.0.1/").unwrap();
        let e = s.clone().lease_fraction(0.0).validate().unwrap_err();
        assert!(e.to_string().contains("lease_fraction"), "{e}");
        let e = s.clone().expected_replicas(0).validate().unwrap_err();
        assert!(e.to_string().contains("expected_replicas"), "{e}");
        let e = s.timeout(Duration::ZERO).validate().unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");
    }
}
