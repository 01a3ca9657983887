//! The engine driven in process: a request goes in, in-process services stand in for the
//! upstreams, and tokio's clock is paused (it moves only when every task waits on it), so that
//! timeouts, slow shadows and limits are tested without real waiting. The process tests
//! (crates/cratopus/tests) keep what needs a real process: signals, TLS, ACME, reload.

use bytes::Bytes;
use cratopus_core::body::ClientBody;
use cratopus_core::{ConnInfo, Engine, Services};
use cratopus_upstream::backend::{Answer, Call};
use cratopus_upstream::{BackendBody, RequestBody, Service};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Answers with what it got: method, path and query, and the headers the gateway set.
struct Echo {
    name: &'static str,
    calls: AtomicUsize,
}

impl Echo {
    fn new(name: &'static str) -> Arc<Echo> {
        Arc::new(Echo {
            name,
            calls: AtomicUsize::new(0),
        })
    }
}

impl Service for Echo {
    fn name(&self) -> &str {
        self.name
    }

    fn call<'a>(&'a self, _call: &'a mut Call, req: Request<RequestBody>) -> Answer<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let header = |n: &str| {
                parts
                    .headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let doc = serde_json::json!({
                "service": self.name,
                "method": parts.method.as_str(),
                "uri": parts.uri.to_string(),
                "x_forwarded_for": header("x-forwarded-for"),
                "traceparent": header("traceparent"),
                "x_consumer_id": header("x-consumer-id"),
                "body_len": body.len(),
            });
            Ok(Response::new(BackendBody::full(Bytes::from(doc.to_string()))))
        })
    }
}

/// Never answers within any sensible time.
struct Hang(AtomicUsize);

impl Service for Hang {
    fn name(&self) -> &str {
        "hang"
    }

    fn call<'a>(&'a self, _call: &'a mut Call, _req: Request<RequestBody>) -> Answer<'a> {
        Box::pin(async move {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Response::new(BackendBody::empty()))
        })
    }
}

async fn engine(yaml: &str, services: Services) -> Engine {
    let loaded = cratopus_config::load_str(Path::new("gw.yaml"), yaml).expect("config loads");
    let compiled = cratopus_core::compile_only(loaded, None, 1, &services).expect("compiles");
    Engine::new(compiled.start().await.expect("starts"))
}

fn conn() -> ConnInfo {
    ConnInfo::new("127.0.0.1:40000".parse().unwrap(), "http", None)
}

fn get(uri: &str) -> Request<ClientBody> {
    Request::get(uri)
        .header("host", "api.test")
        .body(ClientBody::from_bytes(Bytes::new()))
        .unwrap()
}

async fn json(res: Response<cratopus_core::body::ResponseBody>) -> serde_json::Value {
    let body = res.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body).expect("JSON body")
}

const BASE: &str = "
organizations:
  - name: acme
    upstreams:
      main: {targets: [\"http://127.0.0.1:9\"]}
      copy: {targets: [\"http://127.0.0.1:9\"]}
    routes:
";

#[tokio::test(start_paused = true)]
async fn the_backend_gets_the_rewritten_path_and_the_gateway_headers() {
    let echo = Echo::new("main");
    let yaml = format!("{BASE}      - {{path: \"/users/{{id}}\", upstream: main, rewrite: \"/v2/people/{{id}}\"}}\n");
    let engine = engine(&yaml, Services::default().with("acme", "main", echo.clone())).await;

    let res = engine.handle(get("/users/42?x=1"), &conn()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    let doc = json(res).await;
    assert_eq!(doc["service"], "main");
    assert_eq!(doc["uri"], "/v2/people/42?x=1");
    assert_eq!(doc["x_forwarded_for"], "127.0.0.1");
    assert!(doc["traceparent"].as_str().unwrap().starts_with("00-"), "{doc}");

    let res = engine.handle(get("/nothing"), &conn()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_of_the_chain_never_reaches_the_backend_and_carries_the_response_policies() {
    let echo = Echo::new("main");
    let yaml = format!(
        "{BASE}      - path: /limited
        upstream: main
        cors: {{allow_origins: [\"https://app.test\"]}}
        rate_limit: {{limits: [{{rate: 2, per: 1m}}], key: client_ip}}
"
    );
    let engine = engine(&yaml, Services::default().with("acme", "main", echo.clone())).await;
    let req = || {
        let mut r = get("/limited");
        r.headers_mut().insert("origin", "https://app.test".parse().unwrap());
        r
    };
    for _ in 0..2 {
        let res = engine.handle(req(), &conn()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().contains_key("ratelimit-remaining"));
    }
    let res = engine.handle(req(), &conn()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // The response phase ran on the refusal too: CORS and rate-limit headers.
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.test");
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(echo.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_shadow_that_hangs_neither_delays_nor_fails_the_real_request() {
    let echo = Echo::new("main");
    let hang = Arc::new(Hang(AtomicUsize::new(0)));
    let yaml = format!(
        "{BASE}      - path: /orders
        upstream: main
        shadow: {{upstream: copy, percent: 100, max_in_flight: 2, timeout: 1h}}
"
    );
    let services = Services::default()
        .with("acme", "main", echo.clone())
        .with("acme", "copy", hang.clone());
    let engine = engine(&yaml, services).await;
    let began = tokio::time::Instant::now();
    for i in 0..5 {
        let mut req = Request::post("/orders")
            .header("host", "api.test")
            .header("content-length", "5")
            .body(ClientBody::from_bytes(Bytes::from_static(b"hello")))
            .unwrap();
        req.headers_mut().insert("x-n", i.into());
        let res = engine.handle(req, &conn()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(json(res).await["body_len"], 5, "the real backend got the whole body");
    }
    // With the clock paused, any wait for the shadow would have moved it by an hour.
    assert!(began.elapsed() < Duration::from_secs(1), "{:?}", began.elapsed());
    // Two copies went out and hang; the other three found no free place and were dropped.
    let route = &engine.snapshot().routes[0];
    let cratopus_upstream::Backend::Shadow(shadow) = &route.backend else {
        panic!("the route's backend is a shadow")
    };
    tokio::task::yield_now().await;
    assert_eq!(shadow.stats.sent.load(Ordering::Relaxed), 2);
    assert_eq!(shadow.stats.dropped.load(Ordering::Relaxed), 3);
    assert_eq!(hang.0.load(Ordering::SeqCst), 2);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn validation_reads_an_in_process_body_once_and_refuses_a_bad_one() {
    let echo = Echo::new("main");
    let yaml = format!(
        "{BASE}      - path: /items
        upstream: main
        methods: [POST]
        validate:
          body_schema: {{type: object, required: [name]}}
"
    );
    let engine = engine(&yaml, Services::default().with("acme", "main", echo.clone())).await;
    let post = |body: &'static [u8]| {
        Request::post("/items")
            .header("host", "api.test")
            .header("content-type", "application/json")
            .body(ClientBody::from_bytes(Bytes::from_static(body)))
            .unwrap()
    };
    let res = engine.handle(post(b"{\"name\":\"x\"}"), &conn()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["body_len"], 12);
    let res = engine.handle(post(b"{\"other\":1}"), &conn()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 1);
}

/// Answers every request with 500.
struct Broken(AtomicUsize);

impl Service for Broken {
    fn name(&self) -> &str {
        "broken"
    }

    fn call<'a>(&'a self, _call: &'a mut Call, _req: Request<RequestBody>) -> Answer<'a> {
        Box::pin(async move {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut res = Response::new(BackendBody::empty());
            *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            Ok(res)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_split_shares_requests_and_takes_a_failing_canary_out() {
    let echo = Echo::new("main");
    let broken = Arc::new(Broken(AtomicUsize::new(0)));
    let yaml = format!(
        "{BASE}      - path: /users
        split:
          backends: [{{upstream: main, weight: 3}}, {{upstream: copy, weight: 1, canary: true}}]
          rollback: {{max_error_rate: 0.5, min_requests: 10, window: 1s}}
"
    );
    let services = Services::default()
        .with("acme", "main", echo.clone())
        .with("acme", "copy", broken.clone());
    let engine = engine(&yaml, services).await;
    let snapshot = engine.snapshot();
    let Some(split) = snapshot.routes[0].backend.split() else {
        panic!("the route's backend is a split")
    };
    // The first 20 requests: 3 to 1 (within a request), the canary's 500s passed on as they are.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(engine.handle(get("/users"), &conn()).await.status().as_u16());
    }
    let to_canary = broken.0.load(Ordering::SeqCst);
    assert!((4..=6).contains(&to_canary), "{to_canary} of 20 to the canary");
    assert_eq!(echo.calls.load(Ordering::SeqCst), 20 - to_canary);
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), to_canary);
    // The canary is judged once it has 10 answers in the window, at most every 20 ms (real
    // time: the split reads the system clock); keep the traffic going until it is out.
    let mut sent = 20;
    while !split.state.is_rolled_back() {
        assert!(sent < 1_000_000, "never rolled back");
        engine.handle(get("/users"), &conn()).await;
        sent += 1;
    }
    assert_eq!(split.state.weights(), [3, 0]);
    let before = broken.0.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(engine.handle(get("/users"), &conn()).await.status(), StatusCode::OK);
    }
    assert_eq!(broken.0.load(Ordering::SeqCst), before);
}

#[tokio::test(start_paused = true)]
async fn a_route_chosen_by_consumer_runs_its_own_chain_and_counts_its_own_requests() {
    let general = Echo::new("general");
    let gold = Echo::new("gold");
    // Keys of examples/matching: demo-key-mobile-0123456789 (gold), demo-key-ops-0123456789abc.
    let yaml = "
organizations:
  - name: acme
    consumers:
      - {id: mobile-app, tier: gold, keys: [\"sha256:562181684b6b80f564545492ac7d3c437b9ec0c740b7dcafd657c590b0084cc0\"]}
      - {id: ops-team, keys: [\"sha256:5f1cedf2e2953ef893728e0e59a5e3c72f455e08d054220f89303c1c02030215\"]}
    auth: {api_key: {}}
    upstreams:
      main: {targets: [\"http://127.0.0.1:9\"]}
      copy: {targets: [\"http://127.0.0.1:9\"]}
    routes:
      - {name: general, path: /data, upstream: main}
      - name: gold
        path: /data
        upstream: copy
        match: {tiers: [gold]}
        rate_limit: {limits: [{rate: 1, per: 1m}], key: consumer}
";
    let services = Services::default()
        .with("acme", "main", general.clone())
        .with("acme", "copy", gold.clone());
    let engine = engine(yaml, services).await;
    let with_key = |key: &str| {
        let mut r = get("/data?x=1");
        r.headers_mut().insert("x-api-key", key.parse().unwrap());
        r
    };

    let res = engine.handle(with_key("demo-key-mobile-0123456789"), &conn()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let doc = json(res).await;
    assert_eq!(doc["service"], "gold");
    assert_eq!(doc["x_consumer_id"], "mobile-app");
    assert_eq!(doc["uri"], "/data?x=1");
    // The chosen route's own chain ran: its limit (1 a minute) refuses the second request.
    let res = engine.handle(with_key("demo-key-mobile-0123456789"), &conn()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    drop(res); // its metrics are recorded when its body goes
    let res = engine.handle(with_key("demo-key-ops-0123456789abc"), &conn()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["x_consumer_id"], "ops-team");
    let res = engine.handle(get("/data"), &conn()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    drop(res);
    assert_eq!(
        (general.calls.load(Ordering::SeqCst), gold.calls.load(Ordering::SeqCst)),
        (1, 1)
    );

    // Every request ended on the route it was counted on: nothing left in flight.
    let snap = engine.snapshot();
    for r in &snap.routes {
        assert_eq!(r.metrics.in_flight(), 0, "route {}", r.name);
    }
}
