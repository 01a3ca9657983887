//! Throwaway `redis-server` processes for tests: one standalone server, or a 3-master Redis Cluster.
//!
//! Everything here is synchronous (`std::process`, `std::net`) so that any test, async or not,
//! can use it. Each server gets its own ephemeral port and temp dir, binds `127.0.0.1` only, and
//! persists nothing (`--save '' --appendonly no`), so tests run in parallel with each other and
//! with other projects on the machine. Servers are killed when the value is dropped.
//!
//! Readiness is checked by speaking RESP over a plain TCP socket (`PING` → `+PONG`), so no
//! `redis-cli` is needed; [`command`] sends any command the same way, for assertions on the
//! server's contents (`DBSIZE`, `PTTL`, `CLUSTER INFO` …).
//!
//! Ports: the port is found by binding `127.0.0.1:0` and releasing it, which is racy (another
//! process may take it before redis-server binds). `redis --port 0` is not an option (it means
//! "do not listen"), so instead a start that fails is retried on a fresh port.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer `PING` after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a start is retried on a fresh port when the server exits at once (port taken).
const START_ATTEMPTS: usize = 5;

/// A standalone `redis-server` on an ephemeral loopback port.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`. Panics (with the server's log) if
    /// it cannot be started.
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let mut child = spawn_redis(dir.path(), port, &[]);
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    return RedisServer {
                        child: Some(child),
                        port,
                        dir,
                    };
                }
                Err(e) => {
                    kill(&mut child);
                    last_log = format!("{e}\n{}", read_log(dir.path(), port));
                }
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {last_log}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's working directory (its log is `redis-PORT.log` in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the server with SIGTERM (a clean shutdown that closes every client connection)
    /// and waits until the process has exited. Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                    _ => {
                        kill(&mut child);
                        break;
                    }
                }
            }
        }
    }

    /// Starts the server again on the same port and directory (stopping it first if it runs),
    /// and waits until it answers `PING`. The data set starts empty (nothing is persisted).
    /// Retries for a while if the port is briefly unavailable.
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS * 4 {
            let mut child = spawn_redis(self.dir.path(), self.port, &[]);
            match wait_ready(&mut child, self.port) {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) => {
                    kill(&mut child);
                    last = format!("{e}\n{}", read_log(self.dir.path(), self.port));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        panic!("redis-server did not restart on port {}: {last}", self.port);
    }

    /// Sends one command (see [`command`]).
    pub fn command(&self, args: &[&str]) -> std::io::Result<Reply> {
        command(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }
}

/// A Redis Cluster of three masters (no replicas), all slots assigned and `cluster_state:ok`
/// on every node.
///
/// Built without `redis-cli`: each node gets `CLUSTER SET-CONFIG-EPOCH` and a third of the
/// slots with `CLUSTER ADDSLOTSRANGE`, then the first node `CLUSTER MEET`s the others. The
/// cluster bus port is passed explicitly (`--cluster-port`): the default, port + 10000, does
/// not exist for ephemeral ports above 55535.
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
}

struct ClusterNode {
    child: Child,
    port: u16,
    bus_port: u16,
}

impl RedisCluster {
    /// Starts the three nodes, forms the cluster and waits until every node reports
    /// `cluster_state:ok`. Panics with the nodes' logs on failure.
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir for redis cluster");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(start_cluster_node(dir.path()));
        }
        let cluster = RedisCluster { nodes, dir };
        if let Err(e) = cluster.form() {
            panic!("redis cluster did not form: {e}\n{}", cluster.logs());
        }
        cluster
    }

    fn form(&self) -> Result<(), String> {
        const RANGES: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];
        for (i, (node, (from, to))) in self.nodes.iter().zip(RANGES).enumerate() {
            expect_ok(command(
                node.port,
                &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()],
            ))?;
            expect_ok(command(
                node.port,
                &["CLUSTER", "ADDSLOTSRANGE", &from.to_string(), &to.to_string()],
            ))?;
        }
        let first = self.nodes[0].port;
        for node in &self.nodes[1..] {
            expect_ok(command(
                first,
                &[
                    "CLUSTER",
                    "MEET",
                    "127.0.0.1",
                    &node.port.to_string(),
                    &node.bus_port.to_string(),
                ],
            ))?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &self.nodes {
            loop {
                let info = command(node.port, &["CLUSTER", "INFO"]).map_err(|e| e.to_string())?;
                let known = command(node.port, &["CLUSTER", "NODES"]).map_err(|e| e.to_string())?;
                if info.text().contains("cluster_state:ok") && known.text().lines().count() >= 3 {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("port {}: {}", node.port, info.text()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// `redis://127.0.0.1:PORT` of every master.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The client ports of the masters.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| read_log(self.dir.path(), n.port))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            kill(&mut node.child);
        }
    }
}

fn start_cluster_node(root: &Path) -> ClusterNode {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let bus_port = free_port();
        if bus_port == port {
            continue;
        }
        let node_dir = root.join(port.to_string());
        std::fs::create_dir_all(&node_dir).expect("cluster node dir");
        let nodes_conf = node_dir.join("nodes.conf");
        let extra = [
            "--cluster-enabled".to_string(),
            "yes".to_string(),
            "--cluster-port".to_string(),
            bus_port.to_string(),
            "--cluster-config-file".to_string(),
            nodes_conf.display().to_string(),
            "--cluster-node-timeout".to_string(),
            "5000".to_string(),
        ];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut child = spawn_redis_in(&node_dir, root, port, &extra);
        match wait_ready(&mut child, port) {
            Ok(()) => return ClusterNode { child, port, bus_port },
            Err(e) => {
                kill(&mut child);
                last = format!("{e}\n{}", read_log(root, port));
            }
        }
    }
    panic!("redis cluster node did not start: {last}");
}

fn spawn_redis(dir: &Path, port: u16, extra: &[&str]) -> Child {
    spawn_redis_in(dir, dir, port, extra)
}

/// Spawns redis-server with its data dir `dir` and its log in `log_dir/redis-PORT.log`.
fn spawn_redis_in(dir: &Path, log_dir: &Path, port: u16, extra: &[&str]) -> Child {
    let log = std::fs::File::create(log_path(log_dir, port)).expect("redis log file");
    let log2 = log.try_clone().expect("redis log file");
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .expect("spawn redis-server (is it installed? apt-get install redis-server)")
}

fn log_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("redis-{port}.log"))
}

fn read_log(dir: &Path, port: u16) -> String {
    std::fs::read_to_string(log_path(dir, port)).unwrap_or_default()
}

/// Waits until `PING` on `port` answers `+PONG` from `child` itself (another test's server
/// may have taken a released port); fails early when the process exits (port taken, bad
/// argument).
fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let ours = format!("process_id:{}\r", child.id());
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server on port {port} exited: {status}"));
        }
        if let Ok(reply) = command(port, &["PING"])
            && reply == Reply::Status("PONG".into())
            && command(port, &["INFO", "server"]).is_ok_and(|info| info.text().contains(&ours))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("redis-server on port {port} did not answer PING"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn expect_ok(reply: std::io::Result<Reply>) -> Result<(), String> {
    match reply {
        Ok(Reply::Status(s)) if s == "OK" => Ok(()),
        other => Err(format!("expected OK, got {other:?}")),
    }
}

/// One RESP reply, as far as tests need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR …`
    Error(String),
    Int(i64),
    /// A bulk string; `None` for the nil bulk string.
    Bulk(Option<String>),
    /// An array; `None` for the nil array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: a status, error or bulk string, or an integer in decimal.
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) | Reply::Bulk(Some(s)) => s.clone(),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(None) | Reply::Array(_) => String::new(),
        }
    }

    /// The reply as an integer (an integer reply, or a bulk string holding one).
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            Reply::Bulk(Some(s)) => s.parse().ok(),
            _ => None,
        }
    }
}

/// Sends one command to `127.0.0.1:port` on a fresh connection and reads one reply.
/// Arguments are sent as a RESP array, so they may contain spaces, braces or binary-safe text.
pub fn command(port: u16, args: &[&str]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    stream.write_all(&req)?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("connection closed"));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty reply"))?;
    match kind {
        "+" => Ok(Reply::Status(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => rest.parse().map(Reply::Int).map_err(|_| bad("bad integer")),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad("bad bulk length"))?;
            let Ok(len) = usize::try_from(len) else {
                return Ok(Reply::Bulk(None));
            };
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(len);
            Ok(Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned())))
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad("bad array length"))?;
            let Ok(n) = usize::try_from(n) else {
                return Ok(Reply::Array(None));
            };
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_reply(r)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(bad("unknown reply type")),
    }
}
