//! Test support: a real gateway process on an ephemeral port, real backends, and a client.
//!
//! [`Gateway::start`] writes a config into a temp dir, starts the `cratopus` binary on it with
//! its listener on `127.0.0.1:0`, and reads the chosen address from the gateway's log. Its log
//! lines are kept for assertions ([`Gateway::wait_for_log`]). The process is killed on drop.

pub mod control;
pub mod pebble;
pub mod postgres;
pub mod raw;
pub mod redis;
pub mod tls;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use http;
pub use http_body_util;
pub use hyper;
pub use hyper_util;
pub use rustls;

/// A running gateway process.
pub struct Gateway {
    child: Child,
    addrs: Vec<SocketAddr>,
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

/// Reads a child's stdout and stderr line by line into a shared log (echoed as `[name] line`
/// when `GATEWAY_LOG` is set), and sends the `addr=` of every line containing `listening`.
pub(crate) fn follow_log(
    child: &mut Child,
    name: &'static str,
    listening: &'static str,
) -> (Arc<Mutex<Vec<String>>>, std::sync::mpsc::Receiver<SocketAddr>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    let streams: [Option<Box<dyn std::io::Read + Send>>; 2] = [
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ];
    for stream in streams.into_iter().flatten() {
        let log = log.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if line.contains(listening)
                    && let Some(a) = field(&line, "addr").and_then(|a| a.parse().ok())
                {
                    let _ = tx.send(a);
                }
                if std::env::var_os("GATEWAY_LOG").is_some() {
                    eprintln!("[{name}] {line}");
                }
                log.lock().unwrap().push(line);
            }
        });
    }
    (log, rx)
}

impl Gateway {
    /// Starts `bin run -c <dir>/gateway.yaml` after writing `gateway_yaml` and `files`
    /// (relative paths) into a fresh temp dir. Listeners in the config should bind
    /// `127.0.0.1:0`. Waits until every listener is up.
    pub fn start(bin: &str, gateway_yaml: &str, files: &[(&str, &str)]) -> Gateway {
        Self::start_with_env(bin, gateway_yaml, files, &[])
    }

    pub fn start_with_env(bin: &str, gateway_yaml: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("gateway.yaml"), gateway_yaml).expect("write gateway.yaml");
        for (name, text) in files {
            let p = dir.path().join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(p, text).expect("write config file");
        }
        let listeners = gateway_yaml.matches("bind:").count().max(1);
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("-c")
            .arg(dir.path().join("gateway.yaml"))
            .env("CRATOPUS_LOG", "info,cratopus_upstream=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start cratopus");
        let (log, rx) = follow_log(&mut child, "gateway", "listening");
        let mut addrs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while addrs.len() < listeners {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(a) => addrs.push(a),
                Err(_) => {
                    let _ = child.kill();
                    panic!("gateway did not start; its log:\n{}", log.lock().unwrap().join("\n"));
                }
            }
        }
        Gateway { child, addrs, dir, log }
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// The temp dir holding the config files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Rewrites a config file (atomically, as editors do: write beside, then rename).
    pub fn write_file(&self, name: &str, text: &str) {
        let p = self.path(name);
        let tmp = p.with_extension("tmp~");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &p).expect("rename");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Resident memory of the gateway process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Lines containing `needle`, in order.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.logs().into_iter().filter(|l| l.contains(needle)).collect()
    }

    /// Waits until `count` log lines contain `needle`; false on timeout.
    pub fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_lines_with(needle).len() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_log_count(needle, 1, timeout)
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` from a log line (tracing's plain format).
pub fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_string())
}

/// A backend HTTP server on an ephemeral port, served by `handler` (HTTP/1.1 and h2c).
pub struct Backend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start<F, Fut>(handler: F) -> Backend
    where
        F: Fn(Request<Incoming>, SocketAddr) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        Self::start_on("127.0.0.1:0", handler).await
    }

    pub async fn start_on<F, Fut>(addr: &str, handler: F) -> Backend
    where
        F: Fn(Request<Incoming>, SocketAddr) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req, peer).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend { addr, task }
    }

    /// A backend that answers every request with `200` and `body`, plus an
    /// `x-backend: <name>` header.
    pub async fn fixed(name: &'static str, body: &'static str) -> Backend {
        Backend::start(move |_req, _peer| async move {
            Response::builder()
                .header("x-backend", name)
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap()
        })
        .await
    }

    /// A backend whose accept loop is `task`.
    pub fn from_task(addr: SocketAddr, task: tokio::task::JoinHandle<()>) -> Backend {
        Backend { addr, task }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting; open connections are dropped.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sockets that hold the ports [`dead_port`] gave out, for as long as the tests run.
static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());

/// A loopback port that refuses connections for the rest of the test process: it is bound by a
/// socket that never listens (and does not allow address reuse), so no other server of a test
/// running in parallel can be given it.
pub fn dead_port() -> u16 {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = s.local_addr().expect("addr").port();
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    port
}

/// A loopback port that was free a moment ago, for a server the test starts itself (released,
/// so another server could take it first; use it only when the server cannot bind port 0).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 client with keep-alive.
pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 (prior knowledge, cleartext) client.
pub fn h2c_client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends `req` and reads the whole response.
pub async fn send(client: &Client, req: Request<Full<Bytes>>) -> Reply {
    let res = client.request(req).await.expect("request failed");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("read body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// GET `url` with an optional Host header.
pub async fn get(url: &str, host: Option<&str>) -> Reply {
    let mut b = Request::get(url);
    if let Some(h) = host {
        b = b.header(http::header::HOST, h);
    }
    send(&client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

/// A request with a method, Host and body.
pub async fn request(method: &str, url: &str, host: Option<&str>, body: &'static [u8]) -> Reply {
    let mut b = Request::builder().method(method).uri(url);
    if let Some(h) = host {
        b = b.header(http::header::HOST, h);
    }
    send(&client(), b.body(Full::new(Bytes::from_static(body))).unwrap()).await
}

/// Polls `f` until it returns true; false on timeout.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A minimal gateway.yaml: one listener on an ephemeral port, organizations from `orgs`
/// (a YAML value: a glob string or an inline list), plus `extra` top-level YAML.
pub fn gateway_yaml(orgs: &str, extra: &str) -> String {
    format!("listeners:\n  - name: http\n    bind: 127.0.0.1:0\norganizations: {orgs}\n{extra}\n")
}

/// The JWK of an EC P-256 public key given as PEM (SubjectPublicKeyInfo), for a JWKS that
/// test backends serve.
pub fn ec_jwk(pub_pem: &str, kid: &str) -> serde_json::Value {
    use base64::Engine;
    let b64: String = pub_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).expect("PEM body");
    // The uncompressed point (0x04 || x || y) is the last 65 bytes of a P-256 SPKI.
    let point = &der[der.len() - 65..];
    let url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    serde_json::json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
           "x": url(&point[1..33]), "y": url(&point[33..])})
}
