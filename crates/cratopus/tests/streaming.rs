//! Server-Sent Events and other long streams end to end: a real backend streams its body frame
//! by frame, paced by the test, and the client must see each frame before the backend sends the
//! next one — so nothing on the way may hold bytes back. A stream outlives the response timeout
//! (which ends with the head); a stream that goes silent is cut after the read timeout; a client
//! that goes away stops the backend's stream.

mod common_ops;

use common_ops::{dump, gateway_with_org_files, start_gateway};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use test_support::http::{Request, Response};
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::{Body, Bytes, Frame, Incoming};
use test_support::hyper::service::service_fn;
use test_support::hyper_util::rt::{TokioExecutor, TokioIo};
use test_support::{Client, Gateway, client, eventually, h2c_client};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(20);

/// A response body fed by the test, one frame per message.
struct Fed(mpsc::Receiver<Bytes>);

impl Body for Fed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// A backend that answers every request with `content_type` and a body the test feeds: each
/// request hands the test the sending end of its body.
async fn streaming_backend(content_type: &'static str) -> (String, mpsc::UnboundedReceiver<mpsc::Sender<Bytes>>) {
    let (streams_tx, streams) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let streams_tx = streams_tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| {
                    let (tx, rx) = mpsc::channel(1);
                    let _ = streams_tx.send(tx);
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", content_type)
                                .header("cache-control", "no-cache")
                                .body(Fed(rx))
                                .unwrap(),
                        )
                    }
                });
                let _ = test_support::hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), streams)
}

fn gateway(backend: &str, route_extra: &str) -> Gateway {
    let org = format!(
        "name: acme\nupstreams:\n  feed:\n    targets: [\"{backend}\"]\nroutes:\n  - path: /events\n    upstream: feed\n{route_extra}"
    );
    start_gateway(
        &gateway_with_org_files("traffic_log:\n  path: traffic.log\n"),
        &[("orgs/acme.yaml", &org)],
    )
}

/// Reads the client's body until it has received `want` in full (frames may be split or
/// joined on the way, but nothing of `want` may be missing); `Err` when the body ended or failed
/// first.
async fn read_until(body: &mut Incoming, got: &mut Vec<u8>, want: &[u8]) -> Result<(), String> {
    while !got.windows(want.len()).any(|w| w == want) {
        match tokio::time::timeout(DEADLINE, body.frame()).await {
            Err(_) => {
                return Err(format!(
                    "nothing for {DEADLINE:?}; so far {:?}",
                    String::from_utf8_lossy(got)
                ));
            }
            Ok(None) => return Err(format!("the body ended; got {:?}", String::from_utf8_lossy(got))),
            Ok(Some(Err(e))) => return Err(format!("the body failed: {e}")),
            Ok(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    got.extend_from_slice(d);
                }
            }
        }
    }
    Ok(())
}

/// The first traffic-log line that contains `needle`, once it has been written.
async fn traffic_line(gw: &Gateway, needle: &str) -> String {
    let path = gw.path("traffic.log");
    let found = eventually(DEADLINE, || {
        let path = path.clone();
        async move {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains(needle))
        }
    })
    .await;
    assert!(found, "no traffic-log line with {needle}\n{}", dump(gw));
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains(needle))
        .map(str::to_string)
        .unwrap_or_default()
}

async fn open(client: &Client, gw: &Gateway) -> test_support::http::Response<Incoming> {
    let req = Request::get(gw.url("/events"))
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))
        .unwrap();
    tokio::time::timeout(DEADLINE, client.request(req))
        .await
        .expect("a response head in time")
        .expect("the request")
}

/// Each event is sent only after the client has received the one before: a gateway that
/// buffered any part of the stream (until some size, or until the end) would stall this test.
async fn events_arrive_one_by_one(client: Client, content_type: &'static str) {
    let (url, mut streams) = streaming_backend(content_type).await;
    let gw = gateway(&url, "");
    let res = open(&client, &gw).await;
    assert_eq!(res.status(), 200, "{}", dump(&gw));
    assert_eq!(res.headers()["content-type"], content_type);
    let tx = tokio::time::timeout(DEADLINE, streams.recv())
        .await
        .expect("the backend got the request")
        .expect("a stream");
    let mut body = res.into_body();
    let mut got = Vec::new();
    let mut relay_times = Vec::new();
    for i in 0..20 {
        let event = format!("id: {i}\nevent: tick\ndata: {{\"n\":{i}}}\n\n");
        let sent = Instant::now();
        tx.send(Bytes::from(event.clone()))
            .await
            .expect("the gateway reads the stream");
        if let Err(e) = read_until(&mut body, &mut got, event.as_bytes()).await {
            panic!(
                "event {i} did not reach the client before the next was sent: {e}\n{}",
                dump(&gw)
            );
        }
        relay_times.push(sent.elapsed());
    }
    drop(tx); // the end of the stream
    while let Some(frame) = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("the end in time")
    {
        frame.expect("a clean end");
    }
    relay_times.sort();
    eprintln!(
        "event relay (backend send → client receive), {content_type}: median {:?}, max {:?}",
        relay_times[relay_times.len() / 2],
        relay_times[relay_times.len() - 1]
    );
    let line = traffic_line(&gw, "\"path\":\"/events\"").await;
    assert!(
        line.contains("\"status\":200") && line.contains("\"error\":null"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_reach_an_http1_client_one_by_one() {
    events_arrive_one_by_one(client(), "text/event-stream").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_reach_an_http2_client_one_by_one() {
    events_arrive_one_by_one(h2c_client(), "text/event-stream").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_feed_of_another_type_is_relayed_chunk_by_chunk() {
    events_arrive_one_by_one(client(), "application/x-ndjson").await;
}

/// The response timeout ends with the head: a stream may go on for many times that long as long
/// as it does not pause past the read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_outlives_the_response_timeout() {
    let (url, mut streams) = streaming_backend("text/event-stream").await;
    let gw = gateway(&url, "    timeout: 200ms\n    read_timeout: 30s\n");
    let res = open(&client(), &gw).await;
    assert_eq!(res.status(), 200, "{}", dump(&gw));
    let tx = streams.recv().await.expect("a stream");
    let mut body = res.into_body();
    let mut got = Vec::new();
    let began = Instant::now();
    let mut i = 0;
    // Events keep coming, each after the last arrived, until the stream has lasted five times
    // the response timeout.
    while began.elapsed() < Duration::from_millis(1000) {
        let event = format!("data: {i}\n\n");
        tx.send(Bytes::from(event.clone())).await.expect("stream open");
        read_until(&mut body, &mut got, event.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", dump(&gw)));
        tokio::time::sleep(Duration::from_millis(50)).await; // lets time pass: the point here
        i += 1;
    }
    drop(tx);
    while let Some(frame) = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("the end in time")
    {
        frame.expect("a clean end, not one cut by the response timeout");
    }
}

/// A stream that goes silent for longer than the read timeout is cut: the client sees the body
/// fail instead of waiting forever, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_is_cut_after_the_read_timeout() {
    let (url, mut streams) = streaming_backend("text/event-stream").await;
    let gw = gateway(&url, "    read_timeout: 300ms\n");
    let res = open(&client(), &gw).await;
    assert_eq!(res.status(), 200, "{}", dump(&gw));
    let tx = streams.recv().await.expect("a stream");
    let mut body = res.into_body();
    let mut got = Vec::new();
    tx.send(Bytes::from_static(b"data: first\n\n"))
        .await
        .expect("stream open");
    read_until(&mut body, &mut got, b"data: first\n\n")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", dump(&gw)));
    // The backend holds its stream open and sends nothing more.
    let end = tokio::time::timeout(DEADLINE, async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) => return "failed",
                None => return "ended",
            }
        }
    })
    .await
    .expect("the gateway cut the silent stream");
    assert_eq!(end, "failed", "a cut stream must not look complete to the client");
    let line = traffic_line(&gw, "upstream_read_timeout").await;
    assert!(line.contains("\"status\":200"), "{line}");
    drop(tx);
}

/// A client that goes away ends the backend's stream too: the gateway does not keep reading
/// (and the backend does not keep producing) for nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_ends_the_backend_stream() {
    let (url, mut streams) = streaming_backend("text/event-stream").await;
    let gw = gateway(&url, "");
    let res = open(&client(), &gw).await;
    let tx = streams.recv().await.expect("a stream");
    let mut body = res.into_body();
    let mut got = Vec::new();
    tx.send(Bytes::from_static(b"data: hello\n\n"))
        .await
        .expect("stream open");
    read_until(&mut body, &mut got, b"data: hello\n\n")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", dump(&gw)));
    drop(body); // the client goes away
    let stopped = eventually(DEADLINE, || {
        // Sends fail once the backend's response body has been dropped, which happens when
        // the gateway closes the upstream connection (a comment line keeps the backend writing,
        // so that it notices).
        let closed = matches!(
            tx.try_send(Bytes::from_static(b": keep-alive\n\n")),
            Err(mpsc::error::TrySendError::Closed(_))
        );
        async move { closed }
    })
    .await;
    assert!(stopped, "the backend is still streaming to nobody\n{}", dump(&gw));
    traffic_line(&gw, "client_closed").await;
}
