//! Every KrakenD example of the seed (examples/krakend/gateway.yaml, run as it is with its
//! upstreams pointed at local backends through the environment) answers the document KrakenD
//! describes, and the rest of issue 14's composition: martian modifiers, zero-trust parameter
//! forwarding, hedged calls, a proxy rate limit per backend, gzip answers.
//!
//! The seed's backends are internet hosts (KrakenD's demo API, its `/__echo/` and `/__debug/`
//! endpoints); the local ones here answer the documented bodies: the demo files as below, the
//! echo as KrakenD's does (`req_uri`, `req_querystring`, `req_headers`, `req_body`, …), the
//! debug endpoint with `{"message": "pong"}`.

mod common_ops;

use common_ops::{BIN, gateway_with_org_files, start_gateway};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use test_support::http::{Request, Response};
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, Reply, client, eventually, get, send};

const ALICE: &str =
    r#"{"status": "ok", "data": {"user": {"name": "Alice", "city": "Barcelona", "email": "alice@example.com"}}}"#;
const BOB: &str =
    r#"{"status": "ok", "data": {"user": {"name": "Bob", "city": "London", "email": "bob@example.com"}}}"#;
const NUMBERS: &str = r#"{"numerals": [
    {"numeral": 0, "english": "zero", "spanish": "cero"},
    {"numeral": 1, "english": "one", "spanish": "uno"},
    {"numeral": 2, "english": "two", "spanish": "dos"}]}"#;
const INDEX: &str = r#"{"name": "KrakenD", "version": 2}"#;
const COLLECTION: &str = r#"[{"id": 1}, {"id": 2}]"#;
const PAGE: &str = "<html><body>Hi</body></html>";
const NOT_FOUND: &str = "<html>Not Found</html>";

fn answer(status: u16, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("x-from", "backend")
        .body(Full::new(body.into()))
        .unwrap()
}

/// KrakenD's demo API and hotel service, by path.
async fn demo() -> Backend {
    Backend::start(|req, _| async move {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        match pq.as_str() {
            "/users/alice.json" => answer(200, "application/json", ALICE),
            "/users/bob.json" => answer(200, "application/json", BOB),
            "/numbers.json" => answer(200, "application/json", NUMBERS),
            "/index.php" => answer(200, "application/json", INDEX),
            "/index.php?collection=true" => answer(200, "application/json", COLLECTION),
            "/index.html" => answer(200, "text/html", PAGE),
            "/hotels/7.json" => answer(200, "application/json", r#"{"hotel_id": 7, "calendar_id": "cal9"}"#),
            "/calendar/cal9.json" => answer(200, "application/json", r#"{"days": ["mon", "tue"]}"#),
            // api.github.com, google.com and the timing service.
            "/users/7" => answer(200, "application/json", r#"{"login": "fathi", "id": 7}"#),
            "/users/hafizan" => answer(200, "application/json", r#"{"login": "hafizan", "id": 8}"#),
            "/status" => answer(200, "application/json", r#"{"status": "good"}"#),
            "/this-url-likely-does-not-exist" => answer(404, "text/html", NOT_FOUND),
            "/" => answer(200, "text/html", PAGE),
            "/speedy/" => answer(200, "application/json", r#"{"speed": "fast"}"#),
            "/delayed/" => {
                // Longer than any timeout of the example: only the gateway's timeout ends it.
                tokio::time::sleep(Duration::from_secs(30)).await;
                answer(200, "application/json", r#"{"speed": "slow"}"#)
            }
            _ => answer(404, "text/plain", format!("no {pq}")),
        }
    })
    .await
}

/// KrakenD's `/__echo/` (the request as JSON) and `/__debug/` (`{"message": "pong"}`).
async fn echo() -> Backend {
    Backend::start(|req, _| async move {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if parts.uri.path().starts_with("/__debug/") {
            return answer(200, "application/json", r#"{"message": "pong"}"#);
        }
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &parts.headers {
            // Canonical MIME names, as Go writes them (`user-agent` → `User-Agent`).
            let name = k
                .as_str()
                .split('-')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("-");
            headers
                .entry(name)
                .or_default()
                .push(v.to_str().unwrap_or("").to_string());
        }
        let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in parts.uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            query.entry(k.to_string()).or_default().push(v.to_string());
        }
        let doc = json!({
            "req_uri": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            "req_method": parts.method.as_str(),
            "req_querystring": query,
            "req_headers": headers,
            "req_body": String::from_utf8_lossy(&body),
        });
        answer(200, "application/json", doc.to_string())
    })
    .await
}

/// The example as it is, its upstreams pointed at the local backends.
async fn example() -> (Backend, Backend, Backend, Gateway) {
    let demo = demo().await;
    let echo = echo().await;
    let flaky = flaky_every_third().await;
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/krakend/gateway.yaml"
    ))
    .expect("examples/krakend/gateway.yaml");
    let gw = tokio::task::block_in_place(|| {
        Gateway::start_with_env(
            BIN,
            &yaml,
            &[],
            &[
                ("CRATOPUS_BIND", "127.0.0.1:0"),
                ("KRAKEND_DEMO", &demo.url()),
                ("KRAKEND_HOTELS", &demo.url()),
                ("KRAKEND_ECHO", &echo.url()),
                ("KRAKEND_FLAKY", &flaky.url()),
                ("KRAKEND_GITHUB", &demo.url()),
                ("KRAKEND_GOOGLE", &demo.url()),
                ("KRAKEND_TIMING", &demo.url()),
            ],
        )
    });
    (demo, echo, flaky, gw)
}

/// Answers 503 to two calls in three (the first two of each three), 200 to the third.
async fn flaky_every_third() -> Backend {
    let n = Arc::new(AtomicUsize::new(0));
    Backend::start(move |_, _| {
        let n = n.clone();
        async move {
            if n.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
                answer(200, "application/json", r#"{"lucky": true}"#)
            } else {
                answer(503, "application/json", r#"{"error": "flaky"}"#)
            }
        }
    })
    .await
}

fn completed(r: &Reply) -> Option<&str> {
    r.header("x-cratopus-completed")
}

async fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

async fn json_of(gw: &Gateway, path: &str) -> Value {
    let r = get(&gw.url(path), None).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(completed(&r), Some("true"), "{path}");
    r.json()
}

fn alice_user() -> Value {
    json!({"name": "Alice", "city": "Barcelona", "email": "alice@example.com"})
}

fn bob_user() -> Value {
    json!({"name": "Bob", "city": "London", "email": "bob@example.com"})
}

/// `/aggregation`, `/group` and the sequential pair, as the example file serves them (the
/// behaviours themselves are tested against hand-written routes in tests/composition.rs).
#[tokio::test(flavor = "multi_thread")]
async fn the_example_file_serves_aggregation_group_and_sequential() {
    let (_d, _e, _f, gw) = example().await;
    assert_eq!(
        json_of(&gw, "/aggregation").await,
        json!({"status": "ok", "data": {"user": bob_user()}})
    );
    assert_eq!(
        json_of(&gw, "/group").await,
        json!({"alice": {"status": "ok", "data": {"user": alice_user()}}, "bob": {"status": "ok", "data": {"user": bob_user()}}})
    );
    assert_eq!(
        json_of(&gw, "/hotel/7").await,
        json!({"hotel_id": 7, "calendar_id": "cal9", "days": ["mon", "tue"]})
    );
    let r = get(&gw.url("/hotel/failing/7"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"hotel_id": 7, "calendar_id": "cal9"}));
    assert_eq!(completed(&r), Some("false"));
}

/// The routing example and KrakenD's proxy-like pair: parsed by the gateway, or passed through.
#[tokio::test(flavor = "multi_thread")]
async fn routing_and_the_no_op_pair() {
    let (_d, _e, _f, gw) = example().await;
    assert_eq!(
        json_of(&gw, "/users/7").await,
        json!({"fathi": {"login": "fathi", "id": 7}, "hafizan": {"login": "hafizan", "id": 8}})
    );
    let r = get(&gw.url("/parsed"), None).await;
    assert_eq!(r.text(), r#"{"status":"good"}"#);
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(r.header("x-from"), None, "the gateway's headers, not the backend's");
    let r = get(&gw.url("/no-op"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"status": "good"}"#, "the backend's bytes as they are");
    assert_eq!(r.header("x-from"), Some("backend"));
}

/// The status code examples: KrakenD's 500 with no body, partial answers, error details
/// under a key, and the single backend's status kept.
#[tokio::test(flavor = "multi_thread")]
async fn status_codes_headers_and_errors() {
    let (_d, _e, _f, gw) = example().await;
    assert_eq!(json_of(&gw, "/ok").await, json!({"status": "good"}));
    for path in [
        "/epic-fail",
        "/interpretation-bad-status",
        "/interpretation-bad-encoding",
    ] {
        let r = get(&gw.url(path), None).await;
        assert_eq!(r.status, 500, "{path}: {}", r.text());
        assert_eq!(r.text(), "", "{path}: nothing of the backend's error");
        assert_eq!(completed(&r), Some("false"), "{path}");
    }
    let r = get(&gw.url("/mixed"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "good"}));
    assert_eq!(completed(&r), Some("false"));
    let r = get(&gw.url("/details"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"error_error_from_google": {"http_status_code": 404, "http_body": NOT_FOUND}})
    );
    let r = get(&gw.url("/preserve-404"), None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), NOT_FOUND);
    assert_eq!(r.header("content-type"), Some("text/html"));
}

/// The timeout examples: the endpoint's timeout bounds every backend.
#[tokio::test(flavor = "multi_thread")]
async fn the_timeout_examples() {
    let (_d, _e, _f, gw) = example().await;
    assert_eq!(json_of(&gw, "/fast").await, json!({"speed": "fast"}));
    let r = get(&gw.url("/semi-slow"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"speed": "fast"}));
    assert_eq!(completed(&r), Some("false"));
    let r = get(&gw.url("/slow"), None).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "");
}

/// `/target`, `/mapping`, `/deny`, `/allow`: KrakenD's basic manipulation, one option each.
#[tokio::test(flavor = "multi_thread")]
async fn target_mapping_deny_and_allow() {
    let (_d, _e, _f, gw) = example().await;
    assert_eq!(json_of(&gw, "/target").await, alice_user());
    assert_eq!(
        json_of(&gw, "/mapping").await,
        json!({"my_response": {"user": bob_user()}, "result": "ok"})
    );
    assert_eq!(json_of(&gw, "/deny").await, json!({"status": "ok"}));
    let r = get(&gw.url("/allow"), None).await;
    assert_eq!(r.text(), r#"{"data":{"user":{"city":"London","name":"Bob"}}}"#);
}

/// Both flatmap examples: on an object, and over a collection with `*` and an index.
#[tokio::test(flavor = "multi_thread")]
async fn both_flatmap_examples() {
    let (_d, _e, _f, gw) = example().await;
    assert_eq!(
        json_of(&gw, "/flatmap/object").await,
        json!({"details": {"city": "Barcelona", "email": "alice@example.com"}, "name": "Alice"})
    );
    let r = get(&gw.url("/flatmap/collection"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"numbers":[{"name":"one","number":1},{"name":"two","number":2}]}"#
    );
}

/// The encoding examples: JSON to XML, collections three ways, negotiation, strings.
#[tokio::test(flavor = "multi_thread")]
async fn the_collection_and_encoding_endpoints() {
    let (_d, _e, _f, gw) = example().await;
    let r = get(&gw.url("/xml"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/xml; charset=utf-8"));
    assert_eq!(r.text(), "<doc><name>KrakenD</name><version>2</version></doc>");

    assert_eq!(
        json_of(&gw, "/collection").await,
        json!({"collection": [{"id": 1}, {"id": 2}]})
    );
    assert_eq!(
        json_of(&gw, "/safe-collection").await,
        json!({"SOMETHING_ELSE": [{"id": 1}, {"id": 2}]})
    );
    let r = get(&gw.url("/collection-as-it-was"), None).await;
    assert_eq!(r.text(), r#"[{"id":1},{"id":2}]"#);

    let r = get_with(&gw.url("/negotiate"), &[("accept", "application/xml")]).await;
    assert_eq!(r.header("content-type"), Some("application/xml; charset=utf-8"));
    assert_eq!(r.text(), "<doc><name>KrakenD</name><version>2</version></doc>");
    let r = get_with(&gw.url("/negotiate"), &[("accept", "application/yaml")]).await;
    assert_eq!(r.header("content-type"), Some("application/yaml; charset=utf-8"));
    assert_eq!(r.text(), "name: KrakenD\nversion: 2\n");
    let r = get(&gw.url("/negotiate"), None).await;
    assert_eq!(r.json(), json!({"name": "KrakenD", "version": 2}));

    let r = get(&gw.url("/string"), None).await;
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text(), PAGE);
    assert_eq!(json_of(&gw, "/string-in-object").await, json!({"content": PAGE}));
}

/// KrakenD's zero-trust parameter forwarding: nothing, a list, everything, and a mandatory
/// parameter of the URL pattern with an optional one of the client.
#[tokio::test(flavor = "multi_thread")]
async fn parameter_forwarding_default_known_all_and_mandatory() {
    let (_d, _e, _f, gw) = example().await;
    let ask = |path: &'static str| {
        let url = gw.url(path);
        async move {
            get_with(
                &url,
                &[("accept", "application/json"), ("x-secret", "s"), ("cookie", "a=1")],
            )
            .await
            .json()
        }
    };
    let d = ask("/default?q=1&admin=true").await;
    assert_eq!(d["req_uri"], "/__echo/");
    let h = d["req_headers"].as_object().unwrap();
    for absent in ["Accept", "X-Secret", "Cookie"] {
        assert!(!h.contains_key(absent), "{absent} reached the backend: {h:?}");
    }
    // What the gateway itself vouches for still goes.
    assert!(
        h.contains_key("X-Forwarded-For") && h.contains_key("X-Request-Id"),
        "{h:?}"
    );

    let k = ask("/known-params?q=1&a[]=2&admin=true").await;
    assert_eq!(k["req_uri"], "/__echo/?q=1&a[]=2");
    assert_eq!(k["req_headers"]["Accept"], json!(["application/json"]));
    assert!(k["req_headers"].get("X-Secret").is_none(), "{k}");

    let a = ask("/all?q=1&admin=true").await;
    assert_eq!(a["req_uri"], "/__echo/?q=1&admin=true");
    assert_eq!(a["req_headers"]["X-Secret"], json!(["s"]));
    assert_eq!(a["req_headers"]["Cookie"], json!(["a=1"]));

    let m = ask("/mandatory/42?optional=yes&other=no").await;
    assert_eq!(m["req_uri"], "/__echo/?id=42&optional=yes");
    let m = ask("/mandatory/42").await;
    assert_eq!(m["req_uri"], "/__echo/?id=42");
}

/// The four martian examples, and basic authentication towards a backend.
#[tokio::test(flavor = "multi_thread")]
async fn the_martian_examples_and_basic_auth() {
    let (_d, _e, _f, gw) = example().await;
    // header.Modifier on both sides of a no-op endpoint: the backend got the header, and the
    // client sees it on the backend's answer.
    let r = get_with(&gw.url("/header.Modifier"), &[("user-agent", "curl/8")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("user-agent"), Some("Late-Night-Commander v2.3"));
    assert_eq!(r.header("x-from"), Some("backend"), "no-op keeps the backend's headers");
    assert_eq!(
        r.json()["req_headers"]["User-Agent"],
        json!(["Late-Night-Commander v2.3"])
    );

    // body.Modifier both ways: whatever the backend said, the answer is the static body.
    assert_eq!(json_of(&gw, "/body.Modifier").await, json!({"msg": "you rock!"}));

    // header.RegexFilter: the query parameter only for a pre-release version.
    let r = get_with(&gw.url("/header.RegexFilter"), &[("x-app-version", "2.1-beta")]).await;
    assert_eq!(r.json(), json!({"req_uri": "/__echo/header.RegexFilter?testing=1"}));
    let r = get_with(&gw.url("/header.RegexFilter"), &[("x-app-version", "2.1")]).await;
    assert_eq!(r.json(), json!({"req_uri": "/__echo/header.RegexFilter"}));

    // fifo.Group: the request body replaced, then a header on the request and the answer.
    let req = Request::post(gw.url("/fifo.Group"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"original\": true}")))
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-additional-header"), Some("true"));
    let doc = r.json();
    assert_eq!(doc["req_body"], r#"{"msg":"you rock!"}"#);
    assert_eq!(doc["req_method"], "POST");
    assert_eq!(doc["req_headers"]["X-Additional-Header"], json!(["true"]));
    assert_eq!(doc["req_headers"]["Content-Length"], json!(["19"]));

    let r = get_with(&gw.url("/basic-auth"), &[("authorization", "Bearer client-token")]).await;
    assert_eq!(
        r.json(),
        json!({"req_headers": {"Authorization": ["Basic Z2VyYXJkOnBhc3N3b3Jk"]}})
    );
}

/// The rest of the martian set end to end, on a no-op endpoint (whose answer's headers reach
/// the client): a query parameter added to the request and a response filter that reads the
/// query the backend was sent, a cookie both ways, headers appended and removed.
#[tokio::test(flavor = "multi_thread")]
async fn martian_cookies_filters_and_removals_on_a_no_op_endpoint() {
    let echo = echo().await;
    let org = format!(
        r#"name: t
upstreams:
  svc: {{targets: ["{}"]}}
routes:
  - path: /m
    upstream: svc
    compose:
      input_headers: [Cookie, X-Tenant]
      output_encoding: no-op
      backend:
        - url_pattern: /__echo/m
          encoding: no-op
          martian:
            fifo.Group:
              scope: [request, response]
              modifiers:
                - querystring.Modifier: {{scope: [request], name: debug, value: "1"}}
                - querystring.Filter:
                    scope: [response]
                    name: debug
                    value: "1"
                    modifier: {{header.Modifier: {{scope: [response], name: X-Debugged, value: "yes"}}}}
                - cookie.Modifier: {{scope: [request, response], name: gw, value: seen, path: /, httpOnly: true}}
                - header.Filter:
                    scope: [request]
                    name: X-Tenant
                    value: acme
                    modifier: {{header.Append: {{scope: [request], name: X-Tenant, value: gold}}}}
                    else: {{header.Blacklist: {{scope: [request], names: [X-Tenant]}}}}
                - header.Blacklist: {{scope: [response], names: [X-From]}}
"#,
        echo.url()
    );
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/t.yaml", &org)]);
    let r = get_with(&gw.url("/m"), &[("cookie", "a=1"), ("x-tenant", "acme")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-debugged"), Some("yes"), "the response filter saw ?debug=1");
    assert_eq!(r.header("set-cookie"), Some("gw=seen; Path=/; HttpOnly"));
    assert_eq!(r.header("x-from"), None, "removed from the answer");
    let doc = r.json();
    assert_eq!(doc["req_uri"], "/__echo/m?debug=1");
    assert_eq!(doc["req_headers"]["Cookie"], json!(["a=1; gw=seen"]));
    assert_eq!(doc["req_headers"]["X-Tenant"], json!(["acme", "gold"]));
    let r = get_with(&gw.url("/m"), &[("x-tenant", "other")]).await;
    let doc = r.json();
    assert!(doc["req_headers"].get("X-Tenant").is_none(), "{doc}");
    assert_eq!(doc["req_headers"]["Cookie"], json!(["gw=seen"]));
}

/// `concurrent_calls: 3` against a backend that fails two calls in three: every request gets
/// the one good answer.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_calls_hide_a_flaky_backend() {
    let (_d, _e, flaky, gw) = example().await;
    let _ = &flaky;
    for _ in 0..6 {
        let r = get(&gw.url("/flaky"), None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), json!({"lucky": true}));
        assert_eq!(completed(&r), Some("true"));
    }
}

/// The example's `/r1` (`rate_limit: {max_rate: 3, capacity: 3}`): of 20 calls at once, the
/// first 3 go through and the calls past the limit fail without reaching the backend (the
/// endpoint's only backend: a 500). The bucket refills 3 a second, so a few more may pass on a
/// slow machine; the exact count is the next test's, on a bucket that does not refill.
#[tokio::test(flavor = "multi_thread")]
async fn the_example_proxy_rate_limit_refuses_a_burst() {
    let (_d, _e, _f, gw) = example().await;
    let url = gw.url("/r1");
    let calls = (0..20).map(|_| {
        let url = url.clone();
        async move { get(&url, None).await.status }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 500).count();
    assert!(ok >= 3 && refused >= 1, "{statuses:?}");
    assert_eq!(ok + refused, 20, "{statuses:?}");
}

/// A bucket of 3 that refills once an hour: exactly 3 calls reach the backend; past them the
/// rate-limited backend adds nothing and the answer is partial, with the reason logged.
#[tokio::test(flavor = "multi_thread")]
async fn past_the_proxy_rate_limit_the_answer_is_partial() {
    let demo = demo().await;
    let org = format!(
        "name: t\nupstreams:\n  svc: {{targets: [\"{}\"]}}\nroutes:\n  - path: /limited\n    upstream: svc\n    compose:\n      backend:\n        - {{url_pattern: /users/alice.json, group: alice}}\n        - {{url_pattern: /users/bob.json, group: bob, rate_limit: {{max_rate: 1, every: 1h, capacity: 3}}}}\n",
        demo.url()
    );
    let gw = start_gateway(
        &gateway_with_org_files("traffic_log:\n  path: traffic.log\n"),
        &[("orgs/t.yaml", &org)],
    );
    for _ in 0..3 {
        let r = get(&gw.url("/limited"), None).await;
        assert_eq!(completed(&r), Some("true"), "{}", r.text());
        assert!(r.json().get("bob").is_some());
    }
    for _ in 0..2 {
        let r = get(&gw.url("/limited"), None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(completed(&r), Some("false"));
        assert_eq!(
            r.json(),
            json!({"alice": {"status": "ok", "data": {"user": alice_user()}}})
        );
    }
    assert!(wait_log_file(&gw, "proxy rate limit exceeded").await);
}

/// Hedged calls are cancelled once one answers: the slow calls' handlers are dropped (their
/// connections closed) without waiting for them.
#[tokio::test(flavor = "multi_thread")]
async fn the_losing_hedged_calls_are_cancelled() {
    struct Dropped(Arc<AtomicUsize>, bool);
    impl Drop for Dropped {
        fn drop(&mut self) {
            if !self.1 {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    // The first call answers once all three have arrived (so none is cancelled before it
    // reaches the backend); the two others never answer by themselves.
    let all_in = Arc::new(tokio::sync::Barrier::new(3));
    let (c, x) = (calls.clone(), cancelled.clone());
    let backend = Backend::start(move |_, _| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        let guard = Dropped(x.clone(), false);
        let all_in = all_in.clone();
        async move {
            // The whole guard moves into the handler's future (not only the field it sets).
            let mut guard = guard;
            all_in.wait().await;
            if n % 3 != 0 {
                // Never answers by itself: only the gateway's cancel ends it.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            guard.1 = true;
            answer(200, "application/json", r#"{"first": true}"#)
        }
    })
    .await;
    let org = format!(
        "name: t\nupstreams:\n  svc: {{targets: [\"{}\"]}}\nroutes:\n  - path: /hedged\n    upstream: svc\n    timeout: 30s\n    compose:\n      backend:\n        - {{url_pattern: /x, concurrent_calls: 3}}\n",
        backend.url()
    );
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/t.yaml", &org)]);
    let r = get(&gw.url("/hedged"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"first": true}));
    assert!(
        eventually(Duration::from_secs(20), || async {
            cancelled.load(Ordering::SeqCst) == 2
        })
        .await,
        "calls {}, cancelled {}",
        calls.load(Ordering::SeqCst),
        cancelled.load(Ordering::SeqCst)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A gzip answer is decoded before shaping; one that inflates past the 8 MiB limit (a zip
/// bomb of a few KB) fails that backend clearly, and the other backend's answer still comes.
#[tokio::test(flavor = "multi_thread")]
async fn gzip_answers_are_decoded_and_a_bomb_fails_its_backend() {
    let small = Bytes::from(gzip(br#"{"data": {"user": {"name": "Zed"}}, "noise": 1}"#));
    let mut huge = b"{\"a\": \"".to_vec();
    huge.extend(std::iter::repeat_n(b'0', 9 << 20));
    huge.extend_from_slice(b"\"}");
    let bomb = Bytes::from(gzip(&huge));
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let accepts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = accepts.clone();
    let backend = Backend::start(move |req, _| {
        let (small, bomb, seen) = (small.clone(), bomb.clone(), seen.clone());
        async move {
            let ae = req
                .headers()
                .get("accept-encoding")
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default();
            seen.lock().unwrap().push(ae);
            let body = if req.uri().path() == "/bomb" { bomb } else { small };
            let mut res = answer(200, "application/json", body);
            res.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            res
        }
    })
    .await;
    let org = format!(
        "name: t\nupstreams:\n  svc: {{targets: [\"{}\"]}}\nroutes:\n  - path: /zipped\n    upstream: svc\n    compose:\n      backend:\n        - {{url_pattern: /small, target: data.user}}\n  - path: /bomb\n    upstream: svc\n    compose:\n      backend:\n        - {{url_pattern: /small, group: small}}\n        - {{url_pattern: /bomb, group: bomb}}\n",
        backend.url()
    );
    let gw = start_gateway(
        &gateway_with_org_files("traffic_log:\n  path: traffic.log\n"),
        &[("orgs/t.yaml", &org)],
    );
    let r = get(&gw.url("/zipped"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"name":"Zed"}"#);
    assert_eq!(r.header("content-encoding"), None);
    assert!(
        accepts.lock().unwrap().iter().all(|a| a == "gzip, deflate"),
        "{accepts:?}"
    );

    let r = get(&gw.url("/bomb"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"small": {"data": {"user": {"name": "Zed"}}, "noise": 1}})
    );
    assert_eq!(completed(&r), Some("false"));
    let found = wait_log_file(&gw, "once decompressed").await;
    let log = std::fs::read_to_string(gw.path("traffic.log")).unwrap_or_default();
    assert!(found, "the traffic log names the failure: {log}");
}

/// Waits until the traffic log has a line with `needle`.
async fn wait_log_file(gw: &Gateway, needle: &str) -> bool {
    let path = gw.path("traffic.log");
    eventually(Duration::from_secs(10), || {
        let path = path.clone();
        async move { std::fs::read_to_string(&path).is_ok_and(|t| t.contains(needle)) }
    })
    .await
}

/// Martian problems are refused at their lines, and so is a header the gateway owns.
#[test]
fn martian_and_forwarding_mistakes_are_refused_at_their_lines() {
    let dir = std::env::temp_dir().join(format!("cratopus-krakend-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = "\
listeners:
  - name: http
    bind: 127.0.0.1:0
organizations:
  - name: t
    upstreams:
      svc: {targets: [\"http://127.0.0.1:1\"]}
    routes:
      - path: /a
        upstream: svc
        forward: {input_headers: [Accept]}
        compose:
          input_headers: [X-Other]
          backend:
            - url_pattern: /x
              concurrent_calls: 0
              rate_limit: {max_rate: 0, every: soon}
              martian:
                fifo.Group:
                  scope: [request]
                  modifiers:
                    - header.Modifier: {scope: [request], name: Host, value: evil}
                    - header.RegexFilter:
                        scope: [request]
                        header: X-V
                        regex: \"(\"
                        modifier: {body.Modifier: {scope: [request], body: \"%%\"}}
";
    std::fs::write(dir.join("gateway.yaml"), yaml).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "-c"])
        .arg(dir.join("gateway.yaml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{text}");
    // Each error is a block: `error: <message>` then `--> <file>:<line>:<column>`.
    let blocks: Vec<&str> = text.split("\n\n").collect();
    for (line, says) in [
        (13, "both `forward` and compose's input_headers"),
        (16, "concurrent_calls must be 1 or more"),
        (17, "max_rate must be a number above 0"),
        (17, "invalid duration"),
        (22, "`Host` is set by the gateway"),
        (26, "is not a regular expression"),
        (27, "body is not base64"),
    ] {
        assert!(
            blocks
                .iter()
                .any(|b| b.contains(&format!("gateway.yaml:{line}:")) && b.contains(says)),
            "no error at line {line} saying {says:?}:\n{text}"
        );
    }
}

/// `host` at every level of a KrakenD document pointed at `url`.
fn rehost(v: &mut Value, url: &str) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "host" {
                    *v = json!([url]);
                } else {
                    rehost(v, url);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| rehost(v, url)),
        _ => {}
    }
}

/// `cratopus import krakend` on the seed's own files (examples/krakend/import) serves what the
/// hand-written example serves: the same statuses, completion headers and documents, endpoint
/// by endpoint, from the same backends.
#[tokio::test(flavor = "multi_thread")]
async fn the_imported_seed_files_answer_as_the_hand_written_example() {
    let (demo, _echo, _flaky, hand) = example().await;
    let dir = tempfile::tempdir().expect("temp dir");
    for file in [
        "manipulation.json",
        "sequential.json",
        "encoding.json",
        "no-op.json",
        "timeout.json",
    ] {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/krakend/import")
            .join(file);
        let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&src).expect("seed file")).expect("JSON");
        rehost(&mut doc, &demo.url());
        let rehosted = dir.path().join(file);
        std::fs::write(&rehosted, doc.to_string()).expect("write");
        let out = std::process::Command::new(BIN)
            .args(["import", "krakend", rehosted.to_str().expect("utf-8")])
            .output()
            .expect("import");
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let yaml = String::from_utf8(out.stdout).expect("YAML is UTF-8");
        let imported = tokio::task::block_in_place(|| {
            Gateway::start_with_env(BIN, &yaml, &[], &[("CRATOPUS_BIND", "127.0.0.1:0")])
        });
        let paths: Vec<String> = doc["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .filter_map(|e| e["endpoint"].as_str())
            .map(|p| p.replace("{id}", "7"))
            .collect();
        assert!(!paths.is_empty(), "{file}");
        for path in paths {
            // The example names the no-op file's `/default` `/parsed` (the forwarding file has a `/default` too).
            let hand_path = if file == "no-op.json" && path == "/default" {
                "/parsed"
            } else {
                path.as_str()
            };
            let a = get(&hand.url(hand_path), None).await;
            let b = get(&imported.url(&path), None).await;
            assert_eq!(a.status, b.status, "{file} {path}: {} vs {}", a.text(), b.text());
            assert_eq!(
                a.header("x-cratopus-completed"),
                b.header("x-cratopus-completed"),
                "{file} {path}"
            );
            assert_eq!(a.header("content-type"), b.header("content-type"), "{file} {path}");
            assert_eq!(a.text(), b.text(), "{file} {path}");
        }
    }
}
