//! Response compression end to end (`compression:`): a real backend answers large JSON and
//! text, whole or streamed; the gateway encodes them by the client's `Accept-Encoding`, and a
//! real client (curl `--compressed`, which reads gzip, br and zstd) gets the backend's bytes
//! back exactly. The answers that must pass untouched (small, an unlisted type, already
//! encoded, `no-transform`, `HEAD`, `304`, a range) do; a gzip answer is decoded for a client
//! without gzip; a paced Server-Sent Events stream through a compressing route still arrives
//! event by event.

mod common_ops;

use common_ops::{dump, gateway_with_org_files, start_gateway};
use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};
use std::time::Duration;
use test_support::http::{Request, Response};
use test_support::http_body_util::combinators::UnsyncBoxBody;
use test_support::http_body_util::{BodyExt, Full, StreamBody};
use test_support::hyper::body::{Body, Bytes, Frame, Incoming};
use test_support::hyper::service::service_fn;
use test_support::hyper_util::rt::{TokioExecutor, TokioIo};
use test_support::{Client, Gateway, Reply, client, eventually, h2c_client, send};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(20);

/// About 120 KiB of JSON: an array of records.
fn large_json() -> String {
    let items: Vec<String> = (0..1500)
        .map(|i| {
            format!(
                r#"{{"id":{i},"name":"customer {i}","email":"c{i}@example.test","active":{},"tags":["retail","eu"]}}"#,
                i % 3 == 0
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// About 90 KiB of text, sent by the backend in pieces without a length.
fn large_text() -> String {
    (0..2000)
        .map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog\n"))
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

type Boxed = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Boxed {
    Full::new(bytes.into()).boxed_unsync()
}

/// A body fed by the test, one frame per message.
struct Fed(mpsc::Receiver<Bytes>);

impl Body for Fed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// The backend: one path per kind of answer. `/events` hands the test the sending end of an
/// event stream; the requests' `Accept-Encoding` are kept, to see what reached the backend.
struct TestBackend {
    url: String,
    streams: mpsc::UnboundedReceiver<mpsc::Sender<Bytes>>,
}

async fn backend() -> TestBackend {
    let (streams_tx, streams) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let json = Bytes::from(large_json());
    let text = large_text();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (streams_tx, json, text) = (streams_tx.clone(), json.clone(), text.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let res = answer(&req, &json, &text, &streams_tx);
                    async move { Ok::<_, Infallible>(res) }
                });
                let _ = test_support::hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestBackend {
        url: format!("http://{addr}"),
        streams,
    }
}

fn answer(
    req: &Request<Incoming>,
    json: &Bytes,
    text: &str,
    streams: &mpsc::UnboundedSender<mpsc::Sender<Bytes>>,
) -> Response<Boxed> {
    let b = Response::builder();
    let path = req.uri().path();
    let res = match path {
        "/json" => b.header("content-type", "application/json").body(full(json.clone())),
        "/text" => {
            // In pieces, without a length: a chunked answer.
            let pieces: Vec<Result<Frame<Bytes>, Infallible>> = text
                .as_bytes()
                .chunks(8000)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            b.header("content-type", "text/plain; charset=utf-8")
                .body(StreamBody::new(futures_util::stream::iter(pieces)).boxed_unsync())
        }
        "/small" => b
            .header("content-type", "application/json")
            .body(full(r#"{"ok":true}"#)),
        "/png" => b.header("content-type", "image/png").body(full(json.clone())),
        "/gzipped" => b
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(full(gzip(json))),
        "/no-transform" => b
            .header("content-type", "application/json")
            .header("cache-control", "public, no-transform")
            .body(full(json.clone())),
        "/vary" => b
            .header("content-type", "application/json")
            .header("vary", "Origin")
            .header("etag", "\"v1\"")
            .body(full(json.clone())),
        "/not-modified" => b.status(304).header("etag", "\"v1\"").body(full(Bytes::new())),
        "/range" => b
            .status(206)
            .header("content-type", "application/json")
            .header("content-range", format!("bytes 0-1999/{}", json.len()))
            .body(full(json.slice(..2000))),
        "/events" => {
            let (tx, rx) = mpsc::channel(1);
            let _ = streams.send(tx);
            b.header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Fed(rx).boxed_unsync())
        }
        _ => b.status(404).body(full(Bytes::new())),
    };
    res.expect("a response")
}

/// Routes: `/c/…` compresses with the organization's defaults, `/gzip-only/…` allows gzip
/// alone, `/plain/…` switches compression off; `/m/…` is the built-in mirror (an answer made in
/// process, without a `Content-Length` header of its own).
fn gateway(backend: &str) -> Gateway {
    let org = format!(
        r#"name: acme
compression:
  min_size: 1KiB
upstreams:
  app:
    targets: ["{backend}"]
  mirror:
    targets: ["mirror://"]
routes:
  - path: /m/{{*rest}}
    upstream: mirror
  - path: /c/{{*rest}}
    upstream: app
    strip_prefix: /c
  - path: /gzip-only/{{*rest}}
    upstream: app
    strip_prefix: /gzip-only
    compression:
      algorithms: [gzip]
  - path: /plain/{{*rest}}
    upstream: app
    strip_prefix: /plain
    compression:
      enabled: false
"#
    );
    start_gateway(
        &gateway_with_org_files("traffic_log:\n  path: traffic.log\n"),
        &[("orgs/acme.yaml", &org)],
    )
}

/// What curl made of an answer.
struct Curled {
    headers: String,
    body: Vec<u8>,
}

impl Curled {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// `curl --compressed` with `accept_encoding` instead of curl's own list (curl still decodes
/// whatever it knows: gzip, br, zstd); `agent` finds the request in the traffic log.
async fn curl(url: String, accept_encoding: &'static str, agent: String) -> Curled {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile_dir();
        let (headers, body) = (dir.join("headers"), dir.join("body"));
        let out = Command::new("curl")
            .args(["-sS", "--compressed", "--max-time", "20", "-A", &agent, "-H"])
            .arg(format!("Accept-Encoding: {accept_encoding}"))
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .arg(&url)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = Curled {
            headers: std::fs::read_to_string(&headers).unwrap_or_default(),
            body: std::fs::read(&body).unwrap_or_default(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        got
    })
    .await
    .expect("curl task")
}

fn tempfile_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cratopus-compression-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A GET with these headers, its body read raw (not decoded).
async fn raw(client: &Client, url: String, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    tokio::time::timeout(DEADLINE, send(client, b.body(Full::new(Bytes::new())).unwrap()))
        .await
        .expect("an answer in time")
}

/// The traffic-log lines written so far.
fn traffic(gw: &Gateway) -> Vec<String> {
    std::fs::read_to_string(gw.path("traffic.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn wait_traffic(gw: &Gateway, needles: &[&str]) -> String {
    let found = eventually(DEADLINE, || async {
        traffic(gw).iter().any(|l| needles.iter().all(|n| l.contains(n)))
    })
    .await;
    assert!(
        found,
        "no traffic-log line with {needles:?}: {:#?}{}",
        traffic(gw),
        dump(gw)
    );
    traffic(gw)
        .into_iter()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_br_and_zstd_are_decoded_by_curl_byte_identical() {
    let b = backend().await;
    let gw = gateway(&b.url);
    for (path, original) in [("/json", large_json()), ("/text", large_text())] {
        for encoding in ["gzip", "br", "zstd"] {
            let agent = format!("curl {path} {encoding}");
            let got = curl(gw.url(&format!("/c{path}")), encoding, agent.clone()).await;
            assert_eq!(
                got.header("content-encoding").as_deref(),
                Some(encoding),
                "{path}: {}{}",
                got.headers,
                dump(&gw)
            );
            assert_eq!(got.header("content-length"), None, "{path} {encoding}");
            assert_eq!(got.header("vary").as_deref(), Some("Accept-Encoding"));
            assert!(
                got.body == original.as_bytes(),
                "{path} {encoding}: {} bytes decoded, {} sent",
                got.body.len(),
                original.len()
            );
            let line = wait_traffic(&gw, &[&agent, &format!("\"compression\":\"{encoding}\"")]).await;
            assert!(line.contains("\"status\":200"), "{line}");
        }
    }
    // The bytes on the wire are far fewer than the backend's.
    let raw_json = raw(&client(), gw.url("/c/json"), &[("accept-encoding", "gzip")]).await;
    assert!(
        raw_json.body.len() < large_json().len() / 4,
        "{} bytes gzip for {}",
        raw_json.body.len(),
        large_json().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_prefers_br_then_zstd_then_gzip_and_honours_q_values() {
    let b = backend().await;
    let gw = gateway(&b.url);
    let c = client();
    let cases: [(&str, Option<&str>, Option<&str>); 12] = [
        ("/c/json", Some("gzip, deflate, br, zstd"), Some("br")),
        ("/c/json", Some("gzip, zstd"), Some("zstd")),
        ("/c/json", Some("deflate, gzip"), Some("gzip")),
        ("/c/json", Some("br;q=0.5, gzip"), Some("gzip")),
        ("/c/json", Some("br;q=0, *"), Some("zstd")),
        ("/c/json", Some("*"), Some("br")),
        ("/c/json", Some("*;q=0"), None),
        ("/c/json", Some("identity"), None),
        ("/c/json", Some("gzip;q=0.4, identity;q=0.9"), None),
        ("/c/json", None, None),
        ("/gzip-only/json", Some("br, zstd, gzip;q=0.1"), Some("gzip")),
        ("/gzip-only/json", Some("br, zstd"), None),
    ];
    for (path, accept, want) in cases {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept-encoding", a)).into_iter().collect();
        let r = raw(&c, gw.url(path), &headers).await;
        assert_eq!(r.status, 200, "{path} {accept:?}{}", dump(&gw));
        assert_eq!(r.header("content-encoding"), want, "{path} with {accept:?}");
        // Whatever was chosen, the answer varies by Accept-Encoding.
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{path} with {accept:?}");
        if want.is_none() {
            assert!(
                r.body == large_json().as_bytes(),
                "{path} with {accept:?}: not the original"
            );
            assert_eq!(
                r.header("content-length"),
                Some(large_json().len().to_string().as_str())
            );
        }
    }
    // A route with compression switched off pays nothing and changes nothing.
    let r = raw(&c, gw.url("/plain/json"), &[("accept-encoding", "gzip, br, zstd")]).await;
    assert_eq!((r.header("content-encoding"), r.header("vary")), (None, None));
    assert!(r.body == large_json().as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_unlisted_no_transform_and_bodiless_answers_pass_as_they_are() {
    let b = backend().await;
    let gw = gateway(&b.url);
    let c = client();
    let ae = ("accept-encoding", "gzip, br, zstd");
    // Under min_size (by Content-Length).
    let r = raw(&c, gw.url("/c/small"), &[ae]).await;
    assert_eq!(
        (r.header("content-encoding"), r.text().as_str()),
        (None, r#"{"ok":true}"#)
    );
    // The mirror's answer, made in process: judged by its length too.
    let r = raw(&c, gw.url("/m/small"), &[ae]).await;
    assert_eq!((r.status, r.header("content-encoding")), (200, None), "{}", dump(&gw));
    let big = Request::post(gw.url("/m/big"))
        .header(ae.0, ae.1)
        .body(Full::new(Bytes::from(large_text())))
        .unwrap();
    let r = send(&c, big).await;
    assert_eq!(r.header("content-encoding"), Some("br"));
    // A type not listed (images are compressed already).
    let r = raw(&c, gw.url("/c/png"), &[ae]).await;
    assert_eq!((r.header("content-encoding"), r.header("vary")), (None, None));
    assert!(r.body == large_json().as_bytes());
    // `Cache-Control: no-transform`.
    let r = raw(&c, gw.url("/c/no-transform"), &[ae]).await;
    assert_eq!(r.header("content-encoding"), None);
    assert!(r.body == large_json().as_bytes());
    // HEAD: the head as the backend sent it, its length included.
    let head = Request::head(gw.url("/c/json"))
        .header(ae.0, ae.1)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&c, head).await;
    assert_eq!(r.status, 200, "{}", dump(&gw));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(
        r.header("content-length"),
        Some(large_json().len().to_string().as_str())
    );
    // 304: no body, nothing to encode, the validator as it was.
    let r = raw(&c, gw.url("/c/not-modified"), &[ae, ("if-none-match", "\"v1\"")]).await;
    assert_eq!(r.status, 304);
    assert_eq!((r.header("content-encoding"), r.header("etag")), (None, Some("\"v1\"")));
    // A range: neither the request with `Range` nor a 206 answer is encoded.
    let r = raw(&c, gw.url("/c/range"), &[ae, ("range", "bytes=0-1999")]).await;
    assert_eq!((r.status, r.header("content-encoding")), (206, None));
    assert_eq!(r.body.len(), 2000);
    let r = raw(&c, gw.url("/c/range"), &[ae]).await;
    assert_eq!((r.status, r.header("content-encoding")), (206, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_answer_is_not_encoded_twice_and_is_gunzipped_for_clients_without_gzip() {
    let b = backend().await;
    let gw = gateway(&b.url);
    let c = client();
    let zipped = gzip(large_json().as_bytes());
    // The client reads gzip: the backend's bytes as they are, even though br is preferred.
    let r = raw(
        &c,
        gw.url("/c/gzipped"),
        &[("accept-encoding", "br, gzip"), ("user-agent", "as-is")],
    )
    .await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(
        r.body == zipped,
        "re-encoded: {} bytes, backend sent {}",
        r.body.len(),
        zipped.len()
    );
    // It does not: decoded on the way, whatever else it accepts.
    for (accept, tag) in [(Some("br"), "t-a"), (None, "t-b"), (Some("gzip;q=0, zstd"), "t-c")] {
        let mut headers: Vec<(&str, &str)> = accept.map(|a| ("accept-encoding", a)).into_iter().collect();
        headers.push(("user-agent", tag));
        let r = raw(&c, gw.url("/c/gzipped"), &headers).await;
        assert_eq!(r.header("content-encoding"), None, "{accept:?}");
        assert_eq!(r.header("content-length"), None, "{accept:?}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert!(r.body == large_json().as_bytes(), "{accept:?}: not decoded");
        wait_traffic(
            &gw,
            &[&format!("\"user_agent\":\"{tag}\""), "\"decompressed\":\"gzip\""],
        )
        .await;
    }
    let line = wait_traffic(&gw, &["\"user_agent\":\"as-is\""]).await;
    assert!(!line.contains("compress"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_is_merged_and_a_strong_etag_weakened() {
    let b = backend().await;
    let gw = gateway(&b.url);
    let r = raw(&client(), gw.url("/c/vary"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let vary: Vec<&str> = r.headers.get_all("vary").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(vary, ["Origin, Accept-Encoding"]);
    assert_eq!(r.header("etag"), Some("W/\"v1\""));
    // Not compressed (the client accepts nothing): the validator stays strong.
    let r = raw(&client(), gw.url("/c/vary"), &[]).await;
    assert_eq!(
        (r.header("vary"), r.header("etag")),
        (Some("Origin, Accept-Encoding"), Some("\"v1\""))
    );
}

/// A stream decoder that keeps what it has decoded so far.
enum Decoder {
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Br(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Decoder {
    fn new(encoding: &str) -> Decoder {
        match encoding {
            "gzip" => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            "br" => Decoder::Br(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
            _ => Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new()).unwrap()),
        }
    }

    /// Feeds `bytes`; all that has been decoded so far.
    fn feed(&mut self, bytes: &[u8]) -> &[u8] {
        match self {
            Decoder::Gzip(d) => {
                d.write_all(bytes).unwrap();
                d.flush().unwrap();
                d.get_mut()
            }
            Decoder::Br(d) => {
                d.write_all(bytes).unwrap();
                d.flush().unwrap();
                d.get_mut()
            }
            Decoder::Zstd(d) => {
                d.write_all(bytes).unwrap();
                d.flush().unwrap();
                d.get_mut()
            }
        }
    }
}

/// Each event is sent only after the client has decoded the one before: an encoder that held
/// bytes back until some size or the end would stall this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_through_a_compressing_route_arrive_one_by_one() {
    let mut b = backend().await;
    let gw = gateway(&b.url);
    // Over HTTP/1.1 (chunked) for each encoding, and over HTTP/2 (DATA frames).
    let runs = [
        (client(), "gzip", "h1"),
        (client(), "br", "h1"),
        (client(), "zstd", "h1"),
        (h2c_client(), "gzip", "h2"),
    ];
    for (c, encoding, version) in runs {
        let agent = format!("sse {encoding} {version}");
        let req = Request::get(gw.url("/c/events"))
            .header("accept", "text/event-stream")
            .header("user-agent", agent.as_str())
            .header("accept-encoding", encoding)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = tokio::time::timeout(DEADLINE, c.request(req))
            .await
            .expect("a head in time")
            .expect("the request");
        assert_eq!(res.status(), 200, "{}", dump(&gw));
        assert_eq!(res.headers()["content-encoding"], encoding);
        let tx = tokio::time::timeout(DEADLINE, b.streams.recv())
            .await
            .expect("the backend got the request")
            .expect("a stream");
        let mut body = res.into_body();
        let mut decoder = Decoder::new(encoding);
        let mut sent = String::new();
        for i in 0..10 {
            let event = format!("id: {i}\nevent: tick\ndata: {{\"n\":{i}}}\n\n");
            sent.push_str(&event);
            tx.send(Bytes::from(event)).await.expect("the gateway reads the stream");
            loop {
                let frame = tokio::time::timeout(DEADLINE, body.frame())
                    .await
                    .unwrap_or_else(|_| panic!("{encoding} {version}: event {i} held back{}", dump(&gw)))
                    .expect("the stream goes on")
                    .expect("a frame");
                let Some(data) = frame.data_ref() else { continue };
                if decoder.feed(data) == sent.as_bytes() {
                    break;
                }
            }
        }
        drop(tx);
        while let Some(frame) = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .expect("the end in time")
        {
            let frame = frame.expect("a clean end");
            if let Some(d) = frame.data_ref() {
                decoder.feed(d);
            }
        }
        assert_eq!(decoder.feed(&[]), sent.as_bytes());
        wait_traffic(&gw, &[&agent, &format!("\"compression\":\"{encoding}\"")]).await;
    }
}

/// `cratopus check` places each bad value of a `compression` section at its line.
#[test]
fn bad_compression_settings_are_reported_at_their_lines() {
    let dir = tempfile_dir();
    let file = dir.join("gateway.yaml");
    std::fs::write(
        &file,
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\norganizations:\n  - name: acme\n    compression:\n      levels:\n        gzip: 12\n    upstreams:\n      app: {targets: [\"mirror://\"]}\n    routes:\n      - path: /a\n        upstream: app\n        compression:\n          algorithms: [br, br]\n          content_types: [json]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cratopus"))
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .expect("run cratopus check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{text}");
    for (line, message) in [
        (
            8,
            "organization `acme`: compression: levels: gzip must be 1 to 9, not 12",
        ),
        (15, "route `/a`: compression: algorithms: `br` is listed twice"),
        (
            16,
            "route `/a`: compression: content_types: `json` is not a media type pattern",
        ),
    ] {
        // `error: <message>`, then ` --> <file>:<line>:<column>`.
        let at = text.lines().position(|l| l.contains(message));
        let place = at.and_then(|i| text.lines().nth(i + 1)).unwrap_or("");
        assert!(
            place.contains(&format!("gateway.yaml:{line}:")),
            "no `{message}` at line {line}:\n{text}"
        );
    }
}
