//! Rate limits and quotas shared by every node, on Redis (standalone or Redis Cluster).
//!
//! Each check is one round trip: an `EVALSHA` of a Lua script that reads the TATs, decides
//! and writes them back atomically (Redis runs a script alone), on the server's clock
//! (`TIME`) so that the nodes' clocks do not matter. [`redis::Script`] sends `EVALSHA` and
//! loads the script on `NOSCRIPT` (after a restart or failover) by itself.
//!
//! Availability comes first: the gateway must serve while Redis is down. So
//! [`RedisLimiter::new`] never connects; the first call does, and every call is bounded by
//! [`RedisConfig::timeout`]. A failure marks Redis down for [`RedisConfig::retry_interval`],
//! during which calls answer [`StateError::Unavailable`] at once, without I/O, and the
//! caller uses its local limiter (see [`crate::SharedLimiter`]). After the interval one call
//! probes (connect + `PING`) and the others keep answering `Unavailable` until it succeeds
//! (only at start-up, before Redis was ever reached, do they wait for that probe, within
//! their own timeout).
//!
//! Needs Redis 5 or later: the script writes after calling `TIME`, which Redis allows only
//! with script effects replication, the default since 5.0.

use crate::StateError;
use crate::gcra::{Rate, Verdict};
use crate::quota::{QuotaPeriod, QuotaState, resets_in};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, Script, ScriptInvocation};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;
use tokio::time::timeout_at;

mod kv;
pub use kv::Subscription;

/// Where Redis is and how patient to be with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:pass@]host:port[/db]`. Standalone: exactly one. Cluster: one or more
    /// seed nodes (the client learns the rest from `CLUSTER SLOTS`).
    pub urls: Vec<String>,
    /// Redis Cluster instead of a standalone server (or a proxy in front of one).
    pub cluster: bool,
    /// Upper bound of one call (a rate-limit check sits on the request path: a slow Redis
    /// must not make a slow gateway). Default 50 ms.
    pub timeout: Duration,
    /// How long to stop trying after a failure before one call probes again. Default 1 s.
    pub retry_interval: Duration,
    /// Upper bound of establishing a connection (TCP, and for a cluster the slot map). This
    /// runs in the background, never on a request's time beyond `timeout`. Default 1 s.
    pub connect_timeout: Duration,
}

/// A `redis:` section of gateway.yaml (`state.redis`, `cluster.redis`): its URLs, mode,
/// timeout and retry interval; the connect timeout keeps its default.
impl From<&cratopus_config::RedisConfig> for RedisConfig {
    fn from(r: &cratopus_config::RedisConfig) -> Self {
        RedisConfig {
            urls: r.urls.clone(),
            cluster: r.cluster,
            timeout: r.timeout.0,
            retry_interval: r.retry_interval.0,
            ..Default::default()
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            urls: Vec::new(),
            cluster: false,
            timeout: Duration::from_millis(50),
            retry_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// GCRA over a stack of limits, atomically. Mirrors `gcra::decide` line by line, in
/// microseconds of the server clock.
///
/// KEYS[i]: the TAT of limit i (microseconds since the epoch, as a decimal integer string).
/// ARGV[1]: cost; ARGV[2i], ARGV[2i+1]: emission interval (µs) and burst of limit i;
/// ARGV[2n+2]: `1` to consume when allowed, `0` to only peek (`gcra::judge`: nothing written).
/// Returns {allowed 0/1, tightest (0-based), remaining, reset_after µs, retry_after µs}.
///
/// Numbers are written with `string.format('%d')`: Lua numbers are doubles and Redis would
/// turn a number argument into a string with `%.14g`, i.e. round a 16-digit timestamp.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local commit = ARGV[2 * #KEYS + 2] ~= '0'
local allowed = 1
local pick, pick_rem, pick_reset, pick_retry = 0, -1, 0, 0
local new_tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1]) * interval
  local tat = tonumber(redis.call('GET', KEYS[i]) or now) or now
  if tat < now then tat = now end
  local diff = tat - now + cost * interval
  if diff > tolerance then
    local retry = diff - tolerance
    if allowed == 1 or retry > pick_retry then
      pick, pick_rem, pick_reset, pick_retry = i, 0, tat - now, retry
    end
    allowed = 0
  elseif allowed == 1 then
    local rem = math.floor((tolerance - diff) / interval)
    if pick_rem < 0 or rem < pick_rem or (rem == pick_rem and diff > pick_reset) then
      pick, pick_rem, pick_reset = i, rem, diff
    end
  end
  new_tats[i] = tat + cost * interval
end
if allowed == 1 and commit then
  for i = 1, #KEYS do
    local ttl = math.ceil((new_tats[i] - now) / 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', KEYS[i], string.format('%d', new_tats[i]), 'PX', ttl)
  end
end
return {allowed, pick - 1, pick_rem, pick_reset, pick_retry}
";

/// Adds to a quota window's counter unless that exceeds the limit.
///
/// KEYS[1]: the window's counter. ARGV: limit, cost, expiry (Unix seconds).
/// Returns {allowed 0/1, used}.
const QUOTA_LUA: &str = r"
local limit = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if used + cost > limit then return {0, used} end
used = redis.call('INCRBY', KEYS[1], cost)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {1, used}
";

/// Quota keys outlive their window by this much, so that a node whose clock runs a little
/// ahead of Redis's does not set an expiry in Redis's past (which deletes the key at once).
const QUOTA_GRACE_SECS: u64 = 3600;

/// Writes the caller's key into `out` so that it can sit inside a hash tag: `%`, `{` and `}`
/// become `%25`, `%7B` and `%7D`, everything else is kept. The escaping is injective (no two
/// keys give the same text) and leaves no brace inside the tag, so the tag ends exactly where
/// we close it and all keys of one caller key hash to one slot.
fn escape_key(out: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
}

/// The Redis key holding the TAT of limit `index` of the stack under `key`:
/// `cratopus:rl:{<escaped key>}:<index>`. Public for operators and tests that inspect Redis.
pub fn rate_limit_key(key: &str, index: usize) -> String {
    let mut out = String::with_capacity(key.len() + 20);
    out.push_str("cratopus:rl:{");
    escape_key(&mut out, key);
    let _ = write!(out, "}}:{index}");
    out
}

/// The Redis key of `key`'s quota counter for the window containing `now`:
/// `cratopus:q:{<escaped key>}:<d|m>:<window id>`, e.g. `cratopus:q:{acme}:m:202501`.
pub fn quota_key(key: &str, period: QuotaPeriod, now: SystemTime) -> String {
    let window = period.window(now);
    let mut out = String::with_capacity(key.len() + 24);
    out.push_str("cratopus:q:{");
    escape_key(&mut out, key);
    let _ = write!(out, "}}:{}:{}", period.tag(), window.id);
    out
}

/// How to make a connection.
enum Target {
    Single(redis::Client),
    // Boxed: the cluster client is twice the size of the standalone one.
    Cluster(Box<ClusterClient>),
}

/// A multiplexed connection handle; clones share one connection (one per node for a
/// cluster), so a call clones the handle instead of opening a socket.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// One call: a script (the limits) or a plain command (the cache's second level, see `kv`).
#[derive(Clone, Copy)]
enum Op<'a, 'b> {
    Script(&'a ScriptInvocation<'b>),
    Cmd(&'a redis::Cmd),
}

impl Conn {
    async fn invoke<T: FromRedisValue>(&mut self, op: Op<'_, '_>) -> redis::RedisResult<T> {
        match (self, op) {
            (Conn::Single(c), Op::Script(inv)) => inv.invoke_async(c).await,
            (Conn::Cluster(c), Op::Script(inv)) => inv.invoke_async(c).await,
            (Conn::Single(c), Op::Cmd(cmd)) => cmd.query_async(c).await,
            (Conn::Cluster(c), Op::Cmd(cmd)) => cmd.query_async(c).await,
        }
    }

    async fn ping(&mut self) -> redis::RedisResult<()> {
        async fn ping(c: &mut impl ConnectionLike) -> redis::RedisResult<()> {
            redis::cmd("PING").query_async::<String>(c).await.map(drop)
        }
        match self {
            Conn::Single(c) => ping(c).await,
            Conn::Cluster(c) => ping(c).await,
        }
    }
}

/// The current connection and a generation number, so that a call that fails on an old
/// connection does not throw away a newer one.
struct Slot {
    generation: u64,
    conn: Option<Conn>,
}

struct Inner {
    config: RedisConfig,
    target: Target,
    gcra: Script,
    quota: Script,
    origin: Instant,
    slot: Mutex<Slot>,
    up: AtomicBool,
    /// Nanoseconds since `origin` before which no call may probe.
    down_until: AtomicU64,
    probing: AtomicBool,
    /// Whether an outage has been logged and its end not yet.
    announced_down: AtomicBool,
    ever_up: AtomicBool,
    probe_done: Notify,
    fallbacks: AtomicU64,
    outages: AtomicU64,
}

/// Cluster-wide rate limits and quotas on Redis. Cheap to clone (an `Arc`); clones share the
/// connection and the up/down state.
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("cluster", &self.inner.config.cluster)
            .field("up", &self.is_up())
            .finish()
    }
}

impl RedisLimiter {
    /// Checks the config and prepares the client; connects nothing (the first call does), so
    /// it succeeds whether or not Redis is up. Fails only on an invalid config: no URL, a URL
    /// that does not parse, several URLs without `cluster`.
    pub fn new(config: RedisConfig) -> Result<RedisLimiter, StateError> {
        let bad = |what: String| StateError::Config(what);
        let target = if config.cluster {
            if config.urls.is_empty() {
                return Err(bad("redis cluster: no seed URL".into()));
            }
            let client = ClusterClient::builder(config.urls.iter().map(String::as_str))
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.timeout)
                // Follow MOVED/ASK during resharding, but do not keep a request waiting on
                // retries: the timeout bounds the call anyway, and a failure falls back.
                .retries(2)
                .min_retry_wait(5)
                .max_retry_wait(config.timeout.as_millis().try_into().unwrap_or(u64::MAX))
                .build()
                .map_err(|e| bad(format!("redis cluster: {e}")))?;
            Target::Cluster(Box::new(client))
        } else {
            let [url] = config.urls.as_slice() else {
                return Err(bad(format!(
                    "redis: standalone mode takes exactly one URL, got {} (set cluster for several)",
                    config.urls.len()
                )));
            };
            Target::Single(redis::Client::open(url.as_str()).map_err(|e| bad(format!("redis url: {e}")))?)
        };
        Ok(RedisLimiter {
            inner: Arc::new(Inner {
                config,
                target,
                gcra: Script::new(GCRA_LUA),
                quota: Script::new(QUOTA_LUA),
                origin: Instant::now(),
                slot: Mutex::new(Slot {
                    generation: 0,
                    conn: None,
                }),
                up: AtomicBool::new(false),
                down_until: AtomicU64::new(0),
                probing: AtomicBool::new(false),
                announced_down: AtomicBool::new(false),
                ever_up: AtomicBool::new(false),
                probe_done: Notify::new(),
                fallbacks: AtomicU64::new(0),
                outages: AtomicU64::new(0),
            }),
        })
    }

    /// Checks one request under `key` against the stack `rates`, on Redis.
    /// `Err(StateError::Unavailable)` when Redis is down, slow or answers nonsense.
    pub async fn check(&self, key: &str, rates: &[Rate]) -> Result<Verdict, StateError> {
        self.check_n(key, rates, 1).await
    }

    /// [`check`](Self::check) for a request costing `cost` cells.
    pub async fn check_n(&self, key: &str, rates: &[Rate], cost: u32) -> Result<Verdict, StateError> {
        self.gcra(key, rates, cost, true).await
    }

    /// What [`check_n`](Self::check_n) would answer, consuming nothing (one read-only run of
    /// the same script).
    pub async fn peek(&self, key: &str, rates: &[Rate], cost: u32) -> Result<Verdict, StateError> {
        self.gcra(key, rates, cost, false).await
    }

    async fn gcra(&self, key: &str, rates: &[Rate], cost: u32, commit: bool) -> Result<Verdict, StateError> {
        if rates.is_empty() {
            return Ok(Verdict::unlimited());
        }
        let mut inv = self.inner.gcra.prepare_invoke();
        inv.arg(cost);
        for (i, rate) in rates.iter().enumerate() {
            inv.key(rate_limit_key(key, i));
            inv.arg(rate.interval(1000)).arg(rate.burst());
        }
        inv.arg(u8::from(commit));
        let reply: Vec<i64> = self.run(Op::Script(&inv)).await?;
        match parse_verdict(&reply, rates.len()) {
            Some(v) => Ok(v),
            None => Err(self.fail(None, &format!("unexpected reply to the rate-limit script: {reply:?}"))),
        }
    }

    /// Counts `cost` requests for `key` in the current UTC `period` window if that keeps the
    /// count within `limit`; a request that does not fit is denied and not counted. The
    /// window is taken from this node's clock; the counter expires an hour after it ends.
    pub async fn quota_add(
        &self,
        key: &str,
        period: QuotaPeriod,
        limit: u64,
        cost: u64,
    ) -> Result<QuotaState, StateError> {
        self.quota_add_at(key, period, limit, cost, SystemTime::now()).await
    }

    /// [`quota_add`](Self::quota_add) at a given wall-clock time (which must not be more
    /// than an hour past the window's end: the key would expire at once).
    pub async fn quota_add_at(
        &self,
        key: &str,
        period: QuotaPeriod,
        limit: u64,
        cost: u64,
        now: SystemTime,
    ) -> Result<QuotaState, StateError> {
        let window = period.window(now);
        let mut inv = self.inner.quota.prepare_invoke();
        inv.key(quota_key(key, period, now))
            .arg(limit)
            .arg(cost)
            .arg(window.end.saturating_add(QUOTA_GRACE_SECS));
        let reply: Vec<i64> = self.run(Op::Script(&inv)).await?;
        match reply.as_slice() {
            &[allowed @ (0 | 1), used] if used >= 0 => Ok(QuotaState {
                allowed: allowed == 1,
                used: used.unsigned_abs(),
                limit,
                resets_in: resets_in(window, now),
            }),
            _ => Err(self.fail(None, &format!("unexpected reply to the quota script: {reply:?}"))),
        }
    }

    /// Whether the last call (or probe) reached Redis.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Calls answered [`StateError::Unavailable`]: Redis down, timed out or failed. The
    /// gateway exports this as a metric (each is a request decided locally or refused).
    pub fn fallbacks(&self) -> u64 {
        self.inner.fallbacks.load(Ordering::Relaxed)
    }

    /// Times Redis went from up to down (each logged once).
    pub fn outages(&self) -> u64 {
        self.inner.outages.load(Ordering::Relaxed)
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.inner.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs a script or command within the call's deadline, probing first if Redis is down
    /// and the retry interval has passed.
    async fn run<T: FromRedisValue>(&self, op: Op<'_, '_>) -> Result<T, StateError> {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + inner.config.timeout;
        if !inner.up.load(Ordering::Acquire) {
            self.wait_for_probe(deadline).await?;
        }
        let (generation, conn) = {
            let slot = inner.slot.lock().unwrap_or_else(PoisonError::into_inner);
            (slot.generation, slot.conn.clone())
        };
        let Some(mut conn) = conn else {
            // Marked down by another call between our check and here.
            return Err(self.unavailable());
        };
        match timeout_at(deadline, conn.invoke::<T>(op)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.fail(Some(generation), &e.to_string())),
            Err(_) => Err(self.fail(
                Some(generation),
                &format!("no answer within {:?}", inner.config.timeout),
            )),
        }
    }

    /// While down: `Unavailable` at once, unless the retry interval is over and no other call
    /// is probing; then start a probe and wait for it until the deadline.
    ///
    /// Before Redis was ever reached (the gateway just started), calls that arrive while the
    /// first probe runs wait for it too, within their deadline: otherwise the first burst of
    /// requests would all be decided locally (or refused, failing closed) for the few
    /// milliseconds a connect takes. Later probes are waited for by the probing call only:
    /// the node is already answering locally, and a few more local answers cost less than
    /// holding every request while a probe times out against an unresponsive server.
    async fn wait_for_probe(&self, deadline: tokio::time::Instant) -> Result<(), StateError> {
        let inner = &self.inner;
        if self.now_nanos() < inner.down_until.load(Ordering::Acquire) {
            return Err(self.unavailable());
        }
        // Register for the wake-up before a probe can finish.
        let done = inner.probe_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        let start_probe = inner
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if start_probe && self.now_nanos() < inner.down_until.load(Ordering::Acquire) {
            // A probe failed between our first look and here: its verdict stands.
            inner.probing.store(false, Ordering::Release);
            inner.probe_done.notify_waiters();
            return Err(self.unavailable());
        }
        if start_probe {
            // The probe runs in its own task: if it outlasts this call's deadline (a slow
            // first connect) it still completes, bounded by connect_timeout, and a later
            // call uses its connection.
            tokio::spawn(self.clone().probe());
        } else if inner.ever_up.load(Ordering::Acquire) {
            return Err(self.unavailable());
        }
        if !inner.up.load(Ordering::Acquire) {
            let _ = timeout_at(deadline, done).await;
        }
        if inner.up.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(self.unavailable())
        }
    }

    /// Makes a fresh connection and pings through it; marks Redis up (installing the
    /// connection) or down. There is never a connection to reuse here: marking Redis down
    /// drops it, so that a connection in a bad state cannot outlive an outage.
    async fn probe(self) {
        let inner = &self.inner;
        let attempt = async {
            let mut conn = self.connect().await?;
            conn.ping().await?;
            Ok::<_, redis::RedisError>(conn)
        };
        match tokio::time::timeout(inner.config.connect_timeout, attempt).await {
            Ok(Ok(conn)) => {
                {
                    let mut slot = inner.slot.lock().unwrap_or_else(PoisonError::into_inner);
                    slot.generation += 1;
                    slot.conn = Some(conn);
                }
                inner.up.store(true, Ordering::Release);
                let first = !inner.ever_up.swap(true, Ordering::AcqRel);
                if inner.announced_down.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        cluster = inner.config.cluster,
                        "redis reachable again, shared limits back on redis"
                    );
                } else if first {
                    tracing::info!(cluster = inner.config.cluster, "redis connected");
                }
            }
            Ok(Err(e)) => self.mark_down(None, &e.to_string()),
            Err(_) => self.mark_down(
                None,
                &format!("no connection within {:?}", inner.config.connect_timeout),
            ),
        }
        inner.probing.store(false, Ordering::Release);
        inner.probe_done.notify_waiters();
    }

    async fn connect(&self) -> redis::RedisResult<Conn> {
        let config = &self.inner.config;
        match &self.inner.target {
            Target::Single(client) => {
                // No retries inside the manager: our retry_interval paces reconnects, and a
                // manager retrying with back-off would keep a dead connection future around.
                let manager_config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.timeout));
                ConnectionManager::new_with_config(client.clone(), manager_config)
                    .await
                    .map(Conn::Single)
            }
            Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }

    /// Records a failed call and returns the error to give the caller.
    fn fail(&self, generation: Option<u64>, cause: &str) -> StateError {
        self.mark_down(generation, cause);
        self.unavailable()
    }

    fn unavailable(&self) -> StateError {
        self.inner.fallbacks.fetch_add(1, Ordering::Relaxed);
        StateError::Unavailable
    }

    /// Marks Redis down for `retry_interval` and drops the connection (the next probe makes a
    /// fresh one, so a connection stuck in a bad state cannot outlive an outage). A failure
    /// on an older connection than the current one is ignored: a probe has already replaced
    /// it. Logs only the transition, not every failed call.
    fn mark_down(&self, generation: Option<u64>, cause: &str) {
        let inner = &self.inner;
        {
            let mut slot = inner.slot.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(g) = generation
                && g != slot.generation
            {
                return;
            }
            slot.conn = None;
            slot.generation += 1;
        }
        let retry = u64::try_from(inner.config.retry_interval.as_nanos()).unwrap_or(u64::MAX);
        inner
            .down_until
            .store(self.now_nanos().saturating_add(retry), Ordering::Release);
        let was_up = inner.up.swap(false, Ordering::AcqRel);
        if was_up {
            inner.outages.fetch_add(1, Ordering::Relaxed);
        }
        if !inner.announced_down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                cluster = inner.config.cluster,
                retry_in = ?inner.config.retry_interval,
                error = cause,
                "redis unreachable, shared limits fall back until it is back"
            );
        } else {
            tracing::debug!(error = cause, "redis still unreachable");
        }
    }
}

/// Turns the GCRA script's reply into a verdict; `None` if it is not the expected shape.
fn parse_verdict(reply: &[i64], n: usize) -> Option<Verdict> {
    let &[allowed, tightest, remaining, reset_us, retry_us] = reply else {
        return None;
    };
    let micros = |v: i64| u64::try_from(v).ok().map(Duration::from_micros);
    let tightest = usize::try_from(tightest).ok().filter(|&i| i < n)?;
    Some(Verdict {
        allowed: match allowed {
            0 => false,
            1 => true,
            _ => return None,
        },
        tightest,
        remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
        reset_after: micros(reset_us)?,
        retry_after: micros(retry_us)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_escape_braces_and_never_collide() {
        assert_eq!(rate_limit_key("user:42", 0), "cratopus:rl:{user:42}:0");
        assert_eq!(rate_limit_key("a}b{c%", 1), "cratopus:rl:{a%7Db%7Bc%25}:1");
        // Keys that would collide with naive formatting or naive escaping.
        let tricky = [
            "a", "a}:0", "a}:1", "{a}", "a%7D", "a}", "%7D", "%", "%25", "", "}", "{", "a:0", "a:1",
        ];
        let mut seen = HashSet::new();
        for k in tricky {
            for i in 0..3 {
                let redis_key = rate_limit_key(k, i);
                assert!(seen.insert(redis_key.clone()), "collision on {redis_key}");
                // Exactly one tag: the first '{' and the first '}' after it enclose the
                // escaped key, which contains no brace.
                let open = redis_key.find('{').unwrap_or(0);
                let close = redis_key.find('}').unwrap_or(0);
                assert_eq!(redis_key.matches('{').count(), 1);
                assert_eq!(redis_key.matches('}').count(), 1);
                assert!(redis_key[close..].starts_with(&format!("}}:{i}")) && open < close);
            }
        }
    }

    #[test]
    fn quota_keys_name_the_window() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_735_689_600); // 2025-01-01
        assert_eq!(quota_key("acme", QuotaPeriod::Month, t), "cratopus:q:{acme}:m:202501");
        assert_eq!(
            quota_key("a{b}", QuotaPeriod::Day, t),
            "cratopus:q:{a%7Bb%7D}:d:20250101"
        );
    }

    #[test]
    fn config_errors_but_no_connection_needed() {
        let cfg = |urls: &[&str], cluster| RedisConfig {
            urls: urls.iter().map(|s| s.to_string()).collect(),
            cluster,
            ..RedisConfig::default()
        };
        assert!(RedisLimiter::new(cfg(&[], false)).is_err());
        assert!(RedisLimiter::new(cfg(&[], true)).is_err());
        assert!(RedisLimiter::new(cfg(&["not a url"], false)).is_err());
        assert!(RedisLimiter::new(cfg(&["redis://127.0.0.1:1", "redis://127.0.0.1:2"], false)).is_err());
        // Nothing listens on port 1; construction does not care.
        let l = RedisLimiter::new(cfg(&["redis://127.0.0.1:1"], false));
        assert!(l.is_ok_and(|l| !l.is_up()));
        assert!(RedisLimiter::new(cfg(&["redis://127.0.0.1:1", "redis://127.0.0.1:2"], true)).is_ok());
    }

    #[test]
    fn verdict_replies_are_validated() {
        let ok = parse_verdict(&[1, 0, 4, 200_000, 0], 1);
        assert_eq!(
            ok,
            Some(Verdict {
                allowed: true,
                tightest: 0,
                remaining: 4,
                reset_after: Duration::from_millis(200),
                retry_after: Duration::ZERO,
            })
        );
        assert_eq!(parse_verdict(&[1, 1, 4, 0, 0], 1), None, "index out of range");
        assert_eq!(parse_verdict(&[2, 0, 4, 0, 0], 1), None);
        assert_eq!(parse_verdict(&[1, 0, 4, -1, 0], 1), None);
        assert_eq!(parse_verdict(&[1, 0, 4, 0], 1), None);
    }
}
