//! WebSocket echo round trips through the gateway against the same echo server direct, in one
//! interleaved run (`bench/ws.sh` builds and runs it).
//!
//! ```text
//! ws_bench echo 127.0.0.1:9000          # only the echo server (for examples/websocket)
//! ws_bench run <cratopus binary> [conns] [round trips per conn] [rounds] [message bytes]
//! ```
//!
//! `run` starts a tokio-tungstenite echo server in process, a gateway (the given binary, on a
//! free port) with two routes to it — `/copy` (bytes copied) and `/frames` (frames read: a
//! message size and a message rate set high enough never to refuse) — and then, round after
//! round, the same load against each of the three in turn: `conns` sockets at once, each sending
//! a message and waiting for its echo `round trips` times. It prints round trips per second and
//! the p50 / p99 of a round trip for each target, and the gateway's ratio to direct.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("echo") => {
            let addr = args.get(1).map_or("127.0.0.1:9000", String::as_str);
            let listener = TcpListener::bind(addr).await?;
            eprintln!("WebSocket echo server on ws://{}", listener.local_addr()?);
            serve_echo(listener).await;
            Ok(())
        }
        Some("run") => {
            let bin = args
                .get(1)
                .ok_or("usage: ws_bench run <cratopus binary> [conns] [trips] [rounds] [bytes]")?;
            let num = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
            run(bin, num(2, 32), num(3, 2000), num(4, 3), num(5, 64)).await
        }
        _ => {
            Err("usage: ws_bench echo [addr] | ws_bench run <cratopus binary> [conns] [trips] [rounds] [bytes]".into())
        }
    }
}

async fn serve_echo(listener: TcpListener) {
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
}

/// Kills the gateway when the run ends, however it ends.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(bin: &str, conns: usize, trips: usize, rounds: usize, bytes: usize) -> Result<(), BoxError> {
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    tokio::spawn(serve_echo(echo));

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("cratopus-ws-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - name: http\n    bind: 127.0.0.1:{port}\nwatch: false\n\
             organizations:\n  - name: bench\n    upstreams:\n      echo:\n        targets: [\"http://{echo_addr}\"]\n\
             \x20   routes:\n      - path: /copy\n        upstream: echo\n      - path: /frames\n        upstream: echo\n\
             \x20       websocket:\n          max_message_size: 1MiB\n          message_rate: {{per_second: 1000000}}\n"
        ),
    )?;
    let child = Command::new(bin)
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let _gateway = Gateway(child);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(gw).await.is_err() {
        if Instant::now() > deadline {
            return Err("the gateway did not start listening".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let targets = [
        ("direct", format!("ws://{echo_addr}/")),
        ("gateway (copy)", format!("ws://{gw}/copy")),
        ("gateway (frames)", format!("ws://{gw}/frames")),
    ];
    println!("{conns} sockets x {trips} round trips of {bytes} B, {rounds} interleaved rounds; gateway {bin}");
    let mut all: Vec<(Vec<Duration>, Duration)> = vec![(Vec::new(), Duration::ZERO); targets.len()];
    for round in 0..rounds {
        for (i, (name, url)) in targets.iter().enumerate() {
            let (lat, took) = load(url, conns, trips, bytes).await?;
            println!(
                "  round {}: {name:<17} {:>9.0} round trips/s",
                round + 1,
                lat.len() as f64 / took.as_secs_f64()
            );
            all[i].0.extend(lat);
            all[i].1 += took;
        }
    }
    println!(
        "\n{:<17} {:>14} {:>10} {:>10}",
        "target", "round trips/s", "p50 µs", "p99 µs"
    );
    let mut rates = Vec::new();
    for ((name, _), (lat, took)) in targets.iter().zip(&mut all) {
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_micros();
        let rate = lat.len() as f64 / took.as_secs_f64();
        rates.push(rate);
        println!("{name:<17} {rate:>14.0} {:>10} {:>10}", pct(0.50), pct(0.99));
    }
    println!(
        "\ngateway/direct: copy {:.2}, frames {:.2}",
        rates[1] / rates[0],
        rates[2] / rates[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `conns` sockets at once, each doing `trips` sequential round trips; every round trip's time
/// and the wall time of the whole.
async fn load(url: &str, conns: usize, trips: usize, bytes: usize) -> Result<(Vec<Duration>, Duration), BoxError> {
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        sockets.push(ws);
    }
    let started = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let payload = vec![b'x'; bytes];
                let mut lat = Vec::with_capacity(trips);
                for _ in 0..trips {
                    let t = Instant::now();
                    ws.send(Message::binary(payload.clone())).await?;
                    match ws.next().await {
                        Some(Ok(_)) => lat.push(t.elapsed()),
                        _ => return Err::<_, BoxError>("the socket closed mid-run".into()),
                    }
                }
                let _ = ws.close(None).await;
                Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(conns * trips);
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok((lat, started.elapsed()))
}
