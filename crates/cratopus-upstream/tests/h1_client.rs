//! The gateway's own HTTP/1.1 upstream client, through the connection pool, against raw TCP
//! backends on loopback that script their bytes: what goes on the wire, how each response
//! framing is read, and when a connection is reused.

use bytes::Bytes;
use cratopus_upstream::conn_pool::{ConnPool, PoolSettings, SendError};
use cratopus_upstream::h1_client::Added;
use cratopus_upstream::{BackendBody, ClientBody, RequestBody};
use http::Request;
use http_body::Body;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(20);

fn pool() -> Arc<ConnPool> {
    ConnPool::new(PoolSettings {
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        max_idle_per_target: 8,
        http2: false,
        tls: None,
    })
}

/// A backend that hands every accepted connection to `serve`, and counts them.
async fn backend<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s));
        }
    });
    (addr, accepted)
}

/// Reads one request head (to its empty line) from `s`, and a body of `Content-Length`
/// bytes or a chunked body to its last chunk; `None` when the connection closed first.
async fn read_request(s: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = find(pending, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end + 4]).to_string();
            let lower = head.to_ascii_lowercase();
            let need = if let Some(n) = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
            {
                end + 4 + n
            } else if lower.contains("transfer-encoding: chunked") {
                // The last chunk (`0`), then its trailers up to an empty line.
                let body = &pending[end + 2..];
                match find(body, b"\r\n0\r\n").and_then(|i| find(&body[i + 3..], b"\r\n\r\n").map(|j| i + 3 + j + 4)) {
                    Some(n) => end + 2 + n,
                    None => usize::MAX,
                }
            } else {
                end + 4
            };
            if pending.len() >= need {
                let whole = String::from_utf8_lossy(&pending[..need]).to_string();
                pending.drain(..need);
                return Some(whole);
            }
        }
        let mut b = [0u8; 4096];
        match tokio::time::timeout(DEADLINE, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => pending.extend_from_slice(&b[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A keep-alive backend that answers every request with `response`, and sends each request it
/// read to `seen`.
async fn scripted(response: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (addr, accepted) = backend(move |mut s| {
        let tx = tx.clone();
        async move {
            let mut pending = Vec::new();
            while let Some(req) = read_request(&mut s, &mut pending).await {
                let _ = tx.send(req);
                if s.write_all(response).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, accepted, rx)
}

fn get(path: &str) -> Request<RequestBody> {
    Request::get(path)
        .header("host", "backend")
        .body(RequestBody::new(ClientBody::Empty, None, None).0)
        .unwrap()
}

async fn send(pool: &Arc<ConnPool>, addr: SocketAddr, req: Request<RequestBody>) -> http::Response<BackendBody> {
    let res = tokio::time::timeout(DEADLINE, pool.send(addr, "backend", req, Added::default()))
        .await
        .expect("an answer in time")
        .unwrap_or_else(|e| panic!("send failed: {e:?}"));
    let (parts, body) = res.into_parts();
    http::Response::from_parts(parts, BackendBody::upstream(body, None, None))
}

/// The body's data and its trailers, if any.
async fn read_body(body: BackendBody) -> (Vec<u8>, Option<http::HeaderMap>) {
    let collected = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("the body in time")
        .expect("a whole body");
    let trailers = collected.trailers().cloned();
    (collected.to_bytes().to_vec(), trailers)
}

#[tokio::test]
async fn the_head_goes_out_as_given_and_a_connection_serves_request_after_request() {
    let (addr, accepted, mut seen) = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello").await;
    let pool = pool();
    for i in 0..3 {
        let res = send(&pool, addr, get(&format!("/n/{i}?q=1"))).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-a"], "1");
        assert_eq!(read_body(res.into_body()).await.0, b"hello");
        let req = seen.recv().await.unwrap();
        assert!(req.starts_with(&format!("GET /n/{i}?q=1 HTTP/1.1\r\n")), "{req}");
        assert!(req.contains("host: backend\r\n"), "{req}");
        // A GET without a body says nothing of a length.
        assert!(!req.to_ascii_lowercase().contains("content-length"), "{req}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one keep-alive connection for all three"
    );
}

#[tokio::test]
async fn request_bodies_are_framed_by_their_length_or_chunked() {
    let (addr, _, mut seen) = scripted(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let pool = pool();
    // A whole body: its length.
    let req = Request::post("/a")
        .body(RequestBody::full(Bytes::from_static(b"abc")))
        .unwrap();
    let res = send(&pool, addr, req).await;
    assert_eq!(res.status(), 204);
    assert!(res.body().is_end_stream());
    let req = seen.recv().await.unwrap();
    assert!(req.contains("content-length: 3\r\n\r\nabc"), "{req}");
    // An empty POST says so.
    let req = Request::post("/b").body(RequestBody::full(Bytes::new())).unwrap();
    let _ = send(&pool, addr, req).await;
    let req = seen.recv().await.unwrap();
    assert!(req.contains("content-length: 0\r\n"), "{req}");
    // A stream of unknown length: chunked, piece by piece, with its trailers.
    let (tx, rx) = mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(4);
    let req = Request::post("/c").body(streamed(rx)).unwrap();
    tokio::spawn(async move {
        for piece in [&b"one"[..], b"two!"] {
            tx.send(Ok(http_body::Frame::data(Bytes::from_static(piece))))
                .await
                .unwrap();
        }
        let mut t = http::HeaderMap::new();
        t.insert("x-sum", "7".parse().unwrap());
        tx.send(Ok(http_body::Frame::trailers(t))).await.unwrap();
    });
    let _ = send(&pool, addr, req).await;
    let req = seen.recv().await.unwrap();
    assert!(
        req.contains("transfer-encoding: chunked\r\n\r\n3\r\none\r\n4\r\ntwo!\r\n0\r\nx-sum: 7\r\n\r\n"),
        "{req:?}"
    );
}

/// The bytes read from `s` up to the end of a request head (and whatever came with it);
/// `None` if the connection closed first.
async fn read_head_only(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut b = vec![0u8; 4096];
    let mut got = Vec::new();
    while find(&got, b"\r\n\r\n").is_none() {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    Some(got)
}

/// A request body of the frames sent on `rx`, of no declared length; it ends when `rx`'s
/// sender is dropped.
fn streamed(rx: mpsc::Receiver<Result<http_body::Frame<Bytes>, std::io::Error>>) -> RequestBody {
    RequestBody::new(
        ClientBody::boxed(http_body_util::StreamBody::new(tokio_stream_of(rx))),
        None,
        None,
    )
    .0
}

/// A stream of frames from a channel, as a body takes them.
fn tokio_stream_of<T>(mut rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_chunked_response_comes_with_its_trailers_and_the_connection_is_reused() {
    let (addr, accepted, _seen) = scripted(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\n",
    )
    .await;
    let pool = pool();
    for _ in 0..2 {
        let res = send(&pool, addr, get("/")).await;
        let (data, trailers) = read_body(res.into_body()).await;
        assert_eq!(data, b"hello world");
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_without_a_length_runs_to_the_close_and_the_connection_is_not_reused() {
    let (addr, accepted) = backend(|mut s| async move {
        let mut pending = Vec::new();
        if read_request(&mut s, &mut pending).await.is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nall of ").await;
            let _ = s.write_all(b"it").await;
        }
    })
    .await;
    let pool = pool();
    for _ in 0..2 {
        let res = send(&pool, addr, get("/")).await;
        assert_eq!(read_body(res.into_body()).await.0, b"all of it");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn interim_responses_are_skipped_and_head_responses_have_no_body() {
    let (addr, accepted, _seen) =
        scripted(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await;
    let pool = pool();
    for _ in 0..2 {
        let req = Request::head("/")
            .body(RequestBody::new(ClientBody::Empty, None, None).0)
            .unwrap();
        let res = send(&pool, addr, req).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-length"], "1000");
        assert!(res.body().is_end_stream());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn chunked_with_a_content_length_is_read_chunked_and_the_connection_closed() {
    let (addr, accepted, _seen) =
        scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .await;
    let pool = pool();
    for _ in 0..2 {
        let res = send(&pool, addr, get("/")).await;
        assert_eq!(read_body(res.into_body()).await.0, b"hello");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bad_response_heads_are_errors() {
    for head in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"NOT HTTP\r\n\r\n",
    ] {
        let (addr, _, _seen) = scripted(head).await;
        let res = tokio::time::timeout(DEADLINE, pool().send(addr, "backend", get("/"), Added::default()))
            .await
            .unwrap();
        assert!(
            matches!(res, Err(SendError::Request(_))),
            "{:?} was taken",
            String::from_utf8_lossy(head)
        );
    }
}

#[tokio::test]
async fn a_body_cut_short_is_an_error() {
    let (addr, _) = backend(|mut s| async move {
        let mut pending = Vec::new();
        if read_request(&mut s, &mut pending).await.is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
        }
    })
    .await;
    let res = send(&pool(), addr, get("/")).await;
    let got = tokio::time::timeout(DEADLINE, res.into_body().collect()).await.unwrap();
    assert!(got.is_err(), "a body 7 bytes short was taken as whole");
}

#[tokio::test]
async fn a_connection_the_target_closed_while_idle_is_not_used() {
    // Answers one request per connection, then closes it without saying so.
    let (addr, accepted) = backend(|mut s| async move {
        let mut pending = Vec::new();
        if read_request(&mut s, &mut pending).await.is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        }
    })
    .await;
    let pool = pool();
    for i in 1..=3 {
        let res = send(&pool, addr, get("/")).await;
        assert_eq!(read_body(res.into_body()).await.0, b"ok");
        // Whether the close was seen at checkout or the request failed on the dead
        // connection and went again, each request gets its answer on a new one.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while accepted.load(Ordering::SeqCst) < i && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), i);
    }
}

/// A backend whose first connection answers one request and then closes on the next one
/// without answering (a close in flight as the pool reuses it); later connections answer all.
async fn closes_on_reuse() -> (SocketAddr, Arc<AtomicUsize>) {
    let first = Arc::new(AtomicUsize::new(0));
    backend(move |mut s| {
        let first = first.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let mut pending = Vec::new();
            let mut answered = 0;
            while read_request(&mut s, &mut pending).await.is_some() {
                if first && answered == 1 {
                    return; // dropped: the request got nothing
                }
                answered += 1;
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn an_idempotent_request_lost_on_a_reused_connection_goes_again_and_a_post_does_not() {
    let (addr, accepted) = closes_on_reuse().await;
    let pool = pool();
    let res = send(&pool, addr, get("/")).await;
    assert_eq!(read_body(res.into_body()).await.0, b"ok");
    // The GET is lost on the reused connection and sent again on a new one.
    let res = send(&pool, addr, get("/")).await;
    assert_eq!(read_body(res.into_body()).await.0, b"ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    let (addr, accepted) = closes_on_reuse().await;
    let pool = self::pool();
    let res = send(&pool, addr, get("/")).await;
    assert_eq!(read_body(res.into_body()).await.0, b"ok");
    // The POST may have been acted on: it is not sent twice.
    let post = Request::post("/pay")
        .body(RequestBody::full(Bytes::from_static(b"1")))
        .unwrap();
    let res = tokio::time::timeout(DEADLINE, pool.send(addr, "backend", post, Added::default()))
        .await
        .unwrap();
    assert!(matches!(res, Err(SendError::Request(_))), "the POST went again");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_early_answer_is_relayed_while_the_upload_is_still_coming() {
    // Refuses the upload after its head, without reading the body, and closes.
    let (addr, _) = backend(|mut s| async move {
        let Some(_) = read_head_only(&mut s).await else { return };
        let _ = s
            .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
            .await;
    })
    .await;
    // The client's body never ends.
    let (_tx, rx) = mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
    let body = streamed(rx);
    let req = Request::post("/upload").body(body).unwrap();
    let res = send(&pool(), addr, req).await;
    assert_eq!(res.status(), 413);
    assert_eq!(read_body(res.into_body()).await.0, b"big!");
}

#[tokio::test]
async fn the_upload_keeps_going_while_the_answer_streams() {
    // Echoes each chunk of the request body as a chunk of its response, as it comes.
    let (addr, _) = backend(|mut s| async move {
        let Some(mut got) = read_head_only(&mut s).await else {
            return;
        };
        let mut b = vec![0u8; 4096];
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        let mut rest = got.split_off(find(&got, b"\r\n\r\n").unwrap() + 4);
        loop {
            // The request's chunks are relayed as they are: framing and all.
            if !rest.is_empty() {
                let done = find(&rest, b"0\r\n\r\n") == Some(0);
                if s.write_all(&rest).await.is_err() || done {
                    return;
                }
                rest.clear();
            }
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest.extend_from_slice(&b[..n]),
            }
        }
    })
    .await;
    let (tx, rx) = mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
    let body = streamed(rx);
    let req = Request::post("/echo").body(body).unwrap();
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"ping"))))
        .await
        .unwrap();
    let res = send(&pool(), addr, req).await;
    let mut body = res.into_body();
    // The first piece comes back before the request body has ended...
    let first = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "ping");
    // ...and the next one is sent while the response is being read.
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"pong"))))
        .await
        .unwrap();
    let second = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.into_data().unwrap(), "pong");
    drop(tx);
    assert!(tokio::time::timeout(DEADLINE, body.frame()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_large_body_goes_through_whole_both_ways() {
    let big: Bytes = (0..300_000u32)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into();
    let expect = big.clone();
    let (addr, _) = backend(move |mut s| {
        let expect = expect.clone();
        async move {
            let mut pending = Vec::new();
            let Some(req) = read_request(&mut s, &mut pending).await else {
                return;
            };
            let body_at = req.find("\r\n\r\n").unwrap() + 4;
            assert_eq!(req.len() - body_at, expect.len());
            let mut res = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", expect.len()).into_bytes();
            res.extend_from_slice(&expect);
            let _ = s.write_all(&res).await;
        }
    })
    .await;
    let req = Request::post("/big").body(RequestBody::full(big.clone())).unwrap();
    let res = send(&pool(), addr, req).await;
    assert_eq!(read_body(res.into_body()).await.0, big);
}
