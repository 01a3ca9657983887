//! RedisLimiter and SharedLimiter against a real redis-server (one per test, ephemeral port).
//!
//! Limits in these tests are per hour or per day, so that the wall-clock time between two
//! calls (milliseconds, or seconds on a loaded machine) replenishes nothing measurable and
//! the expected numbers are exact or bounded with wide margins. Timeouts are generous (2 s)
//! wherever a call is expected to succeed, so a busy machine does not turn into a fallback.

use cratopus_state::{
    FailMode, LocalLimiter, QuotaPeriod, Rate, RedisConfig, RedisLimiter, SharedLimiter, Source, StateError, quota_key,
    rate_limit_key,
};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use test_support::redis::{RedisServer, Reply};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Upper bound for "it returns" assertions: far above any timeout configured here, so only a
/// call that hangs fails it.
const RETURNS_WITHIN: Duration = Duration::from_secs(20);

fn config(url: &str) -> RedisConfig {
    RedisConfig {
        urls: vec![url.to_string()],
        timeout: Duration::from_secs(2),
        retry_interval: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        ..RedisConfig::default()
    }
}

fn limiter(url: &str) -> RedisLimiter {
    match RedisLimiter::new(config(url)) {
        Ok(l) => l,
        Err(e) => panic!("config: {e}"),
    }
}

async fn check(l: &RedisLimiter, key: &str, rates: &[Rate]) -> cratopus_state::Verdict {
    match tokio::time::timeout(RETURNS_WITHIN, l.check(key, rates)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("redis check failed: {e}"),
        Err(_) => panic!("redis check hung"),
    }
}

async fn shared_check(
    s: &SharedLimiter,
    key: &str,
    rates: &[Rate],
) -> Result<(cratopus_state::Verdict, Source), StateError> {
    match tokio::time::timeout(RETURNS_WITHIN, s.check(key, rates)).await {
        Ok(r) => r,
        Err(_) => panic!("shared check hung"),
    }
}

fn get(server: &RedisServer, key: &str) -> Reply {
    server.command(&["GET", key]).expect("GET")
}

#[tokio::test]
async fn burst_then_deny_with_remaining_retry_after_and_ttl() {
    let server = RedisServer::start();
    let l = limiter(&server.url());
    let rates = [Rate::new(5, HOUR)]; // T = 720 s
    for remaining in (0..5).rev() {
        let v = check(&l, "client-1", &rates).await;
        assert!(v.allowed);
        assert_eq!(v.remaining, remaining);
        assert_eq!(v.retry_after, Duration::ZERO);
    }
    let v = check(&l, "client-1", &rates).await;
    assert!(!v.allowed);
    assert_eq!(v.remaining, 0);
    assert_eq!(v.tightest, 0);
    // One emission interval (720 s) minus the time since the first call.
    assert!(v.retry_after <= Duration::from_secs(720), "{v:?}");
    assert!(v.retry_after > Duration::from_secs(700), "{v:?}");
    assert!(
        v.reset_after <= HOUR && v.reset_after > HOUR - Duration::from_secs(20),
        "{v:?}"
    );

    // Another key is untouched.
    assert_eq!(check(&l, "client-2", &rates).await.remaining, 4);

    // The TAT key expires when the limit is fully replenished, so idle keys vanish.
    let ttl = server
        .command(&["PTTL", &rate_limit_key("client-1", 0)])
        .expect("PTTL")
        .int()
        .unwrap_or(-3);
    assert!(ttl > 0 && ttl <= 3_600_000, "PTTL {ttl}");
    assert!(l.is_up());
    assert_eq!(l.fallbacks(), 0);
}

#[tokio::test]
async fn stacked_limits_deny_without_consuming() {
    let server = RedisServer::start();
    let l = limiter(&server.url());
    // The first limit runs out first.
    let rates = [Rate::new(2, HOUR), Rate::new(3, DAY)];
    assert!(check(&l, "k", &rates).await.allowed);
    let v = check(&l, "k", &rates).await;
    assert!(v.allowed);
    assert_eq!((v.tightest, v.remaining), (0, 0));
    let daily_tat = get(&server, &rate_limit_key("k", 1));
    assert!(daily_tat.int().is_some(), "TAT stored as an integer: {daily_tat:?}");
    for _ in 0..5 {
        let v = check(&l, "k", &rates).await;
        assert!(!v.allowed);
        assert_eq!(v.tightest, 0, "the hourly limit denied");
        assert!(v.retry_after > Duration::from_secs(1700), "{v:?}");
    }
    assert_eq!(
        get(&server, &rate_limit_key("k", 1)),
        daily_tat,
        "denials did not touch the daily limit"
    );

    // The second limit denies: the first limit's TAT must stay as it was.
    let rates = [Rate::new(10, HOUR), Rate::new(1, DAY)];
    let v = check(&l, "j", &rates).await;
    assert!(v.allowed);
    assert_eq!((v.tightest, v.remaining), (1, 0));
    let hourly_tat = get(&server, &rate_limit_key("j", 0));
    let v = check(&l, "j", &rates).await;
    assert!(!v.allowed);
    assert_eq!(v.tightest, 1);
    assert!(v.retry_after > DAY - Duration::from_secs(60), "{v:?}");
    assert_eq!(get(&server, &rate_limit_key("j", 0)), hourly_tat);
}

#[tokio::test]
async fn peek_answers_like_check_and_writes_nothing() {
    let server = RedisServer::start();
    let l = limiter(&server.url());
    let rates = [Rate::new(2, HOUR)];
    let peek = |key| {
        let l = l.clone();
        async move {
            match tokio::time::timeout(RETURNS_WITHIN, l.peek(key, &rates, 1)).await {
                Ok(Ok(v)) => v,
                other => panic!("redis peek: {other:?}"),
            }
        }
    };
    assert!(peek("p").await.allowed);
    assert_eq!(
        get(&server, &rate_limit_key("p", 0)),
        Reply::Bulk(None),
        "a peek stores nothing"
    );
    assert!(check(&l, "p", &rates).await.allowed);
    let tat = get(&server, &rate_limit_key("p", 0));
    for _ in 0..3 {
        let v = peek("p").await;
        assert!(v.allowed);
        assert_eq!(v.remaining, 0);
    }
    assert_eq!(get(&server, &rate_limit_key("p", 0)), tat, "peeks did not consume");
    assert!(check(&l, "p", &rates).await.allowed);
    let v = peek("p").await;
    assert!(!v.allowed);
    assert!(v.retry_after > Duration::from_secs(1700), "{v:?}");
}

#[tokio::test]
async fn keys_with_braces_are_separate_limits() {
    let server = RedisServer::start();
    let l = limiter(&server.url());
    let rates = [Rate::new(1, HOUR)];
    for key in ["a", "{a}", "a}:0", "a%7D", "}", "{", ""] {
        assert!(
            check(&l, key, &rates).await.allowed,
            "key {key:?} shares state with another"
        );
    }
    assert!(!check(&l, "{a}", &rates).await.allowed);
}

#[tokio::test]
async fn two_nodes_share_one_counter() {
    let server = RedisServer::start();
    let node_a = limiter(&server.url());
    let node_b = limiter(&server.url());
    let rates = [Rate::new(10, HOUR)];
    let mut allowed = 0;
    let mut last_remaining = u32::MAX;
    for i in 0..20 {
        let node = if i % 2 == 0 { &node_a } else { &node_b };
        let v = check(node, "shared-client", &rates).await;
        if v.allowed {
            allowed += 1;
            assert!(v.remaining < last_remaining, "one counter, counting down across nodes");
            last_remaining = v.remaining;
        }
    }
    assert_eq!(allowed, 10);
}

#[tokio::test]
async fn concurrent_checks_from_many_tasks_allow_exactly_the_burst() {
    let server = RedisServer::start();
    let l = limiter(&server.url());
    let rates = [Rate::new(50, HOUR)];
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.check("hot", &rates).await })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(v)) => allowed += usize::from(v.allowed),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(allowed, 50);
}

#[tokio::test]
async fn stopped_redis_answers_unavailable_and_open_mode_falls_back_to_local() {
    let mut server = RedisServer::start();
    let open = SharedLimiter::new(limiter(&server.url()), LocalLimiter::new(), FailMode::Open);
    let closed = SharedLimiter::new(limiter(&server.url()), LocalLimiter::new(), FailMode::Closed);
    let rates = [Rate::new(2, HOUR)];
    let (v, source) = shared_check(&open, "k", &rates).await.expect("open");
    assert_eq!((v.allowed, source), (true, Source::Redis));
    assert!(matches!(
        shared_check(&closed, "k", &rates).await,
        Ok((_, Source::Redis))
    ));
    let redis = open.redis().expect("has redis");
    assert_eq!(redis.fallbacks(), 0);

    server.stop();

    // Open: the local limiter answers, with its own state (a fresh burst of 2 for this key).
    let (v, source) = shared_check(&open, "k", &rates).await.expect("open never errs");
    assert_eq!(source, Source::Local);
    assert!(v.allowed);
    assert_eq!(v.remaining, 1);
    assert!(!redis.is_up());
    assert_eq!(redis.fallbacks(), 1);
    assert_eq!(redis.outages(), 1);
    let (v, source) = shared_check(&open, "k", &rates).await.expect("open never errs");
    assert_eq!((v.allowed, source), (true, Source::Local));
    let (v, source) = shared_check(&open, "k", &rates).await.expect("open never errs");
    assert_eq!((v.allowed, source), (false, Source::Local), "local limits are enforced");
    assert_eq!(redis.fallbacks(), 3, "every fallback is counted");
    assert_eq!(redis.outages(), 1, "one outage, however many calls");
    assert_eq!(open.local().len(), 1);

    // Closed: the caller gets an error to turn into 503, and nothing is decided locally.
    assert_eq!(shared_check(&closed, "k", &rates).await, Err(StateError::Unavailable));
    assert_eq!(closed.local().len(), 0);
    assert_eq!(closed.redis().map(|r| r.fallbacks()), Some(1));

    // Quotas fall back the same way.
    let (q, source) = open.quota_add("k", QuotaPeriod::Day, 5, 1).await.expect("open");
    assert_eq!((q.allowed, q.used, source), (true, 1, Source::Local));
    assert_eq!(
        closed.quota_add("k", QuotaPeriod::Day, 5, 1).await,
        Err(StateError::Unavailable)
    );
}

#[tokio::test]
async fn restarted_redis_is_used_again_after_the_retry_interval() {
    let mut server = RedisServer::start();
    let shared = SharedLimiter::new(limiter(&server.url()), LocalLimiter::new(), FailMode::Open);
    let redis = shared.redis().expect("redis").clone();
    let rates = [Rate::new(100, HOUR)];
    assert_eq!(shared_check(&shared, "k", &rates).await.map(|r| r.1), Ok(Source::Redis));

    server.stop();
    assert_eq!(shared_check(&shared, "k", &rates).await.map(|r| r.1), Ok(Source::Local));
    assert!(!redis.is_up());

    // The restarted server is empty: no script loaded (EVALSHA gets NOSCRIPT and the script
    // is loaded again) and no counter.
    server.restart();
    let deadline = tokio::time::Instant::now() + RETURNS_WITHIN;
    let verdict = loop {
        match shared_check(&shared, "k", &rates).await {
            Ok((v, Source::Redis)) => break v,
            Ok((_, Source::Local)) => {}
            Err(e) => panic!("open mode returned {e}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never went back to redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(verdict.allowed);
    assert_eq!(verdict.remaining, 99, "a fresh counter on the restarted server");
    assert!(redis.is_up());
    assert_eq!(redis.outages(), 1);
    let before = redis.fallbacks();
    for _ in 0..5 {
        assert_eq!(shared_check(&shared, "k", &rates).await.map(|r| r.1), Ok(Source::Redis));
    }
    assert_eq!(redis.fallbacks(), before);
}

/// A server that accepts connections and reads, but never answers: the worst kind of down.
/// Returns its port and the number of connections it accepted so far.
fn black_hole() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn a_redis_that_never_answers_is_bounded_by_the_timeout_and_not_retried_within_the_interval() {
    let (port, accepted) = black_hole();
    let l = match RedisLimiter::new(RedisConfig {
        urls: vec![format!("redis://127.0.0.1:{port}")],
        timeout: Duration::from_millis(100),
        connect_timeout: Duration::from_millis(300),
        retry_interval: HOUR,
        ..RedisConfig::default()
    }) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let rates = [Rate::new(10, HOUR)];
    let first = tokio::time::timeout(RETURNS_WITHIN, l.check("k", &rates)).await;
    assert_eq!(first.ok(), Some(Err(StateError::Unavailable)), "bounded by the timeout");
    // Wait until the probe has connected. It then waits for a reply that never comes and
    // gives up after connect_timeout, marking Redis down for the retry interval (an hour).
    // Whatever the timing, no second connection may be made: during the probe other calls
    // see it running, after it they see Redis down.
    let deadline = tokio::time::Instant::now() + RETURNS_WITHIN;
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "probe never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = tokio::time::timeout(RETURNS_WITHIN, l.check("k", &rates)).await;
        assert_eq!(r.ok(), Some(Err(StateError::Unavailable)));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let connections = accepted.load(Ordering::SeqCst);
    let fallbacks = l.fallbacks();
    for _ in 0..100 {
        let r = tokio::time::timeout(RETURNS_WITHIN, l.check("k", &rates)).await;
        assert_eq!(r.ok(), Some(Err(StateError::Unavailable)));
    }
    assert_eq!(l.fallbacks(), fallbacks + 100);
    assert_eq!(accepted.load(Ordering::SeqCst), connections, "no I/O while marked down");
    assert!(!l.is_up());
}

#[tokio::test]
async fn redis_down_at_start_does_not_block_construction_and_connects_later() {
    // Reserve a port, start nothing on it yet.
    let mut server = RedisServer::start();
    server.stop();
    let l = limiter(&server.url());
    let rates = [Rate::new(3, HOUR)];
    let r = tokio::time::timeout(RETURNS_WITHIN, l.check("k", &rates)).await;
    assert_eq!(r.ok(), Some(Err(StateError::Unavailable)));
    assert_eq!(
        l.outages(),
        0,
        "never up, so no outage; the failure is still logged once"
    );
    server.restart();
    let deadline = tokio::time::Instant::now() + RETURNS_WITHIN;
    loop {
        match tokio::time::timeout(RETURNS_WITHIN, l.check("k", &rates)).await {
            Ok(Ok(v)) => {
                assert_eq!(v.remaining, 2);
                break;
            }
            Ok(Err(StateError::Unavailable)) => {}
            other => panic!("{other:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(l.is_up());
}

#[tokio::test]
async fn redis_quotas_count_deny_and_do_not_count_denied_requests() {
    let server = RedisServer::start();
    let node_a = limiter(&server.url());
    let node_b = limiter(&server.url());
    let add = |l: &RedisLimiter, period, limit, cost| {
        let l = l.clone();
        async move {
            match tokio::time::timeout(RETURNS_WITHIN, l.quota_add("acme", period, limit, cost)).await {
                Ok(Ok(q)) => q,
                other => panic!("{other:?}"),
            }
        }
    };
    for used in 1..=3 {
        let node = if used % 2 == 0 { &node_a } else { &node_b };
        let q = add(node, QuotaPeriod::Day, 3, 1).await;
        assert!(q.allowed);
        assert_eq!((q.used, q.limit), (used, 3));
        assert!(q.resets_in > Duration::ZERO && q.resets_in <= DAY);
    }
    for _ in 0..5 {
        let q = add(&node_a, QuotaPeriod::Day, 3, 1).await;
        assert!(!q.allowed);
        assert_eq!(q.used, 3, "denied requests are not counted");
    }
    let key = quota_key("acme", QuotaPeriod::Day, std::time::SystemTime::now());
    assert_eq!(get(&server, &key).int(), Some(3));
    // Expires an hour after the window's end.
    let ttl = server.command(&["TTL", &key]).expect("TTL").int().unwrap_or(-3);
    assert!(ttl > 3600 && ttl <= 86_400 + 3600, "TTL {ttl}");

    // A cost that does not fit is denied whole; the month counter is separate.
    let q = add(&node_b, QuotaPeriod::Month, 10, 8).await;
    assert_eq!((q.allowed, q.used), (true, 8));
    let q = add(&node_b, QuotaPeriod::Month, 10, 3).await;
    assert_eq!((q.allowed, q.used), (false, 8));
    let q = add(&node_a, QuotaPeriod::Month, 10, 2).await;
    assert_eq!((q.allowed, q.used), (true, 10));
}

/// Collects formatted log lines of the current thread (tests here run on a current-thread
/// runtime, so the limiter's background probe logs on the same thread).
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn count(&self, needle: &str) -> usize {
        let bytes = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

#[tokio::test]
async fn an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut server = RedisServer::start();
    let l = limiter(&server.url());
    let rates = [Rate::new(1000, HOUR)];
    check(&l, "k", &rates).await;
    assert_eq!(logs.count("redis connected"), 1);

    server.stop();
    // Many failing calls, spread over several retry intervals so that several probes fail.
    let probes_until = tokio::time::Instant::now() + Duration::from_millis(700);
    let mut calls = 0;
    while tokio::time::Instant::now() < probes_until || calls < 20 {
        let r = tokio::time::timeout(RETURNS_WITHIN, l.check("k", &rates)).await;
        assert_eq!(r.ok(), Some(Err(StateError::Unavailable)));
        calls += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(l.fallbacks(), calls);
    assert_eq!(
        logs.count("redis unreachable"),
        1,
        "one line per outage, not per call or probe"
    );

    server.restart();
    let deadline = tokio::time::Instant::now() + RETURNS_WITHIN;
    while !l.is_up() {
        let _ = tokio::time::timeout(RETURNS_WITHIN, l.check("k", &rates)).await;
        assert!(tokio::time::Instant::now() < deadline, "never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check(&l, "k", &rates).await;
    assert_eq!(logs.count("redis reachable again"), 1);
    assert_eq!(logs.count("redis unreachable"), 1);
    assert_eq!(logs.count("redis connected"), 1);
}
