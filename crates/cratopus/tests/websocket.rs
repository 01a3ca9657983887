//! WebSocket through the gateway over real sockets: a tokio-tungstenite echo server behind it,
//! tokio-tungstenite clients in front (HTTP/1.1 `Upgrade`), and hyper's HTTP/2 client with an
//! extended CONNECT (RFC 8441). The route's policies apply to the handshake; the route's limits
//! close a socket with the right code; a reload keeps open sockets; SIGTERM closes them with
//! 1001; the socket is one traffic-log line at its close and a gauge in `/metrics`.

mod common_ops;

use common_ops::{dump, metrics, read_lines, start_gateway};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use test_support::{Backend, Gateway, eventually, http, hyper, hyper_util};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "admin-token-ws-0123456789";
const MESSAGES: usize = 1000;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket echo server: every text or binary message comes back; a close is answered.
async fn echo_server() -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Backend::from_task(addr, task)
}

/// The organization: one route per case, all to the echo server but `/plain` (an HTTP
/// backend) and `/dead` (nothing listens).
fn org(echo: &Backend, plain: &Backend) -> String {
    format!(
        "name: acme
upstreams:
  echo:
    targets: [\"{echo}\"]
  plain:
    targets: [\"{plain}\"]
  dead:
    targets: [\"http://127.0.0.1:{dead}\"]
    timeouts:
      connect: 1s
routes:
  - name: echo
    path: /echo
    upstream: echo
  - name: framed
    path: /framed
    upstream: echo
    websocket:
      max_message_size: 1KiB
      message_rate: {{per_second: 1000000}}
  - name: small
    path: /small
    upstream: echo
    websocket:
      max_message_size: 64B
  - name: chatty
    path: /chatty
    upstream: echo
    websocket:
      message_rate: {{per_second: 1, burst: 3}}
  - name: idle
    path: /idle
    upstream: echo
    websocket:
      idle_timeout: 300ms
  - name: off
    path: /off
    upstream: echo
    websocket:
      enabled: false
  - name: keyed
    path: /keyed
    upstream: echo
    auth:
      api_key: {{}}
  - name: office
    path: /office
    upstream: echo
    ip:
      deny: [127.0.0.0/8]
  - name: app
    path: /app
    upstream: echo
    cors:
      allow_origins: [\"https://app.example.com\"]
  - name: once
    path: /once
    upstream: echo
    rate_limit:
      limits: [{{rate: 1, per: 1m}}]
  - name: plain
    path: /plain
    upstream: plain
  - name: dead
    path: /dead
    upstream: dead
",
        echo = echo.url(),
        plain = plain.url(),
        dead = test_support::dead_port(),
    )
}

fn gateway_yaml(extra: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: {TOKEN}\n\
         organizations: orgs/*.yaml\nwatch: false\ntraffic_log:\n  path: traffic.log\n{extra}"
    )
}

async fn start() -> (Gateway, Backend, Backend) {
    let echo = echo_server().await;
    let plain = Backend::fixed("plain", "not a socket").await;
    let gw = start_gateway(
        &gateway_yaml("shutdown_timeout: 1s\n"),
        &[("orgs/acme.yaml", &org(&echo, &plain))],
    );
    (gw, echo, plain)
}

fn ws_url(gw: &Gateway, path: &str) -> String {
    format!("ws://{}{path}", gw.addr())
}

/// Opens a socket through the gateway with extra handshake headers.
async fn connect(gw: &Gateway, path: &str, headers: &[(&'static str, &str)]) -> Result<Client, WsError> {
    let mut req = ws_url(gw, path).into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws)
}

/// The status of a refused handshake.
async fn refused(gw: &Gateway, path: &str, headers: &[(&'static str, &str)]) -> u16 {
    match connect(gw, path, headers).await {
        Err(WsError::Http(res)) => res.status().as_u16(),
        Ok(_) => panic!("{path}: the handshake should have been refused"),
        Err(e) => panic!("{path}: {e}"),
    }
}

/// Sends `n` messages (text and binary in turn) and checks each comes back in order.
async fn echo_n<S>(ws: &mut WebSocketStream<S>, n: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for i in 0..n {
        let m = if i % 2 == 0 {
            Message::text(format!("message {i}"))
        } else {
            Message::binary(format!("bytes {i}").into_bytes())
        };
        ws.send(m.clone()).await.unwrap();
        let back = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an echo in time")
            .expect("the socket open")
            .expect("a message");
        assert_eq!(back, m, "message {i}");
    }
}

/// The next close frame's code (messages before it skipped); `None` when the socket ended
/// without one.
async fn close_code<S>(ws: &mut WebSocketStream<S>) -> Option<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let read = async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the socket closed in time")
}

/// The traffic-log line of route `route` with status `status`, once written.
async fn log_line(gw: &Gateway, route: &str, status: u64) -> Value {
    let path = gw.path("traffic.log");
    let find = || {
        read_lines(&path)
            .into_iter()
            .find(|l| l["route"] == route && l["status"] == status)
    };
    assert!(
        eventually(WAIT, || async { find().is_some() }).await,
        "no log line for {route} {status}{}",
        dump(gw)
    );
    find().unwrap()
}

/// The value of the sample `family{org="acme",route="<route>"}` in `/metrics`.
async fn gauge(gw: &Gateway, family: &str, route: &str) -> Option<u64> {
    let text = metrics(gw, TOKEN).await;
    let prefix = format!("{family}{{org=\"acme\",route=\"{route}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_messages_echo_both_ways_over_http1_then_one_log_line_at_close() {
    let (gw, _echo, _plain) = start().await;
    for route in ["echo", "framed"] {
        let mut ws = connect(&gw, &format!("/{route}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{route}: {e}{}", dump(&gw)));
        echo_n(&mut ws, MESSAGES).await;
        // Open now: the gauge says so, and no line is written yet.
        assert_eq!(gauge(&gw, "cratopus_websocket_open", route).await, Some(1), "{route}");
        assert!(
            !read_lines(&gw.path("traffic.log")).iter().any(|l| l["route"] == route),
            "{route}: a socket is logged when it closes"
        );
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        // The close is answered, then the socket ends.
        assert_eq!(close_code(&mut ws).await, Some(1000), "{route}");

        let line = log_line(&gw, route, 101).await;
        let lines = read_lines(&gw.path("traffic.log"));
        assert_eq!(lines.iter().filter(|l| l["route"] == route).count(), 1, "{lines:?}");
        // Copying bytes, the relay knows only which side ended its stream first (in a clean
        // close, the server); reading frames, it saw the client's close.
        let closer = if route == "framed" { "client" } else { "upstream" };
        assert_eq!(line["ws_closed_by"], closer, "{line}");
        assert!(line["ws_duration_ms"].as_f64().unwrap() > 0.0, "{line}");
        assert!(line["bytes_in"].as_u64().unwrap() > 10_000, "{line}");
        assert!(line["bytes_out"].as_u64().unwrap() > 10_000, "{line}");
        if route == "framed" {
            // Only a relay that reads frames knows the code.
            assert_eq!(line["ws_close_code"], 1000, "{line}");
        }
        assert!(
            eventually(WAIT, || async {
                gauge(&gw, "cratopus_websocket_open", route).await == Some(0)
            })
            .await,
            "{route}: the gauge should go down{}",
            metrics(&gw, TOKEN).await
        );
        assert_eq!(gauge(&gw, "cratopus_websocket_opened_total", route).await, Some(1));
        assert!(
            gauge(&gw, "cratopus_websocket_received_bytes_total", route)
                .await
                .unwrap()
                > 10_000
        );
        assert!(gauge(&gw, "cratopus_websocket_sent_bytes_total", route).await.unwrap() > 10_000);
    }
}

/// An HTTP/2 connection to the gateway (h2c) with a WebSocket opened by extended CONNECT.
async fn h2_socket(
    gw: &Gateway,
    path: &str,
) -> Result<WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>, u16> {
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use test_support::http_body_util::Empty;
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    // The server's SETTINGS (which allow extended CONNECT) arrive before the first answer.
    let first = http::Request::get(format!("http://{}/nothing-here", gw.addr()))
        .body(Empty::new())
        .unwrap();
    assert_eq!(send.send_request(first).await.unwrap().status(), 404);
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{}{path}", gw.addr()))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let res = send.send_request(req).await.unwrap();
    if res.status() != 200 {
        return Err(res.status().as_u16());
    }
    let upgraded = hyper::upgrade::on(res).await.unwrap();
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_messages_echo_over_http2_extended_connect() {
    let (gw, _echo, _plain) = start().await;
    for route in ["echo", "framed"] {
        let mut ws = h2_socket(&gw, &format!("/{route}"))
            .await
            .unwrap_or_else(|s| panic!("{route}: {s}{}", dump(&gw)));
        echo_n(&mut ws, MESSAGES).await;
        ws.close(None).await.unwrap();
        close_code(&mut ws).await;
        let line = log_line(&gw, route, 200).await;
        assert!(line["ws_closed_by"].is_string(), "{line}");
        assert_eq!(line["method"], "CONNECT", "{line}");
    }
    // The route's policies apply over HTTP/2 too.
    assert_eq!(h2_socket(&gw, "/keyed").await.err(), Some(401));
    // A backend that does not switch protocols cannot answer a CONNECT with its 200.
    assert_eq!(h2_socket(&gw, "/plain").await.err(), Some(502));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_routes_policies_apply_to_the_handshake() {
    let (gw, _echo, _plain) = start().await;
    assert_eq!(refused(&gw, "/keyed", &[]).await, 401, "{}", dump(&gw));
    assert_eq!(refused(&gw, "/office", &[]).await, 403);
    assert_eq!(refused(&gw, "/app", &[("origin", "https://evil.example")]).await, 403);
    connect(&gw, "/app", &[("origin", "https://app.example.com")])
        .await
        .expect("an allowed origin opens");
    assert_eq!(refused(&gw, "/off", &[]).await, 403);
    connect(&gw, "/once", &[])
        .await
        .expect("the first socket is within the limit");
    assert_eq!(refused(&gw, "/once", &[]).await, 429);
    // A backend that does not switch protocols: its answer as it is; a dead one: 502.
    assert_eq!(refused(&gw, "/plain", &[]).await, 200);
    assert_eq!(refused(&gw, "/dead", &[]).await, 502);
    let line = log_line(&gw, "keyed", 401).await;
    assert!(line.get("ws_closed_by").is_none(), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_routes_limits_close_with_their_codes() {
    let (gw, _echo, _plain) = start().await;

    let mut ws = connect(&gw, "/small", &[]).await.unwrap();
    echo_n(&mut ws, 3).await;
    ws.send(Message::binary(vec![7u8; 100 * 1024])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009), "{}", dump(&gw));
    let line = log_line(&gw, "small", 101).await;
    assert_eq!(line["ws_close_code"], 1009, "{line}");
    assert_eq!(line["ws_closed_by"], "gateway", "{line}");
    assert_eq!(line["ws_close_reason"], "message_too_big", "{line}");

    let mut ws = connect(&gw, "/chatty", &[]).await.unwrap();
    for i in 0..10 {
        if ws.send(Message::text(format!("{i}"))).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut ws).await, Some(1008));
    assert_eq!(log_line(&gw, "chatty", 101).await["ws_close_reason"], "message_rate");

    let mut ws = connect(&gw, "/idle", &[]).await.unwrap();
    echo_n(&mut ws, 2).await;
    assert_eq!(close_code(&mut ws).await, Some(1001));
    assert_eq!(log_line(&gw, "idle", 101).await["ws_close_reason"], "idle");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_an_open_socket() {
    let (gw, _echo, _plain) = start().await;
    let mut copy = connect(&gw, "/echo", &[]).await.unwrap();
    let mut framed = connect(&gw, "/framed", &[]).await.unwrap();
    echo_n(&mut copy, 5).await;
    echo_n(&mut framed, 5).await;
    let n = gw.log_lines_with("config reloaded").len();
    gw.signal("HUP");
    assert!(
        eventually(WAIT, || async { gw.log_lines_with("config reloaded").len() > n }).await,
        "no reload{}",
        dump(&gw)
    );
    echo_n(&mut copy, 5).await;
    echo_n(&mut framed, 5).await;
    assert_eq!(gauge(&gw, "cratopus_websocket_open", "echo").await, Some(1));
    let mut fresh = connect(&gw, "/echo", &[]).await.unwrap();
    echo_n(&mut fresh, 5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_open_sockets_with_1001_after_the_drain_deadline() {
    let (mut gw, _echo, _plain) = start().await;
    let mut copy = connect(&gw, "/echo", &[]).await.unwrap();
    let mut framed = connect(&gw, "/framed", &[]).await.unwrap();
    let mut h2 = h2_socket(&gw, "/framed").await.unwrap();
    echo_n(&mut copy, 3).await;
    echo_n(&mut framed, 3).await;
    echo_n(&mut h2, 3).await;
    gw.signal("TERM");
    // The sockets keep working while the gateway drains.
    assert!(
        eventually(WAIT, || async { !gw.log_lines_with("shutting down").is_empty() }).await,
        "{}",
        dump(&gw)
    );
    echo_n(&mut copy, 3).await;
    assert_eq!(close_code(&mut copy).await, Some(1001), "{}", dump(&gw));
    assert_eq!(close_code(&mut framed).await, Some(1001));
    assert_eq!(close_code(&mut h2).await, Some(1001));
    assert!(
        tokio::task::block_in_place(|| gw.wait_exit(WAIT)).is_some(),
        "the gateway should exit"
    );
    let lines = read_lines(&gw.path("traffic.log"));
    let shut: Vec<_> = lines.iter().filter(|l| l["ws_close_reason"] == "shutdown").collect();
    assert_eq!(shut.len(), 3, "{lines:?}");
    assert!(
        shut.iter()
            .all(|l| l["ws_close_code"] == 1001 && l["ws_closed_by"] == "gateway")
    );
}
