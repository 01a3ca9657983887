//! Load balancing and active health checks, through a real gateway to real backends.

mod common_ops;

use common_ops::{
    TestBackend, backend_of, backends_of_n, dump, gateway_with_org_files, get_from, get_with, load_until, serve_knobs,
    start_gateway, tally,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use test_support::{Gateway, eventually, get};

const WAIT: Duration = Duration::from_secs(5);

fn start_org(org: &str) -> Gateway {
    start_gateway(&gateway_with_org_files(""), &[("orgs/acme.yaml", org)])
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_follows_weights_and_alternates_equal_ones() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let org = format!(
        "name: acme
upstreams:
  weighted:
    balance: round_robin
    targets:
      - url: {a}
        weight: 3
      - url: {b}
        weight: 1
  even:
    targets: [\"{a}\", \"{b}\"]
routes:
  - path: /weighted/{{*rest}}
    upstream: weighted
  - path: /even/{{*rest}}
    upstream: even
",
        a = a.url(),
        b = b.url()
    );
    let gw = start_org(&org);

    let seen = backends_of_n(&gw, &gw.url("/weighted/x"), 400).await;
    let counts = tally(&seen);
    let (na, nb) = (
        counts.get("a").copied().unwrap_or(0),
        counts.get("b").copied().unwrap_or(0),
    );
    assert_eq!(na + nb, 400, "every answer comes from a or b: {counts:?}");
    assert!(
        (270..=330).contains(&na) && (70..=130).contains(&nb),
        "weights 3:1 over 400 requests should give about 300/100, got {counts:?}"
    );
    // The backends saw what the client saw.
    assert_eq!(a.knobs.hits() + b.knobs.hits(), 400);

    let seen = backends_of_n(&gw, &gw.url("/even/x"), 100).await;
    let counts = tally(&seen);
    assert!(
        counts.get("a").is_some_and(|n| (45..=55).contains(n))
            && counts.get("b").is_some_and(|n| (45..=55).contains(n)),
        "equal weights should split 100 requests evenly, got {counts:?}"
    );
    let longest_run = seen.chunk_by(|x, y| x == y).map(<[String]>::len).max().unwrap_or(0);
    assert!(
        longest_run <= 2,
        "equal weights should alternate, but one backend answered {longest_run} times in a row: {seen:?}"
    );
}

/// Runs `tasks` clients against `url` for `for_how_long` and counts answers per backend.
async fn load_counts(gw: &Gateway, url: String, tasks: usize, for_how_long: Duration) -> BTreeMap<String, usize> {
    let outcomes = load_until(url, tasks, tokio::time::sleep(for_how_long)).await;
    let mut names = Vec::new();
    for o in &outcomes {
        match o {
            Ok((200, backend)) => names.push(backend.clone()),
            other => panic!("a request failed under load: {other:?}{}", dump(gw)),
        }
    }
    tally(&names)
}

/// One backend holds every request 3 s, longer than the whole load, the other answers at once;
/// returns the counts of 6 clients' load over 2 s through an upstream balanced by `balance`.
/// A balancer that looks at in-flight requests parks at most about half the clients on the
/// slow backend (each only once, as it is held past the end), whatever the machine's speed;
/// round robin would park all six.
async fn slow_and_fast(balance: &str) -> (usize, usize, Gateway) {
    let slow = TestBackend::start("slow").await;
    slow.knobs.set_delay(Duration::from_secs(3));
    let fast = TestBackend::start("fast").await;
    let org = format!(
        "name: acme
upstreams:
  u:
    balance: {balance}
    targets: [\"{}\", \"{}\"]
routes:
  - path: /{{*rest}}
    upstream: u
",
        slow.url(),
        fast.url()
    );
    let gw = start_org(&org);
    let counts = load_counts(&gw, gw.url("/work"), 6, Duration::from_secs(2)).await;
    let n_slow = counts.get("slow").copied().unwrap_or(0);
    let n_fast = counts.get("fast").copied().unwrap_or(0);
    assert_eq!(n_slow + n_fast, counts.values().sum::<usize>(), "{counts:?}");
    (n_slow, n_fast, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn least_connections_sends_most_requests_to_the_fast_backend() {
    let (n_slow, n_fast, gw) = slow_and_fast("least_connections").await;
    assert!(
        n_slow <= 4 && n_fast >= 20,
        "least_connections should favour the backend that is not busy: slow {n_slow}, fast {n_fast}{}",
        dump(&gw)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn power_of_two_sends_more_requests_to_the_fast_backend() {
    let (n_slow, n_fast, gw) = slow_and_fast("power_of_two").await;
    assert!(
        n_slow <= 4 && n_fast >= 20,
        "power_of_two should favour the backend that is not busy: slow {n_slow}, fast {n_fast}{}",
        dump(&gw)
    );
}

/// Asserts every key always reached the same backend, and that the keys reached more than one.
fn assert_sticky_and_spread(what: &str, per_key: &BTreeMap<String, Vec<String>>) {
    for (key, seen) in per_key {
        assert!(
            seen.iter().all(|b| *b == seen[0]),
            "{what}: key {key} reached different backends: {seen:?}"
        );
    }
    let used: BTreeSet<&String> = per_key.values().map(|v| &v[0]).collect();
    assert!(
        used.len() > 1,
        "{what}: {} keys all went to {used:?}; consistent hashing should spread them",
        per_key.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consistent_hash_keeps_each_key_on_one_backend() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    let targets = format!("[\"{}\", \"{}\", \"{}\"]", a.url(), b.url(), c.url());
    let org = format!(
        "name: acme
upstreams:
  by_header:
    balance: consistent_hash
    hash_on: {{header: x-user}}
    targets: {targets}
  by_cookie:
    balance: consistent_hash
    hash_on: {{cookie: session}}
    targets: {targets}
  by_ip:
    balance: consistent_hash
    hash_on: client_ip
    targets: {targets}
routes:
  - path: /h
    upstream: by_header
  - path: /c
    upstream: by_cookie
  - path: /ip
    upstream: by_ip
"
    );
    let gw = start_org(&org);
    let client = test_support::client();

    // Header: three rounds over 24 users, interleaved.
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for _round in 0..3 {
        for k in 0..24 {
            let user = format!("user-{k}");
            let r = get_with(&client, &gw.url("/h"), &[("x-user", &user)]).await;
            assert_eq!(r.status, 200, "{}{}", r.text(), dump(&gw));
            per_key.entry(user).or_default().push(backend_of(&r));
        }
    }
    assert_sticky_and_spread("hash on header x-user", &per_key);

    // Cookie: only the `session` cookie counts; the others change from round to round.
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for round in 0..3 {
        for k in 0..24 {
            let cookie = format!("theme=t{round}; session=s-{k}; lang=l{round}");
            let r = get_with(&client, &gw.url("/c"), &[("cookie", &cookie)]).await;
            assert_eq!(r.status, 200, "{}{}", r.text(), dump(&gw));
            per_key.entry(format!("s-{k}")).or_default().push(backend_of(&r));
        }
    }
    assert_sticky_and_spread("hash on cookie session", &per_key);

    // Client IP: connections from 24 loopback addresses, each on a new connection.
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for _round in 0..3 {
        for k in 2..26u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, k));
            let r = get_from(ip, gw.addr(), "/ip").await;
            assert_eq!(
                r.status,
                200,
                "from {ip}: {}{}",
                String::from_utf8_lossy(&r.body),
                dump(&gw)
            );
            per_key
                .entry(ip.to_string())
                .or_default()
                .push(r.header("x-backend").unwrap_or("-").to_string());
        }
    }
    assert_sticky_and_spread("hash on client_ip", &per_key);
}

/// Log lines saying `what` about the target at `addr`.
fn state_lines(gw: &Gateway, what: &str, addr: &str) -> usize {
    gw.log_lines_with(what)
        .iter()
        .filter(|l| test_support::field(l, "target").as_deref() == Some(addr))
        .count()
}

/// Waits until `count` log lines say `what` about the target at `addr`.
async fn wait_state(gw: &Gateway, what: &str, addr: &str, count: usize) -> bool {
    eventually(WAIT, || async { state_lines(gw, what, addr) >= count }).await
}

const TAKEN_OUT: &str = "target is unhealthy, taken out";
const BACK: &str = "target is healthy again";

#[tokio::test(flavor = "multi_thread")]
async fn http_health_check_takes_a_failing_target_out_and_brings_it_back() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    // Healthy means exactly 204; any other answer, even a 2xx, is a failed check.
    a.knobs.set_health(204);
    b.knobs.set_health(204);
    let org = format!(
        "name: acme
upstreams:
  u:
    targets: [\"{}\", \"{}\"]
    health_check:
      type: http
      path: /health
      expect_status: 204
      interval: 100ms
      timeout: 2s
      healthy_threshold: 2
      unhealthy_threshold: 2
routes:
  - path: /{{*rest}}
    upstream: u
",
        a.url(),
        b.url()
    );
    let gw = start_org(&org);
    let url = gw.url("/x");
    let b_addr = b.addr().to_string();
    let a_addr = a.addr().to_string();

    let seen = tally(&backends_of_n(&gw, &url, 10).await);
    assert!(
        seen.contains_key("a") && seen.contains_key("b"),
        "both healthy at first: {seen:?}"
    );

    // b's health endpoint answers 200, not the expected 204.
    b.knobs.set_health(200);
    assert!(
        wait_state(&gw, TAKEN_OUT, &b_addr.to_string(), 1).await,
        "b should be taken out after failing its checks{}",
        dump(&gw)
    );
    let before = b.knobs.hits();
    let seen = backends_of_n(&gw, &url, 20).await;
    assert!(
        seen.iter().all(|s| s == "a"),
        "requests reached b after it was taken out: {seen:?}"
    );
    assert_eq!(b.knobs.hits(), before, "b received requests while out");

    // b recovers.
    b.knobs.set_health(204);
    assert!(
        wait_state(&gw, BACK, &b_addr.to_string(), 1).await,
        "b should come back after passing its checks{}",
        dump(&gw)
    );
    let seen = tally(&backends_of_n(&gw, &url, 10).await);
    assert!(
        seen.contains_key("b"),
        "b should get requests again: {seen:?}{}",
        dump(&gw)
    );

    // Every target fails: the gateway answers 503 itself.
    a.knobs.set_health(500);
    b.knobs.set_health(500);
    assert!(
        wait_state(&gw, TAKEN_OUT, &a_addr.to_string(), 1).await
            && wait_state(&gw, TAKEN_OUT, &b_addr.to_string(), 2).await,
        "both targets should be taken out{}",
        dump(&gw)
    );
    let (ha, hb) = (a.knobs.hits(), b.knobs.hits());
    let r = get(&url, None).await;
    assert_eq!(r.status, 503, "{}{}", r.text(), dump(&gw));
    let v = r.json();
    assert_eq!(v["error"]["code"], "no_healthy_target", "{v}");
    assert_eq!(v["error"]["status"], 503, "{v}");
    assert_eq!(
        (a.knobs.hits(), b.knobs.hits()),
        (ha, hb),
        "no backend should see the request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_health_check_follows_a_backend_that_stops_and_restarts() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let org = format!(
        "name: acme
upstreams:
  u:
    targets: [\"{}\", \"{}\"]
    health_check:
      type: tcp
      interval: 100ms
      timeout: 2s
      healthy_threshold: 2
      unhealthy_threshold: 2
routes:
  - path: /{{*rest}}
    upstream: u
",
        a.url(),
        b.url()
    );
    let gw = start_org(&org);
    let url = gw.url("/x");
    let b_addr = b.addr();
    let b_knobs = b.knobs.clone();

    let seen = tally(&backends_of_n(&gw, &url, 10).await);
    assert!(seen.contains_key("b"), "b healthy at first: {seen:?}");

    // b stops listening.
    b.backend.stop();
    assert!(
        wait_state(&gw, TAKEN_OUT, &b_addr.to_string(), 1).await,
        "b should be taken out once its port refuses connections{}",
        dump(&gw)
    );
    let before = b_knobs.hits();
    let seen = backends_of_n(&gw, &url, 20).await;
    assert!(
        seen.iter().all(|s| s == "a"),
        "requests reached b after it was taken out: {seen:?}"
    );
    assert_eq!(b_knobs.hits(), before);

    // b listens again on the same port.
    let _b2 = serve_knobs(&b_addr.to_string(), b_knobs.clone()).await;
    assert!(
        wait_state(&gw, BACK, &b_addr.to_string(), 1).await,
        "b should come back once its port accepts again{}",
        dump(&gw)
    );
    let seen = tally(&backends_of_n(&gw, &url, 10).await);
    assert!(
        seen.contains_key("b"),
        "b should get requests again: {seen:?}{}",
        dump(&gw)
    );
}
