//! gRPC and gRPC-Web through the gateway, with a real tonic server and client: the four kinds
//! of call with their trailers, the gateway's own errors as gRPC statuses, `grpc-timeout`,
//! retries on a gRPC status, the gRPC health check, and gRPC-Web (binary and text) from an
//! HTTP/1.1 client.
//!
//! No protoc: the one message is written with prost's derive, the server is tonic's generic
//! `tonic::server::Grpc` behind a hand-made router, the client tonic's `tonic::client::Grpc`.

mod common_ops;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common_ops::{dump, start_gateway};
use futures_util::StreamExt;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use test_support::http;
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::{Gateway, eventually, send};
use tonic::codegen::{Service, StdError};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// The one message of the test service: `message Msg { string text = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

fn msg(text: &str) -> Msg {
    Msg { text: text.to_string() }
}

type MsgStream = Pin<Box<dyn futures_util::Stream<Item = Result<Msg, Status>> + Send>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the test server saw and how it behaves.
#[derive(Default)]
struct State {
    /// Unary calls of `flaky` answered UNAVAILABLE before one succeeds.
    unavailable_left: AtomicU32,
    /// Unary calls received.
    calls: AtomicU32,
    /// The `te` header of the last call.
    te: Mutex<Option<String>>,
}

/// A closure as a tower service, which tonic's service traits take.
struct FnSvc<F>(F);

impl<F, Req, Res, Fut> Service<tonic::Request<Req>> for FnSvc<F>
where
    F: FnMut(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Res>, Status>>,
{
    type Response = tonic::Response<Res>;
    type Error = Status;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::Request<Req>) -> Fut {
        (self.0)(req)
    }
}

/// `test.Echo`: Unary, ServerStream, ClientStream and Bidi.
#[derive(Clone)]
struct Echo(Arc<State>);

impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

impl<B> Service<http::Request<B>> for Echo
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let st = self.0.clone();
        Box::pin(async move {
            *st.te.lock().unwrap() = req.headers().get("te").map(|v| v.to_str().unwrap_or("").to_string());
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
            Ok(match req.uri().path() {
                "/test.Echo/Unary" => grpc.unary(FnSvc(move |r| unary(st.clone(), r)), req).await,
                "/test.Echo/ServerStream" => grpc.server_streaming(FnSvc(server_stream), req).await,
                "/test.Echo/ClientStream" => grpc.client_streaming(FnSvc(client_stream), req).await,
                "/test.Echo/Bidi" => grpc.streaming(FnSvc(bidi), req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// Echoes `text`; `fail` fails with a custom trailer, `flaky` is UNAVAILABLE while the state
/// says so, `hang` never answers.
async fn unary(st: Arc<State>, req: tonic::Request<Msg>) -> Result<tonic::Response<Msg>, Status> {
    st.calls.fetch_add(1, Ordering::SeqCst);
    let text = req.into_inner().text;
    match text.as_str() {
        "fail" => {
            let mut md = MetadataMap::new();
            md.insert("x-why", MetadataValue::from_static("custom"));
            Err(Status::with_metadata(Code::NotFound, "nothing here: 100% gone", md))
        }
        "flaky" => {
            let left = st.unavailable_left.load(Ordering::SeqCst);
            if left > 0 {
                st.unavailable_left.store(left - 1, Ordering::SeqCst);
                return Err(Status::unavailable("try again"));
            }
            Ok(tonic::Response::new(msg("flaky:ok")))
        }
        "hang" => std::future::pending().await,
        _ => {
            let mut res = tonic::Response::new(msg(&format!("echo:{text}")));
            res.metadata_mut()
                .insert("x-served-by", MetadataValue::from_static("tonic"));
            Ok(res)
        }
    }
}

/// `n` messages, then the call ends with ABORTED and a custom trailer (after messages: the
/// status travels in real trailers).
async fn server_stream(req: tonic::Request<Msg>) -> Result<tonic::Response<MsgStream>, Status> {
    let n: usize = req.into_inner().text.parse().unwrap_or(1);
    let mut md = MetadataMap::new();
    md.insert("x-trailer", MetadataValue::from_static("after-messages"));
    let items: Vec<Result<Msg, Status>> = (0..n)
        .map(|i| Ok(msg(&format!("item-{i}"))))
        .chain(std::iter::once(Err(Status::with_metadata(
            Code::Aborted,
            "stream over",
            md,
        ))))
        .collect();
    Ok(tonic::Response::new(
        Box::pin(futures_util::stream::iter(items)) as MsgStream
    ))
}

/// Joins every message of the call.
async fn client_stream(req: tonic::Request<tonic::Streaming<Msg>>) -> Result<tonic::Response<Msg>, Status> {
    let mut stream = req.into_inner();
    let mut all = Vec::new();
    while let Some(m) = stream.message().await? {
        all.push(m.text);
    }
    Ok(tonic::Response::new(msg(&all.join("+"))))
}

/// Answers each message as it comes.
async fn bidi(req: tonic::Request<tonic::Streaming<Msg>>) -> Result<tonic::Response<MsgStream>, Status> {
    let out = req.into_inner().map(|m| m.map(|m| msg(&format!("bidi:{}", m.text))));
    Ok(tonic::Response::new(Box::pin(out) as MsgStream))
}

/// A running tonic server: `test.Echo` and `grpc.health.v1.Health`.
struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    health: tonic_health::server::HealthReporter,
    task: tokio::task::JoinHandle<()>,
    /// A plain HTTP/2 server that never answers (tonic's own server would answer a call past
    /// its `grpc-timeout` itself, with CANCELLED, racing the gateway).
    hang: test_support::Backend,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(State::default());
    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_service_status("test.Echo", tonic_health::ServingStatus::Serving)
        .await;
    let router = tonic::transport::Server::builder()
        .add_service(Echo(state.clone()))
        .add_service(health_svc);
    let task = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    let hang = test_support::Backend::start(|_, _| std::future::pending::<http::Response<Full<Bytes>>>()).await;
    Server {
        addr,
        state,
        health,
        task,
        hang,
    }
}

/// A gateway in front of `srv` (h2c), with a route per case.
fn gateway(srv: &Server) -> Gateway {
    let dead = test_support::dead_port();
    let org = format!(
        "name: grpc
    upstreams:
      echo:
        targets: [\"http://{addr}\"]
        protocol: h2c
      checked:
        targets: [\"http://{addr}\"]
        protocol: h2c
        health_check:
          type: grpc
          grpc_service: test.Echo
          interval: 100ms
          timeout: 1s
          unhealthy_threshold: 1
          healthy_threshold: 1
      down:
        targets: [\"http://127.0.0.1:{dead}\"]
        protocol: h2c
      hang:
        targets: [\"http://{hang}\"]
        protocol: h2c
    consumers:
      - id: app
        keys: [\"{key}\"]
    routes:
      - path: /test.Echo/{{*m}}
        upstream: echo
      - path: /rl/{{*m}}
        strip_prefix: /rl
        upstream: echo
        rate_limit: {{limits: [{{rate: 1, per: 1m}}], key: route}}
      - path: /auth/{{*m}}
        strip_prefix: /auth
        upstream: echo
        auth: {{api_key: {{}}}}
      - path: /deny/{{*m}}
        strip_prefix: /deny
        upstream: echo
        ip: {{deny: [127.0.0.1/32]}}
      - path: /down/{{*m}}
        strip_prefix: /down
        upstream: down
      - path: /hang/{{*m}}
        strip_prefix: /hang
        upstream: hang
      - path: /checked/{{*m}}
        strip_prefix: /checked
        upstream: checked
      - path: /retry/{{*m}}
        strip_prefix: /retry
        upstream: echo
        retry: {{attempts: 3, on_grpc: [unavailable], backoff_base: 1ms, backoff_max: 2ms}}
      - path: /web/{{*m}}
        strip_prefix: /web
        upstream: echo
        grpc_web: true
        cors: {{allow_origins: [\"https://app.test\"], allow_headers: [content-type, x-grpc-web, x-user-agent]}}
",
        addr = srv.addr,
        hang = srv.hang.addr,
        key = cratopus_core_hash("secret-key"),
    );
    start_gateway(
        &format!(
            "listeners:\n  - name: http\n    bind: 127.0.0.1:0\ntraffic_log:\n  path: \"-\"\norganizations:\n  - {org}\n"
        ),
        &[],
    )
}

/// The stored form of an API key, as `cratopus hash-key` prints it.
fn cratopus_core_hash(key: &str) -> String {
    let out = std::process::Command::new(common_ops::BIN)
        .args(["hash-key", key])
        .output()
        .expect("cratopus hash-key");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn channel(gw: &Gateway) -> Channel {
    Endpoint::from_shared(gw.url("")).unwrap().connect().await.unwrap()
}

async fn call_unary(ch: &Channel, path: &'static str, text: &str) -> Result<tonic::Response<Msg>, Status> {
    call_unary_with(ch, path, tonic::Request::new(msg(text))).await
}

async fn call_unary_with(
    ch: &Channel,
    path: &'static str,
    req: tonic::Request<Msg>,
) -> Result<tonic::Response<Msg>, Status> {
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready().await.unwrap();
    g.unary(
        req,
        http::uri::PathAndQuery::from_static(path),
        ProstCodec::<Msg, Msg>::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_four_kinds_of_call_pass_with_their_trailers() {
    let srv = server().await;
    let gw = gateway(&srv);
    let ch = channel(&gw).await;

    // Unary: the answer, a header of the server's, and `te: trailers` kept on the way.
    let res = call_unary(&ch, "/test.Echo/Unary", "hi")
        .await
        .unwrap_or_else(|e| panic!("{e:?}{}", dump(&gw)));
    assert_eq!(res.get_ref().text, "echo:hi");
    assert_eq!(res.metadata().get("x-served-by").unwrap(), "tonic");
    assert_eq!(srv.state.te.lock().unwrap().as_deref(), Some("trailers"));

    // A unary error of the server: its status, message and custom metadata arrive as sent.
    let err = call_unary(&ch, "/test.Echo/Unary", "fail").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "nothing here: 100% gone");
    assert_eq!(err.metadata().get("x-why").unwrap(), "custom");

    // Server streaming: three messages, then ABORTED and a custom trailer, in real trailers.
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready().await.unwrap();
    let mut stream = g
        .server_streaming(
            tonic::Request::new(msg("3")),
            http::uri::PathAndQuery::from_static("/test.Echo/ServerStream"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        assert_eq!(stream.message().await.unwrap().unwrap().text, format!("item-{i}"));
    }
    let end = stream.message().await.unwrap_err();
    assert_eq!(end.code(), Code::Aborted, "{end:?}");
    assert_eq!(end.message(), "stream over");
    assert_eq!(end.metadata().get("x-trailer").unwrap(), "after-messages");

    // The traffic log has each call's gRPC status: from the trailers, or from the head of a
    // Trailers-Only answer.
    for (path, status) in [
        ("/test.Echo/ServerStream", 10),
        ("/test.Echo/Unary", 5),
        ("/test.Echo/Unary", 0),
    ] {
        assert!(
            gw.wait_for_log_count(&format!("\"grpc_status\":{status}"), 1, Duration::from_secs(10))
                && gw
                    .logs()
                    .iter()
                    .any(|l| l.contains(path) && l.contains(&format!("\"grpc_status\":{status}"))),
            "{path} {status}: {}",
            dump(&gw)
        );
    }

    // Client streaming: every message reaches the server.
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready().await.unwrap();
    let res = g
        .client_streaming(
            tonic::Request::new(futures_util::stream::iter(vec![msg("a"), msg("b"), msg("c")])),
            http::uri::PathAndQuery::from_static("/test.Echo/ClientStream"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap();
    assert_eq!(res.get_ref().text, "a+b+c");

    // Bidi: each answer comes before the next message is sent (nothing is buffered on the way).
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let outbound = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready().await.unwrap();
    tx.send(msg("one")).await.unwrap();
    let mut inbound = g
        .streaming(
            tonic::Request::new(outbound),
            http::uri::PathAndQuery::from_static("/test.Echo/Bidi"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    for word in ["one", "two", "three"] {
        if word != "one" {
            tx.send(msg(word)).await.unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("an answer per message")
            .unwrap()
            .unwrap();
        assert_eq!(got.text, format!("bidi:{word}"));
    }
    drop(tx);
    assert!(inbound.message().await.unwrap().is_none(), "the call ends OK");
    let trailers = inbound.trailers().await.unwrap().unwrap_or_default();
    assert!(trailers.get("grpc-status").is_none_or(|s| s == "0"), "{trailers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateways_own_errors_are_grpc_statuses() {
    let srv = server().await;
    let gw = gateway(&srv);
    let ch = channel(&gw).await;

    // A rate limit of one a minute: the second call is RESOURCE_EXHAUSTED.
    call_unary(&ch, "/rl/test.Echo/Unary", "x")
        .await
        .unwrap_or_else(|e| panic!("{e:?}{}", dump(&gw)));
    let err = call_unary(&ch, "/rl/test.Echo/Unary", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().starts_with("too many requests"), "{err:?}");

    // No API key: UNAUTHENTICATED; a good one passes.
    let err = call_unary(&ch, "/auth/test.Echo/Unary", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let mut req = tonic::Request::new(msg("k"));
    req.metadata_mut()
        .insert("x-api-key", MetadataValue::from_static("secret-key"));
    assert_eq!(
        call_unary_with(&ch, "/auth/test.Echo/Unary", req)
            .await
            .unwrap()
            .get_ref()
            .text,
        "echo:k"
    );

    // An address the route denies: PERMISSION_DENIED.
    let err = call_unary(&ch, "/deny/test.Echo/Unary", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // A target that refuses connections: UNAVAILABLE.
    let err = call_unary(&ch, "/down/test.Echo/Unary", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // No route: UNIMPLEMENTED.
    let err = call_unary(&ch, "/nothing.Here/Method", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    // The caller's deadline caps the call (the route's timeout is a minute): DEADLINE_EXCEEDED
    // from the gateway. Sent by hand: tonic's client keeps its own timer for `grpc-timeout`,
    // which would race the gateway's.
    let req = http::Request::post(gw.url("/hang/test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .body(Full::new(Bytes::from(frame(&msg("hang")))))
        .unwrap();
    let res = send(&test_support::h2c_client(), req).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("grpc-status"), Some("4"), "{:?}", res.headers);
    assert_eq!(res.header("grpc-message"), Some("the upstream did not answer in time"));

    // The traffic log names the errors.
    for code in [
        "rate_limited",
        "missing_credentials",
        "ip_denied",
        "upstream_unreachable",
        "no_route",
        "upstream_timeout",
    ] {
        assert!(
            gw.wait_for_log(&format!("\"error\":\"{code}\""), Duration::from_secs(10)),
            "{code}: {}",
            dump(&gw)
        );
    }
}

/// The status on the wire, as any gRPC implementation must read it: a Trailers-Only answer.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_is_a_trailers_only_answer() {
    let srv = server().await;
    let gw = gateway(&srv);
    let req = http::Request::post(gw.url("/down/test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let res = send(&test_support::h2c_client(), req).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/grpc"));
    assert_eq!(res.header("grpc-status"), Some("14"));
    assert_eq!(res.header("grpc-message"), Some("the upstream could not be reached"));
    assert!(res.body.is_empty());

    // A plain HTTP request of the same route still gets the JSON error.
    let res = send(
        &test_support::client(),
        http::Request::get(gw.url("/down/x"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, 502);
    assert_eq!(res.json()["error"]["code"], "upstream_unreachable");
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_is_retried_with_the_request_sent_again() {
    let srv = server().await;
    let gw = gateway(&srv);
    let ch = channel(&gw).await;
    srv.state.unavailable_left.store(2, Ordering::SeqCst);
    let res = call_unary(&ch, "/retry/test.Echo/Unary", "flaky")
        .await
        .unwrap_or_else(|e| panic!("{e:?}{}", dump(&gw)));
    assert_eq!(res.get_ref().text, "flaky:ok");
    assert_eq!(srv.state.calls.load(Ordering::SeqCst), 3, "two retries");

    // Without a retry policy the status reaches the client.
    srv.state.unavailable_left.store(1, Ordering::SeqCst);
    let err = call_unary(&ch, "/test.Echo/Unary", "flaky").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), "try again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_health_check_takes_a_target_out_and_puts_it_back() {
    let srv = server().await;
    let gw = gateway(&srv);
    let ch = channel(&gw).await;
    assert_eq!(
        call_unary(&ch, "/checked/test.Echo/Unary", "x")
            .await
            .unwrap()
            .get_ref()
            .text,
        "echo:x"
    );

    srv.health
        .set_service_status("test.Echo", tonic_health::ServingStatus::NotServing)
        .await;
    assert!(
        gw.wait_for_log("target is unhealthy, taken out", Duration::from_secs(15)),
        "{}",
        dump(&gw)
    );
    let err = call_unary(&ch, "/checked/test.Echo/Unary", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(err.message(), "no healthy target in upstream `checked`");
    assert!(
        gw.logs().iter().any(|l| l.contains("serving status 2")),
        "{}",
        dump(&gw)
    );

    srv.health
        .set_service_status("test.Echo", tonic_health::ServingStatus::Serving)
        .await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            call_unary(&ch, "/checked/test.Echo/Unary", "x").await.is_ok()
        })
        .await,
        "{}",
        dump(&gw)
    );
    assert!(gw.wait_for_log("target is healthy again", Duration::from_secs(5)));
}

/// A message in gRPC's framing.
fn frame(m: &Msg) -> Vec<u8> {
    use prost::Message;
    let body = m.encode_to_vec();
    let mut f = vec![0u8];
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(&body);
    f
}

/// Splits a gRPC-Web body into its messages and its trailer block.
fn web_frames(body: &[u8]) -> (Vec<Msg>, String) {
    use prost::Message;
    let (mut msgs, mut trailers, mut rest) = (Vec::new(), String::new(), body);
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = &rest[5..5 + len];
        if rest[0] & 0x80 != 0 {
            trailers = String::from_utf8(payload.to_vec()).unwrap();
        } else {
            msgs.push(Msg::decode(payload).unwrap());
        }
        rest = &rest[5 + len..];
    }
    assert!(rest.is_empty(), "a partial frame");
    (msgs, trailers)
}

/// A gRPC-Web call over HTTP/1.1, as a browser makes it.
async fn web_call(gw: &Gateway, path: &str, content_type: &str, body: Vec<u8>) -> test_support::Reply {
    let req = http::Request::post(gw.url(path))
        .header("content-type", content_type)
        .header("x-grpc-web", "1")
        .header("origin", "https://app.test")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(&test_support::client(), req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_binary_and_text_reach_the_grpc_server() {
    let srv = server().await;
    let gw = gateway(&srv);

    // Binary, unary: the message and a trailer frame with grpc-status 0.
    let res = web_call(
        &gw,
        "/web/test.Echo/Unary",
        "application/grpc-web+proto",
        frame(&msg("web")),
    )
    .await;
    assert_eq!(res.status, 200, "{}", dump(&gw));
    // tonic answers `application/grpc`, which goes back as gRPC-Web's own.
    assert_eq!(res.header("content-type"), Some("application/grpc-web"));
    assert_eq!(res.header("x-served-by"), Some("tonic"));
    let expose = res.header("access-control-expose-headers").unwrap_or("");
    assert!(
        expose.contains("grpc-status") && expose.contains("grpc-message"),
        "{expose}"
    );
    let (msgs, trailers) = web_frames(&res.body);
    assert_eq!(msgs, [msg("echo:web")]);
    assert!(trailers.contains("grpc-status:0\r\n"), "{trailers:?}");
    assert_eq!(srv.state.te.lock().unwrap().as_deref(), Some("trailers"));

    // Text, server streaming: base64 both ways; the custom trailer and the status come back
    // in the body's last frame.
    let res = web_call(
        &gw,
        "/web/test.Echo/ServerStream",
        "application/grpc-web-text",
        STANDARD.encode(frame(&msg("2"))).into_bytes(),
    )
    .await;
    assert_eq!(res.status, 200, "{}", dump(&gw));
    assert_eq!(res.header("content-type"), Some("application/grpc-web-text"));
    // Encoded as it streamed: padded pieces back to back, decoded group by group.
    let text = std::str::from_utf8(&res.body).unwrap();
    let mut raw = Vec::new();
    for group in text.as_bytes().chunks(4) {
        raw.extend(STANDARD.decode(group).unwrap());
    }
    let (msgs, trailers) = web_frames(&raw);
    assert_eq!(msgs, [msg("item-0"), msg("item-1")]);
    assert!(trailers.contains("grpc-status:10\r\n"), "{trailers:?}");
    assert!(trailers.contains("grpc-message:stream%20over\r\n"), "{trailers:?}");
    assert!(trailers.contains("x-trailer:after-messages\r\n"), "{trailers:?}");

    // An error of the server before any message: the status in the head (Trailers-Only).
    let res = web_call(&gw, "/web/test.Echo/Unary", "application/grpc-web", frame(&msg("fail"))).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("grpc-status"), Some("5"));
    assert_eq!(
        res.header("grpc-message"),
        Some("nothing%20here:%20100%25%20gone"),
        "as tonic encoded it"
    );

    // A body that is not base64: the call fails, the gateway stays up.
    let res = web_call(
        &gw,
        "/web/test.Echo/Unary",
        "application/grpc-web-text",
        b"!!!!".to_vec(),
    )
    .await;
    assert_ne!(res.header("grpc-status"), Some("0"), "{res:?}", res = res.headers);
    let res = web_call(
        &gw,
        "/web/test.Echo/Unary",
        "application/grpc-web",
        frame(&msg("again")),
    )
    .await;
    assert_eq!(web_frames(&res.body).0, [msg("echo:again")]);

    // The same route still serves plain gRPC untouched.
    let ch = channel(&gw).await;
    assert_eq!(
        call_unary(&ch, "/web/test.Echo/Unary", "plain")
            .await
            .unwrap()
            .get_ref()
            .text,
        "echo:plain"
    );
}

/// Request trailers pass too (gRPC clients seldom send them; HTTP/2 clients may), over h2c to
/// an h2c target.
#[tokio::test(flavor = "multi_thread")]
async fn request_trailers_reach_the_target() {
    use test_support::http_body_util::{BodyExt, StreamBody};
    use test_support::hyper::body::{Frame, Incoming};
    let target = test_support::Backend::start(|req: http::Request<Incoming>, _| async move {
        let got = req.into_body().collect().await.expect("the request body");
        let trailer = got
            .trailers()
            .and_then(|t| t.get("x-checksum"))
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        http::Response::builder()
            .header("x-seen-trailer", trailer)
            .header("x-seen-len", got.to_bytes().len())
            .body(Full::new(Bytes::new()))
            .unwrap()
    })
    .await;
    let gw = start_gateway(
        &format!(
            "listeners:\n  - name: http\n    bind: 127.0.0.1:0\norganizations:\n  - name: t\n    upstreams:\n      \
             api: {{targets: [\"http://{}\"], protocol: h2c}}\n    routes:\n      - {{path: \"/{{*p}}\", upstream: api}}\n",
            target.addr
        ),
        &[],
    );
    let stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut sender, conn) = test_support::hyper::client::conn::http2::handshake(
        test_support::hyper_util::rt::TokioExecutor::new(),
        test_support::hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", http::HeaderValue::from_static("abc123"));
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"payload"))),
        Ok(Frame::trailers(trailers)),
    ];
    let req = http::Request::post(gw.url("/upload"))
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let res = sender
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{e:?}{}", dump(&gw)));
    assert_eq!(res.status(), 200, "{}", dump(&gw));
    assert_eq!(res.headers()["x-seen-len"], "7");
    assert_eq!(res.headers()["x-seen-trailer"], "abc123");
}

/// The same tonic service over TLS with ALPN `h2`, for `protocol: h2` upstreams.
async fn tls_server(pem: &test_support::tls::Pem) -> Server {
    use test_support::rustls;
    use test_support::rustls::pki_types::pem::PemObject;
    use test_support::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(State::default());
    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_service_status("test.Echo", tonic_health::ServingStatus::Serving)
        .await;
    let routes = tonic::service::Routes::new(Echo(state.clone())).add_service(health_svc);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, routes) = (acceptor.clone(), routes.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let _ = test_support::hyper::server::conn::http2::Builder::new(
                    test_support::hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(
                    test_support::hyper_util::rt::TokioIo::new(tls),
                    test_support::hyper_util::service::TowerToHyperService::new(routes),
                )
                .await;
            });
        }
    });
    let hang = test_support::Backend::start(|_, _| std::future::pending::<http::Response<Full<Bytes>>>()).await;
    Server {
        addr,
        state,
        health,
        task,
        hang,
    }
}

/// gRPC to an `https://` target over h2 (ALPN), and the gRPC health check over the same TLS.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_reaches_an_h2_target_over_tls_and_is_health_checked_there() {
    let ca = test_support::tls::TestCa::new("grpc CA");
    let pem = ca.server(&["grpc.test", "127.0.0.1"], test_support::tls::KeyKind::EcdsaP256);
    let srv = tls_server(&pem).await;
    let org = format!(
        "name: tls
    upstreams:
      api:
        targets: [\"https://127.0.0.1:{port}\"]
        protocol: h2
        tls: {{ca: ca.pem, server_name: grpc.test}}
        health_check: {{type: grpc, grpc_service: test.Echo, interval: 100ms, unhealthy_threshold: 1, healthy_threshold: 1}}
    routes:
      - {{path: \"/test.Echo/{{*m}}\", upstream: api}}
",
        port = srv.addr.port()
    );
    let gw = start_gateway(
        &format!("listeners:\n  - name: http\n    bind: 127.0.0.1:0\norganizations:\n  - {org}\n"),
        &[("ca.pem", &ca.cert_pem)],
    );
    let ch = channel(&gw).await;
    let res = call_unary(&ch, "/test.Echo/Unary", "tls")
        .await
        .unwrap_or_else(|e| panic!("{e:?}{}", dump(&gw)));
    assert_eq!(res.get_ref().text, "echo:tls");
    assert_eq!(srv.state.te.lock().unwrap().as_deref(), Some("trailers"));
    let err = call_unary(&ch, "/test.Echo/Unary", "fail").await.unwrap_err();
    assert_eq!(err.metadata().get("x-why").unwrap(), "custom");

    srv.health
        .set_service_status("test.Echo", tonic_health::ServingStatus::NotServing)
        .await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            call_unary(&ch, "/test.Echo/Unary", "x")
                .await
                .is_err_and(|e| e.code() == Code::Unavailable)
        })
        .await,
        "{}",
        dump(&gw)
    );
    assert!(
        gw.wait_for_log("serving status 2", Duration::from_secs(5)),
        "{}",
        dump(&gw)
    );
}
