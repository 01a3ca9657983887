//! Spans exported over OTLP/HTTP to a real receiver that decodes the protobuf the way a
//! collector does: one server span per sampled request, a client span per upstream call,
//! ids that match `traceparent` and the traffic log, nothing for unsampled requests.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::http::{Request, Response};
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, eventually, send};

const BIN: &str = env!("CARGO_BIN_EXE_cratopus");

/// Spans received, with the `service.name` of their resource.
#[derive(Default)]
struct Received {
    spans: Vec<(String, Span)>,
    paths: Vec<String>,
}

/// An OTLP/HTTP receiver: decodes each POST as an `ExportTraceServiceRequest`.
async fn receiver() -> (Backend, Arc<Mutex<Received>>) {
    let got = Arc::new(Mutex::new(Received::default()));
    let sink = got.clone();
    let backend = Backend::start(move |req: Request<_>, _| {
        let sink = sink.clone();
        async move {
            let path = req.uri().path().to_string();
            let ok_type = req
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/x-protobuf");
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let Ok(export) = ExportTraceServiceRequest::decode(body) else {
                return Response::builder().status(400).body(Full::new(Bytes::new())).unwrap();
            };
            assert!(ok_type, "OTLP/HTTP protobuf content type");
            let mut g = sink.lock().unwrap();
            g.paths.push(path);
            for rs in export.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| string(&kv.value))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        g.spans.push((service.clone(), s));
                    }
                }
            }
            Response::builder()
                .header("content-type", "application/x-protobuf")
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    })
    .await;
    (backend, got)
}

fn string(v: &Option<AnyValue>) -> Option<String> {
    match v.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key == key)
        .and_then(|kv| string(&kv.value))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn org(backend: &Backend) -> String {
    format!(
        "
  - name: shop
    upstreams:
      api:
        targets: [\"{}\"]
    routes:
      - name: item
        path: /items/{{id}}
        upstream: api
",
        backend.url()
    )
}

async fn get_with_traceparent(gw: &Gateway, path: &str, traceparent: Option<&str>) -> test_support::Reply {
    let mut req = Request::get(gw.url(path));
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    send(&test_support::client(), req.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sampled_requests_export_a_server_span_and_an_upstream_span() {
    let (collector, got) = receiver().await;
    // The backend reports the traceparent it received.
    let backend = Backend::start(|req: Request<_>, _| async move {
        let tp = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Response::builder()
            .status(if req.uri().path().ends_with("/boom") { 503 } else { 200 })
            .header("x-seen-traceparent", tp)
            .body(Full::new(Bytes::from_static(b"ok")))
            .unwrap()
    })
    .await;
    let gw = Gateway::start(
        BIN,
        &test_support::gateway_yaml(
            &org(&backend),
            &format!(
                "tracing:\n  sample_ratio: 0.0\n  otlp:\n    endpoint: http://{}\n    service_name: edge-test\n    timeout: 2s\n",
                collector.addr
            ),
        ),
        &[],
    );

    // A caller's sampled trace is continued and exported.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = get_with_traceparent(&gw, "/items/42", Some(parent)).await;
    assert_eq!(r.status, 200);
    let upstream_tp = r.header("x-seen-traceparent").unwrap().to_string();
    let request_id = r.header("x-request-id").unwrap().to_string();
    // An upstream failure (503) marks both spans as errors.
    let r = get_with_traceparent(
        &gw,
        "/items/boom",
        Some("00-11111111111111111111111111111111-2222222222222222-01"),
    )
    .await;
    assert_eq!(r.status, 503);
    // Unsampled: a caller's 00 flags, and a started trace at sample_ratio 0.
    get_with_traceparent(
        &gw,
        "/items/1",
        Some("00-33333333333333333333333333333333-4444444444444444-00"),
    )
    .await;
    get_with_traceparent(&gw, "/items/2", None).await;
    // A gateway error without an upstream call: one server span only.
    let r = get_with_traceparent(
        &gw,
        "/nothing",
        Some("00-55555555555555555555555555555555-6666666666666666-01"),
    )
    .await;
    assert_eq!(r.status, 404);

    // The batch goes out within about a second.
    assert!(
        eventually(Duration::from_secs(10), || async {
            got.lock().unwrap().spans.len() >= 5
        })
        .await,
        "spans received: {}",
        got.lock().unwrap().spans.len()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // anything more would arrive now
    let g = got.lock().unwrap();
    assert!(g.paths.iter().all(|p| p == "/v1/traces"), "{:?}", g.paths);
    assert_eq!(g.spans.len(), 5, "2 + 2 + 1 spans, none for unsampled requests");
    assert!(g.spans.iter().all(|(svc, _)| svc == "edge-test"));
    for (_, s) in &g.spans {
        let tid = hex(&s.trace_id);
        assert!(
            !tid.starts_with("3333") && !tid.starts_with("0000"),
            "unsampled trace exported: {tid}"
        );
    }

    let trace = |t: &str| -> Vec<&Span> {
        g.spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| hex(&s.trace_id) == t)
            .collect()
    };
    let first = trace("4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first.len(), 2);
    let server = first
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    let client = first
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("client span");
    assert_eq!(server.name, "GET /items/{id}");
    assert_eq!(
        hex(&server.parent_span_id),
        "00f067aa0ba902b7",
        "child of the caller's span"
    );
    assert_eq!(
        client.parent_span_id, server.span_id,
        "upstream call is a child of the request"
    );
    assert_eq!(
        upstream_tp,
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", hex(&client.span_id)),
        "the upstream's parent is the exported client span"
    );
    assert_eq!(attr(server, "http.route").as_deref(), Some("/items/{id}"));
    assert_eq!(attr(server, "url.path").as_deref(), Some("/items/42"));
    assert_eq!(attr(server, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(server, "cratopus.route").as_deref(), Some("item"));
    assert_eq!(attr(server, "cratopus.org").as_deref(), Some("shop"));
    assert_eq!(attr(server, "cratopus.request_id"), Some(request_id));
    assert_eq!(attr(client, "cratopus.upstream").as_deref(), Some("api"));
    assert_eq!(attr(client, "server.address"), Some(backend.addr.to_string()));
    assert!(server.start_time_unix_nano <= client.start_time_unix_nano);
    assert!(client.end_time_unix_nano <= server.end_time_unix_nano);
    assert!(client.start_time_unix_nano < client.end_time_unix_nano);
    assert_eq!(server.status.as_ref().map_or(0, |s| s.code), 0, "a 200 is not an error");

    let failed = trace("11111111111111111111111111111111");
    assert_eq!(failed.len(), 2);
    assert!(
        failed.iter().all(|s| s.status.as_ref().is_some_and(|st| st.code == 2)),
        "503 marks errors"
    );

    let unrouted = trace("55555555555555555555555555555555");
    assert_eq!(unrouted.len(), 1);
    assert_eq!(attr(unrouted[0], "error.type").as_deref(), Some("no_route"));
    assert_eq!(attr(unrouted[0], "http.response.status_code").as_deref(), Some("404"));
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_queued_at_shutdown_are_exported_and_a_dead_collector_costs_nothing() {
    // A collector that is down: requests are served as usual, and the failure is logged once.
    let dead = test_support::dead_port();
    let backend = Backend::fixed("b", "ok").await;
    let gw = Gateway::start(
        BIN,
        &test_support::gateway_yaml(
            &org(&backend),
            &format!("tracing:\n  otlp:\n    endpoint: http://127.0.0.1:{dead}/v1/traces\n    timeout: 1s\n"),
        ),
        &[],
    );
    for i in 0..20 {
        assert_eq!(
            get_with_traceparent(&gw, &format!("/items/{i}"), None).await.status,
            200
        );
    }
    assert!(
        gw.wait_for_log("span export failed", Duration::from_secs(10)),
        "{}",
        gw.logs().join("\n")
    );
    drop(gw);

    // With a live collector, SIGTERM right after the requests still delivers their spans.
    let (collector, got) = receiver().await;
    let mut gw = Gateway::start(
        BIN,
        &test_support::gateway_yaml(
            &org(&backend),
            &format!("tracing:\n  otlp:\n    endpoint: http://{}\n", collector.addr),
        ),
        &[],
    );
    for i in 0..3 {
        assert_eq!(
            get_with_traceparent(&gw, &format!("/items/{i}"), None).await.status,
            200
        );
    }
    gw.signal("TERM");
    let status = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "clean exit: {status:?}");
    assert_eq!(got.lock().unwrap().spans.len(), 6, "3 requests, 2 spans each");
}
