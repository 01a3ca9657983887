//! Circuit breakers, outlier ejection, retries with their budget, and bulkheads, against real
//! backends whose answers the tests flip while the gateway runs.

mod common_ops;

use common_ops::{TestBackend, count_log, dump, get_with, start_gateway, targets, wait_log};
use serde_json::Value;
use std::time::Duration;
use test_support::http::Request;
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::{Gateway, eventually, send};

const TOKEN: &str = "admin-token-0123456789";

fn gateway(org: &str) -> Gateway {
    start_gateway(
        &format!(
            "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: {TOKEN}\norganizations:\n  - {org}\n"
        ),
        &[],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breaker_opens_on_failures_fails_fast_then_probes_and_closes() {
    let b = TestBackend::start("flappy").await;
    let gw = gateway(&format!(
        "name: shop
    upstreams:
      api:
        targets: [\"{}\"]
        circuit_breaker:
          consecutive_failures: 3
          open_for: 5s
          half_open_probes: 1
    routes:
      - path: /x
        upstream: api
",
        b.url()
    ));
    let c = test_support::client();
    b.knobs.set_status(500);
    for _ in 0..3 {
        assert_eq!(
            get_with(&c, &gw.url("/x"), &[]).await.status,
            500,
            "the upstream's own 500 passes"
        );
    }
    assert!(
        wait_log(&gw, &["circuit opened"], 1, Duration::from_secs(5)).await,
        "{}",
        dump(&gw)
    );
    assert_eq!(targets(&gw, TOKEN).await[0]["circuit"], "open");
    // Open: refused at once, the backend sees nothing.
    for _ in 0..5 {
        let r = get_with(&c, &gw.url("/x"), &[]).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["error"]["code"], "no_healthy_target");
    }
    assert_eq!(b.knobs.hits(), 3);

    // The backend recovers; after open_for one probe goes through and closes the circuit.
    b.knobs.set_status(200);
    assert!(
        wait_log(&gw, &["circuit half-open"], 1, Duration::from_secs(15)).await,
        "{}",
        dump(&gw)
    );
    assert_eq!(get_with(&c, &gw.url("/x"), &[]).await.status, 200);
    assert!(
        wait_log(&gw, &["circuit closed"], 1, Duration::from_secs(5)).await,
        "{}",
        dump(&gw)
    );
    let t = &targets(&gw, TOKEN).await[0];
    assert_eq!(t["circuit"], "closed");
    assert_eq!(t["circuit_opens"], 1);
    for _ in 0..5 {
        assert_eq!(get_with(&c, &gw.url("/x"), &[]).await.status, 200);
    }

    // Failing again re-opens it; a failed probe keeps it open.
    b.knobs.set_status(503);
    for _ in 0..3 {
        get_with(&c, &gw.url("/x"), &[]).await;
    }
    assert!(
        wait_log(&gw, &["circuit opened"], 2, Duration::from_secs(5)).await,
        "{}",
        dump(&gw)
    );
    assert!(wait_log(&gw, &["circuit half-open"], 2, Duration::from_secs(15)).await);
    assert_eq!(
        get_with(&c, &gw.url("/x"), &[]).await.status,
        503,
        "the probe's own 503"
    );
    assert!(
        wait_log(&gw, &["circuit opened"], 3, Duration::from_secs(5)).await,
        "{}",
        dump(&gw)
    );
    assert_eq!(targets(&gw, TOKEN).await[0]["circuit_opens"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_target_is_ejected_and_comes_back() {
    let good1 = TestBackend::start("good1").await;
    let good2 = TestBackend::start("good2").await;
    let bad = TestBackend::start("bad").await;
    bad.knobs.set_status(502);
    let gw = gateway(&format!(
        "name: shop
    upstreams:
      api:
        targets: [\"{}\", \"{}\", \"{}\"]
        outlier_detection:
          consecutive_5xx: 2
          base_ejection_time: 5s
          max_ejection_percent: 50
    routes:
      - path: /x
        upstream: api
",
        good1.url(),
        good2.url(),
        bad.url()
    ));
    let c = test_support::client();
    for _ in 0..9 {
        get_with(&c, &gw.url("/x"), &[]).await;
    }
    assert_eq!(bad.knobs.hits(), 2, "ejected after its second 502");
    assert!(wait_log(&gw, &["target ejected", "consecutive_5xx"], 1, Duration::from_secs(5)).await);
    let ejected: Vec<bool> = targets(&gw, TOKEN).await.iter().map(|t| t["ejected"] == true).collect();
    assert_eq!(ejected.iter().filter(|e| **e).count(), 1, "{ejected:?}");
    for _ in 0..20 {
        assert_eq!(get_with(&c, &gw.url("/x"), &[]).await.status, 200);
    }
    assert_eq!(bad.knobs.hits(), 2);

    // Its time is up: it is back, fails twice more and goes out for longer.
    assert!(
        wait_log(&gw, &["back in rotation"], 1, Duration::from_secs(15)).await,
        "{}",
        dump(&gw)
    );
    for _ in 0..12 {
        get_with(&c, &gw.url("/x"), &[]).await;
    }
    assert_eq!(bad.knobs.hits(), 4);
    assert!(
        wait_log(&gw, &["target ejected", "times=2"], 1, Duration::from_secs(5)).await,
        "{}",
        dump(&gw)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_go_to_another_target_and_stay_within_their_budget() {
    let good = TestBackend::start("good").await;
    let bad = TestBackend::start("bad").await;
    bad.knobs.set_status(503);
    let gw = gateway(&format!(
        "name: shop
    upstreams:
      api:
        targets: [\"{}\", \"{}\"]
        retry:
          attempts: 3
          backoff_base: 1ms
          backoff_max: 5ms
      lone:
        targets: [\"{}\"]
    routes:
      - path: /x
        upstream: api
      - path: /budget
        upstream: lone
        retry:
          attempts: 3
          on_status: [503]
          backoff_base: 1ms
          backoff_max: 2ms
          budget_ratio: 0.2
          min_retries_per_sec: 1
          budget_window: 10s
",
        good.url(),
        bad.url(),
        bad.url()
    ));
    let c = test_support::client();
    for _ in 0..10 {
        let r = get_with(&c, &gw.url("/x"), &[]).await;
        assert_eq!(r.status, 200, "retried on the other target: {}", dump(&gw));
        assert_eq!(r.header("x-backend"), Some("good"));
    }
    assert_eq!(good.knobs.hits(), 10);
    // Round robin sends a request to the bad target first whenever its turn comes (each retry
    // takes a turn too, so here that is most requests).
    let bad_hits = bad.knobs.hits();
    assert!((1..=10).contains(&bad_hits), "{bad_hits}");

    // A POST is not retried: its 503 reaches the client.
    let mut saw_503 = false;
    for _ in 0..4 {
        let req = Request::post(gw.url("/x")).body(Full::new(Bytes::new())).unwrap();
        saw_503 |= send(&c, req).await.status == 503;
    }
    assert!(saw_503);

    // One target that always fails: 3 tries each would be 3 × 100; the budget allows 20% of
    // the requests plus 1 a second over the 10 s window.
    let before = bad.knobs.hits();
    for _ in 0..100 {
        assert_eq!(get_with(&c, &gw.url("/budget"), &[]).await.status, 503);
    }
    let tries = bad.knobs.hits() - before;
    eprintln!("100 requests to an always-failing target: {tries} tries");
    assert!(
        (105..=131).contains(&tries),
        "retries bounded by the budget: {tries} tries"
    );
}

/// A body up to `buffer_body` is kept and sent again by a retry; a larger one streams to the
/// first target and its request is not retried. A POST is retried after a connect error (it
/// never left the gateway), with its body.
#[tokio::test(flavor = "multi_thread")]
async fn retries_send_a_kept_body_again() {
    let bad = TestBackend::start("bad").await;
    bad.knobs.set_status(503);
    let dead = test_support::dead_port();
    let gw = gateway(&format!(
        "name: shop
    upstreams:
      flaky:
        targets: [\"{}\", \"mirror://\"]
      gone:
        targets: [\"http://127.0.0.1:{dead}\", \"mirror://\"]
    routes:
      - path: /{{*rest}}
        upstream: flaky
        retry: {{attempts: 2, backoff_base: 1ms, backoff_max: 2ms, budget_ratio: 1.0, buffer_body: 1KiB}}
      - path: /orders
        methods: [POST]
        upstream: gone
        retry: {{attempts: 2, backoff_base: 1ms, backoff_max: 2ms, budget_ratio: 1.0, buffer_body: 1KiB}}
",
        bad.url()
    ));
    let c = test_support::client();
    let put = |path: &str, body: String| {
        Request::put(gw.url(path))
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };

    // Round robin sends every other try to the bad target first: the retry goes to the mirror
    // with the same body.
    for i in 0..8 {
        let body = format!("order {i}");
        let r = send(&c, put("/items", body.clone())).await;
        assert_eq!(r.status, 200, "{}{}", r.text(), dump(&gw));
        assert_eq!(r.json()["body"], body.as_str(), "{}", r.text());
    }
    let tried_bad = bad.knobs.hits();
    assert!(tried_bad >= 2, "the bad target was tried first {tried_bad} times");

    // Over buffer_body: streamed, so the bad target's 503 reaches the client.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = send(&c, put("/big", "x".repeat(2000))).await;
        if r.status == 503 {
            assert_eq!(r.text(), "bad got 2000 bytes", "the whole body reached the target");
        }
        statuses.push(r.status);
    }
    assert!(statuses.contains(&503) && statuses.contains(&200), "{statuses:?}");

    // A POST whose first try found no connection is sent again, body included.
    for i in 0..4 {
        let body = format!("{{\"order\": {i}}}");
        let req = Request::post(gw.url("/orders"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let r = send(&c, req).await;
        assert_eq!(r.status, 200, "{}{}", r.text(), dump(&gw));
        assert_eq!(r.json()["body"], body.as_str(), "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulkhead_refuses_over_its_limit_or_queues_briefly() {
    let slow = TestBackend::start("slow").await;
    // Long enough that all five requests of a burst arrive while the first two are held.
    slow.knobs.set_delay(Duration::from_millis(1500));
    let gw = gateway(&format!(
        "name: shop
    upstreams:
      api:
        targets: [\"{}\"]
    routes:
      - path: /strict
        upstream: api
        bulkhead: {{max_inflight: 2}}
      - path: /queued
        upstream: api
        bulkhead:
          max_inflight: 2
          queue: {{max_waiting: 10, max_wait: 10s}}
",
        slow.url()
    ));
    let burst = |path: &'static str| {
        let url = gw.url(path);
        async move {
            let mut tasks = Vec::new();
            for _ in 0..5 {
                let url = url.clone();
                tasks.push(tokio::spawn(async move {
                    let r = get_with(&test_support::client(), &url, &[]).await;
                    let body: Value = serde_json::from_str(&r.text()).unwrap_or(Value::Null);
                    (r.status, body["error"]["code"].as_str().unwrap_or("").to_string())
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };
    let strict = burst("/strict").await;
    let ok = strict.iter().filter(|(s, _)| *s == 200).count();
    let refused = strict.iter().filter(|(s, c)| *s == 503 && c == "overloaded").count();
    assert_eq!((ok, refused), (2, 3), "{strict:?}");

    let queued = burst("/queued").await;
    assert!(queued.iter().all(|(s, _)| *s == 200), "{queued:?}");
    // Places are given back when responses end: the route takes requests again.
    assert!(
        eventually(Duration::from_secs(10), || async {
            get_with(&test_support::client(), &gw.url("/strict"), &[]).await.status == 200
        })
        .await
    );
    assert_eq!(count_log(&gw, &["panicked"]), 0);
}
