//! API composition end to end (issue 14): composed routes call real JSON, XML and broken
//! backends over real sockets, and the client gets the merged, shaped document KrakenD's
//! documentation describes, with `X-Cratopus-Completed` saying whether every backend answered.

mod common_ops;

use common_ops::{gateway_with_org_files, start_gateway};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use test_support::http::Response;
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, Reply, eventually, get};

/// One backend answering every service of the tests by path; it counts the calendar calls.
async fn services(calendar_hits: Arc<AtomicUsize>) -> Backend {
    Backend::start(move |req, _| {
        let hits = calendar_hits.clone();
        async move {
            let pq = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            let method = req.method().to_string();
            let sent = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let (status, ctype, body): (u16, &str, String) = match pq.as_str() {
                "/users/alice.json" => (200, "application/json", json!({"name": "Alice", "role": "admin", "data": {"user": {"id": 1}}}).to_string()),
                "/users/bob.json" => (200, "application/json", json!({"name": "Bob", "team": "ops"}).to_string()),
                "/users/7" => (200, "application/json", json!({"id": 7, "name": "Ann", "email": "ann@example.com"}).to_string()),
                "/posts?author=7" => (200, "application/json", json!({"data": {"posts": [1, 2]}}).to_string()),
                "/wrapped/7" => (
                    200,
                    "application/json",
                    json!({"data": {"user": {"id": 7, "name": "Ann", "email": "ann@example.com", "address": {"city": "Oslo", "zip": "0150"}}}})
                        .to_string(),
                ),
                "/hotels/7" => (200, "application/json", json!({"hotel_id": 7, "calendar_id": "cal-9", "name": "Grand"}).to_string()),
                "/hotels-nocal/7" => (200, "application/json", json!({"hotel_id": 7, "name": "Grand"}).to_string()),
                "/calendars/cal-9" => {
                    hits.fetch_add(1, Ordering::SeqCst);
                    (200, "application/json", json!({"days": ["mon", "tue"]}).to_string())
                }
                "/slow" => {
                    // Longer than any timeout of the config: only the gateway's timeout ends it.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    (200, "application/json", "{}".to_string())
                }
                "/html" => (200, "text/html", "<html><body>Maintenance</body></html>".to_string()),
                "/bad" => (200, "application/json", "{\"truncated\": ".to_string()),
                "/down" => (503, "application/json", json!({"error": "down"}).to_string()),
                "/xml/7" => (200, "application/xml", "<user id=\"7\"><name>Ann</name><age>3</age></user>".to_string()),
                "/echo" => (
                    200,
                    "application/json",
                    json!({"method": method, "body": String::from_utf8_lossy(&sent)}).to_string(),
                ),
                "/teapot" => (418, "text/plain", "short and stout".to_string()),
                _ => (404, "text/plain", format!("no {pq}")),
            };
            Response::builder()
                .status(status)
                .header("content-type", ctype)
                .header("x-service", "services")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        }
    })
    .await
}

const ROUTES: &str = r#"
  - path: /aggregation
    compose:
      backend:
        - {url_pattern: /users/alice.json}
        - {url_pattern: /users/bob.json}
  - path: /group
    compose:
      backend:
        - {url_pattern: /users/alice.json, group: alice}
        - {url_pattern: /users/bob.json, group: bob}
  - path: /aggregate/{id}
    compose:
      backend:
        - {url_pattern: "/users/{id}", group: user}
        - {url_pattern: "/posts?author={id}", group: posts}
  - path: /shaped/{id}
    compose:
      backend:
        - url_pattern: /wrapped/{id}
          target: data.user
          allow: [name, address.city]
          mapping: {name: full_name}
  - path: /hotel/{id}
    compose:
      sequential: true
      backend:
        - {url_pattern: "/hotels/{id}"}
        - {url_pattern: "/calendars/{resp0_calendar_id}", group: calendar}
  - path: /hotel/failing/{id}
    compose:
      sequential: true
      backend:
        - {url_pattern: "/hotels-nocal/{id}"}
        - {url_pattern: "/calendars/{resp0_calendar_id}", group: calendar}
  - path: /chain-down
    compose:
      sequential: true
      backend:
        - {url_pattern: /down}
        - {url_pattern: /calendars/cal-9, group: calendar}
  - path: /partial/{id}
    timeout: 10s
    compose:
      backend:
        - {url_pattern: "/users/{id}", group: user}
        - {url_pattern: /slow, group: slow, timeout: 300ms}
  - path: /broken/{id}
    compose:
      backend:
        - {url_pattern: "/users/{id}", group: user}
        - {url_pattern: /html, group: html}
        - {url_pattern: /bad, group: bad}
        - {url_pattern: /down, group: down}
  - path: /nothing
    compose:
      backend:
        - {url_pattern: /html}
        - {url_pattern: /down}
  - path: /xml/{id}
    compose:
      backend:
        - {url_pattern: "/xml/{id}", encoding: xml, group: profile}
        - {url_pattern: "/users/{id}", allow: [email]}
  - path: /details/{id}
    compose:
      backend:
        - {url_pattern: "/users/{id}", group: user}
        - {url_pattern: /down, return_error_details: down}
  - path: /preserve
    compose:
      backend:
        - {url_pattern: /down, return_error_code: true}
  - path: /negotiated/{id}
    compose:
      output_encoding: negotiate
      backend:
        - {url_pattern: "/users/{id}", allow: [name], group: user}
  - path: /orders
    max_body_bytes: 64
    compose:
      backend:
        - {url_pattern: /echo, method: POST, group: first}
        - {url_pattern: /echo, method: PUT, group: second}
  - path: /teapot
    compose:
      backend:
        - {url_pattern: /teapot, encoding: no-op}
"#;

fn gateway(services: &Backend) -> Gateway {
    let org = format!(
        "name: shop\nupstreams:\n  services:\n    targets: [\"{}\"]\nroutes:\n{}",
        services.url(),
        ROUTES.replace("    compose:", "    upstream: services\n    compose:")
    );
    start_gateway(
        &gateway_with_org_files("traffic_log:\n  path: traffic.log\n"),
        &[("orgs/shop.yaml", &org)],
    )
}

async fn setup() -> (Backend, Gateway, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let backend = services(hits.clone()).await;
    let gw = gateway(&backend);
    (backend, gw, hits)
}

fn completed(r: &Reply) -> Option<&str> {
    r.header("x-cratopus-completed")
}

/// The seed's `/aggregation` and `/group` endpoints: merged by top-level keys (on a collision
/// the later backend in the config wins), or each answer kept under its group.
#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_aggregation_and_group_endpoints() {
    let (_b, gw, _) = setup().await;
    let r = get(&gw.url("/aggregation"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"data":{"user":{"id":1}},"name":"Bob","role":"admin","team":"ops"}"#
    );
    assert_eq!(completed(&r), Some("true"));
    let r = get(&gw.url("/group"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "alice": {"name": "Alice", "role": "admin", "data": {"user": {"id": 1}}},
            "bob": {"name": "Bob", "team": "ops"}
        })
    );
    assert_eq!(completed(&r), Some("true"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_backends_are_merged_each_under_its_group() {
    let (_b, gw, _) = setup().await;
    let r = get(&gw.url("/aggregate/7"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"user": {"id": 7, "name": "Ann", "email": "ann@example.com"}, "posts": {"data": {"posts": [1, 2]}}})
    );
    assert_eq!(completed(&r), Some("true"));
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
}

#[tokio::test(flavor = "multi_thread")]
async fn target_allow_and_mapping_shape_an_answer_in_krakends_order() {
    let (_b, gw, _) = setup().await;
    let r = get(&gw.url("/shaped/7"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"address":{"city":"Oslo"},"full_name":"Ann"}"#);
    assert_eq!(completed(&r), Some("true"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sequential_call_uses_a_field_of_the_earlier_answer() {
    let (_b, gw, hits) = setup().await;
    let r = get(&gw.url("/hotel/7"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"hotel_id": 7, "calendar_id": "cal-9", "name": "Grand", "calendar": {"days": ["mon", "tue"]}})
    );
    assert_eq!(completed(&r), Some("true"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_field_stops_the_sequential_chain_with_a_partial_answer() {
    let (_b, gw, hits) = setup().await;
    let r = get(&gw.url("/hotel/failing/7"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"hotel_id": 7, "name": "Grand"}));
    assert_eq!(completed(&r), Some("false"));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the chain must stop before the calendar"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_backend_stops_the_sequential_chain() {
    let (_b, gw, hits) = setup().await;
    let r = get(&gw.url("/chain-down"), None).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.body.is_empty(), "{}", r.text());
    assert_eq!(completed(&r), Some("false"));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing is called after a failure");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_past_its_timeout_leaves_a_partial_answer() {
    let (_b, gw, _) = setup().await;
    let r = get(&gw.url("/partial/7"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"user": {"id": 7, "name": "Ann", "email": "ann@example.com"}})
    );
    assert_eq!(completed(&r), Some("false"));
}

#[tokio::test(flavor = "multi_thread")]
async fn html_bad_json_and_a_5xx_add_nothing_to_the_merge() {
    let (_b, gw, _) = setup().await;
    let r = get(&gw.url("/broken/7"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"user": {"id": 7, "name": "Ann", "email": "ann@example.com"}})
    );
    assert_eq!(completed(&r), Some("false"));
    // The traffic log says which backend failed and why.
    let log = gw.path("traffic.log");
    let mut line = None;
    let found = eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        line = text.lines().find(|l| l.contains("/broken/7")).map(str::to_owned);
        let done = line.is_some();
        async move { done }
    })
    .await;
    assert!(found, "no traffic-log line");
    let line: serde_json::Value = serde_json::from_str(&line.unwrap_or_default()).expect("a JSON log line");
    let failed = line["compose_failed"].as_str().unwrap_or_default().to_string();
    assert!(failed.starts_with("1: ") && failed.contains("3: status 503"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_backend_answering_is_krakends_500_with_no_body() {
    let (_b, gw, _) = setup().await;
    let r = get(&gw.url("/nothing"), None).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.body.is_empty(), "{}", r.text());
    assert_eq!(completed(&r), Some("false"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_xml_backend_is_read_as_krakend_reads_it_and_merged() {
    let (_b, gw, _) = setup().await;
    let r = get(&gw.url("/xml/7"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"profile": {"user": {"-id": "7", "name": "Ann", "age": "3"}}, "email": "ann@example.com"})
    );
    assert_eq!(completed(&r), Some("true"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_no_op_endpoint_passes_status_headers_and_body_through() {
    let (_b, gw, _) = setup().await;
    let r = get(&gw.url("/teapot"), None).await;
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "short and stout");
    assert_eq!(r.header("x-service"), Some("services"));
    assert_eq!(completed(&r), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn return_error_details_puts_a_failing_backends_status_and_body_under_its_key() {
    let (_b, gw, _) = setup().await;
    let r = get(&gw.url("/details/7"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "user": {"id": 7, "name": "Ann", "email": "ann@example.com"},
            "error_down": {"http_status_code": 503, "http_body": "{\"error\":\"down\"}"}
        })
    );
    assert_eq!(completed(&r), Some("false"));
}

#[tokio::test(flavor = "multi_thread")]
async fn return_error_code_answers_with_the_single_backends_status_and_body() {
    let (_b, gw, _) = setup().await;
    let r = get(&gw.url("/preserve"), None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), r#"{"error":"down"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(completed(&r), Some("false"));
}

#[tokio::test(flavor = "multi_thread")]
async fn negotiate_answers_xml_or_json_by_accept() {
    let (_b, gw, _) = setup().await;
    let client = test_support::client();
    let req = |accept: &str| {
        test_support::http::Request::get(gw.url("/negotiated/7"))
            .header("accept", accept)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let r = test_support::send(&client, req("application/xml")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "<user><name>Ann</name></user>");
    assert_eq!(r.header("content-type"), Some("application/xml; charset=utf-8"));
    let r = test_support::send(&client, req("application/json;q=0.9, application/xml;q=0.1")).await;
    assert_eq!(r.text(), r#"{"user":{"name":"Ann"}}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_clients_body_goes_to_every_backend_with_its_method_within_the_routes_limit() {
    let (_b, gw, _) = setup().await;
    let r = test_support::request("POST", &gw.url("/orders"), None, b"{\"sku\": 42}").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "first": {"method": "POST", "body": "{\"sku\": 42}"},
            "second": {"method": "PUT", "body": "{\"sku\": 42}"}
        })
    );
    let big: &'static [u8] = &[b'x'; 100];
    let r = test_support::request("POST", &gw.url("/orders"), None, big).await;
    assert_eq!(r.status, 413, "{}", r.text());
}

/// Each answer is read whole and its connection goes back to the upstream's pool: three
/// composed requests, one after the other, reach the backend over the two connections the
/// first one opened.
#[tokio::test(flavor = "multi_thread")]
async fn backend_connections_are_reused_across_composed_requests() {
    let peers = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let seen = peers.clone();
    let backend = Backend::start(move |_req, peer| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().insert(peer);
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{\"ok\": true}")))
                .unwrap()
        }
    })
    .await;
    let org = format!(
        "name: pool\nupstreams:\n  b:\n    targets: [\"{}\"]\nroutes:\n  - path: /two\n    upstream: b\n    compose:\n      backend:\n        - {{url_pattern: /x, group: x}}\n        - {{url_pattern: /y, group: y}}\n",
        backend.url()
    );
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/pool.yaml", &org)]);
    for _ in 0..3 {
        let r = get(&gw.url("/two"), None).await;
        assert_eq!(r.text(), r#"{"x":{"ok":true},"y":{"ok":true}}"#);
    }
    let n = peers.lock().unwrap().len();
    assert!(
        n <= 2,
        "{n} connections for 6 calls: answers are not handed back to the pool"
    );
}
