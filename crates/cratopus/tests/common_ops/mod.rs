//! Helpers shared by the balancing, traffic-log and lifecycle tests: backends whose behaviour a
//! test changes while they run, async waits on the gateway's log, and a raw HTTP/1.1 GET from a
//! chosen source address.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use test_support::http::{Request, Response, StatusCode};
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::{Bytes, Incoming};
use test_support::{Backend, Client, Gateway, Reply, eventually, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_cratopus");

/// Path a backend answers with [`Knobs::health_status`] (and does not count as a hit).
pub const HEALTH: &str = "/health";

/// What a test can see and change of a running [`TestBackend`].
#[derive(Debug)]
pub struct Knobs {
    pub name: &'static str,
    /// Status `/health` answers.
    pub health_status: AtomicU16,
    /// Health-check requests received.
    pub health_checks: AtomicUsize,
    /// Other requests that arrived (counted when they arrive).
    pub hits: AtomicUsize,
    /// Other requests answered.
    pub done: AtomicUsize,
    /// How long each request other than `/health` is held before the answer, in ms.
    pub delay_ms: AtomicU64,
    /// Status of the answers other than `/health`.
    pub status: AtomicU16,
}

impl Knobs {
    pub fn new(name: &'static str) -> Arc<Knobs> {
        Arc::new(Knobs {
            name,
            health_status: AtomicU16::new(200),
            health_checks: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            delay_ms: AtomicU64::new(0),
            status: AtomicU16::new(200),
        })
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_health(&self, status: u16) {
        self.health_status.store(status, Ordering::SeqCst);
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }
}

/// A backend answering `200`, header `x-backend: <name>` and body
/// `<name> got <n> bytes` (after reading the whole request body); `/health` answers
/// [`Knobs::health_status`].
pub struct TestBackend {
    pub backend: Backend,
    pub knobs: Arc<Knobs>,
}

impl TestBackend {
    pub async fn start(name: &'static str) -> TestBackend {
        let knobs = Knobs::new(name);
        let backend = serve_knobs("127.0.0.1:0", knobs.clone()).await;
        TestBackend { backend, knobs }
    }

    pub fn addr(&self) -> SocketAddr {
        self.backend.addr
    }

    pub fn url(&self) -> String {
        self.backend.url()
    }
}

/// Serves `knobs` on `addr` (use it to bring a stopped backend back on its old port).
pub async fn serve_knobs(addr: &str, knobs: Arc<Knobs>) -> Backend {
    Backend::start_on(addr, move |req: Request<Incoming>, _peer| {
        let knobs = knobs.clone();
        async move {
            if req.uri().path() == HEALTH {
                knobs.health_checks.fetch_add(1, Ordering::SeqCst);
                let status = StatusCode::from_u16(knobs.health_status.load(Ordering::SeqCst))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Response::builder()
                    .status(status)
                    .header("x-backend", knobs.name)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
            }
            knobs.hits.fetch_add(1, Ordering::SeqCst);
            let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            let delay = knobs.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            knobs.done.fetch_add(1, Ordering::SeqCst);
            Response::builder()
                .status(StatusCode::from_u16(knobs.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK))
                .header("x-backend", knobs.name)
                .body(Full::new(Bytes::from(format!("{} got {n} bytes", knobs.name))))
                .unwrap()
        }
    })
    .await
}

/// Starts a gateway without blocking the runtime's other workers (tests run multi-threaded, so
/// that backends keep answering health checks meanwhile).
pub fn start_gateway(gateway_yaml: &str, files: &[(&str, &str)]) -> Gateway {
    tokio::task::block_in_place(|| Gateway::start(BIN, gateway_yaml, files))
}

/// A gateway.yaml whose organizations are the files `orgs/*.yaml`, plus `extra`.
pub fn gateway_with_org_files(extra: &str) -> String {
    test_support::gateway_yaml("orgs/*.yaml", extra)
}

/// The gateway's log, for assertion messages.
pub fn dump(gw: &Gateway) -> String {
    format!("\n--- gateway log ---\n{}\n-------------------", gw.logs().join("\n"))
}

/// Waits (without blocking the runtime) until `count` log lines contain every one of `needles`.
pub async fn wait_log(gw: &Gateway, needles: &[&str], count: usize, timeout: Duration) -> bool {
    eventually(timeout, || async { count_log(gw, needles) >= count }).await
}

/// Log lines that contain every one of `needles`.
pub fn count_log(gw: &Gateway, needles: &[&str]) -> usize {
    gw.logs()
        .iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// A GET with extra headers over `client`.
pub async fn get_with(client: &Client, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(client, b.body(Full::new(Bytes::new())).unwrap()).await
}

/// `x-backend` of a reply, or `-` when there is none.
pub fn backend_of(r: &Reply) -> String {
    r.header("x-backend").unwrap_or("-").to_string()
}

/// Sends `n` GETs to `url` one after the other and returns the `x-backend` of each, asserting
/// every answer is a 200.
pub async fn backends_of_n(gw: &Gateway, url: &str, n: usize) -> Vec<String> {
    let client = test_support::client();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = get_with(&client, url, &[]).await;
        assert_eq!(r.status, 200, "GET {url}: {}{}", r.text(), dump(gw));
        out.push(backend_of(&r));
    }
    out
}

/// A response read from a raw socket.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on a fresh connection to `to` made from the local address `source` (any of
/// 127.0.0.0/8 works on Linux loopback), with `Connection: close`.
pub async fn get_from(source: IpAddr, to: SocketAddr, path: &str) -> RawReply {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(source, 0))
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    let mut s = sock
        .connect(to)
        .await
        .unwrap_or_else(|e| panic!("connect {source} -> {to}: {e}"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read response");
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    RawReply {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    }
}

/// Runs `f` repeatedly on `tasks` concurrent tasks, each with its own keep-alive client, until
/// `stop` resolves; returns every outcome (`Ok((status, x-backend))` or the error's text).
pub async fn load_until<S>(url: String, tasks: usize, stop: S) -> Vec<Result<(u16, String), String>>
where
    S: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let url = url.clone();
        let stop_rx = stop_rx.clone();
        handles.push(tokio::spawn(async move {
            let client = test_support::client();
            let mut out = Vec::new();
            while !*stop_rx.borrow() {
                let req = Request::get(url.as_str()).body(Full::new(Bytes::new())).unwrap();
                let outcome = match client.request(req).await {
                    Err(e) => Err(format!("{e:?}")),
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let backend = res
                            .headers()
                            .get("x-backend")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string();
                        match res.into_body().collect().await {
                            Ok(_) => Ok((status, backend)),
                            Err(e) => Err(format!("reading the body: {e:?}")),
                        }
                    }
                };
                out.push(outcome);
            }
            out
        }));
    }
    stop.await;
    let _ = stop_tx.send(true);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("load task panicked"));
    }
    all
}

/// How many times each value occurs.
pub fn tally(names: &[String]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for n in names {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m
}

/// Busy threads that keep the machine's cores loaded until dropped: they widen the gateway's
/// race windows so that a test of a race fails reliably rather than once in a while.
pub struct CpuHog {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    pub fn start(threads: usize) -> CpuHog {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                })
            })
            .collect();
        CpuHog { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The stored form of API key `key`, as `cratopus hash-key` prints it.
pub fn hash_key(key: &str) -> String {
    let out = std::process::Command::new(BIN)
        .args(["hash-key", key])
        .output()
        .expect("cratopus hash-key");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

/// Waits up to `wait` for a line with `status` in the gateway's `logs/traffic.log` and returns
/// it.
pub async fn wait_for_status_line(gw: &Gateway, status: u64, wait: Duration) -> serde_json::Value {
    let path = gw.path("logs/traffic.log");
    let found = eventually(wait, || async {
        read_lines(&path).iter().any(|l| l["status"] == status)
    })
    .await;
    assert!(
        found,
        "no line with status {status} in the traffic log: {:?}{}",
        read_lines(&path),
        dump(gw)
    );
    read_lines(&path)
        .into_iter()
        .find(|l| l["status"] == status)
        .expect("found above")
}

/// Every line of the JSON-lines file at `path`, parsed (panics on a line that is not JSON).
pub fn read_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// GET `path` on the admin listener (the gateway's second address) with `token`.
pub async fn admin_get(gw: &Gateway, token: &str, path: &str) -> Reply {
    let req = Request::get(format!("http://{}{path}", gw.addrs()[1]))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&test_support::client(), req).await
}

/// The Prometheus text of the admin API's `/metrics`.
pub async fn metrics(gw: &Gateway, token: &str) -> String {
    admin_get(gw, token, "/metrics").await.text()
}

/// The targets of every upstream, as the admin API's `/api/upstreams` shows them.
pub async fn targets(gw: &Gateway, token: &str) -> Vec<serde_json::Value> {
    let v = admin_get(gw, token, "/api/upstreams").await.json();
    v["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| u["targets"].as_array().unwrap().clone())
        .collect()
}
