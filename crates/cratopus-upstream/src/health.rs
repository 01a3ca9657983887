//! Active health checks: an HTTP request (expected status, and with `read_body` a complete
//! body), a gRPC health check (`grpc_health.rs`) or a TCP connect per target, every interval,
//! on a fresh connection so that a check sees what a new request would see.

use crate::pool::UpstreamPool;
use crate::shared_state::Cause;
use crate::target::{Target, TargetKind};
use crate::tls::UpstreamTls;
use bytes::Bytes;
use cratopus_config::{HealthCheckConfig, HealthCheckKind};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::sync::Arc;

/// Checks every target of `pool` once, concurrently, and records the results.
pub async fn check_all(pool: &Arc<UpstreamPool>, hc: &HealthCheckConfig) {
    let targets = pool.targets().targets.clone();
    let mut set = tokio::task::JoinSet::new();
    for t in targets {
        if matches!(t.kind, TargetKind::Mirror) {
            continue;
        }
        let hc = hc.clone();
        let name = pool.name.clone();
        let tls = pool.tls.clone();
        let pool = pool.clone();
        set.spawn(async move {
            let result = tokio::time::timeout(hc.timeout.0, check(&t, &hc, tls.as_deref())).await;
            let ok = matches!(result, Ok(Ok(())));
            let flip = t.record_check(ok, hc.healthy_threshold, hc.unhealthy_threshold);
            share(&pool, &t, &hc, ok, flip);
            if let Some(now) = flip {
                if now {
                    tracing::info!(upstream = %name, target = %t.label, "target is healthy again");
                } else {
                    let why = match result {
                        Ok(Err(e)) => e,
                        Ok(Ok(())) => String::new(),
                        Err(_) => format!("no answer within {:?}", hc.timeout.0),
                    };
                    tracing::warn!(upstream = %name, target = %t.label, reason = %why, "target is unhealthy, taken out");
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// What a check tells the other nodes of a cluster (`shared_state`): a target that is down
/// renews its lease of three intervals at every failed check; one that comes back is announced
/// up. A passing check of this node also ends another node's mark on the target: a node trusts
/// its own eyes over hearsay.
fn share(pool: &UpstreamPool, t: &Target, hc: &HealthCheckConfig, ok: bool, flip: Option<bool>) {
    let lease = (hc.interval.0 * 3).max(std::time::Duration::from_secs(1));
    if !t.is_healthy() {
        pool.announce(t, true, Cause::Health, lease);
    } else if flip == Some(true) {
        pool.announce(t, false, Cause::Health, lease);
    }
    if ok && t.is_remote_down() {
        t.set_remote_down(None);
        tracing::info!(upstream = %pool.name, target = %t.label, "own health check passes: another node's down mark dropped");
    }
}

async fn check(t: &Target, hc: &HealthCheckConfig, tls: Option<&UpstreamTls>) -> Result<(), String> {
    let TargetKind::Http { addr, authority } = &t.kind else {
        return Ok(());
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match hc.kind {
        HealthCheckKind::Tcp => return Ok(()),
        HealthCheckKind::Grpc => return crate::grpc_health::check(stream, tls, authority, &hc.grpc_service).await,
        HealthCheckKind::Http => {}
    }
    let conn = match tls {
        None => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            (sender, tokio::spawn(async move { conn.await.map(|_| ()) }))
        }
        Some(tls) => {
            let stream = tls
                .connect(stream, crate::tls::host_of(authority))
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                return check_h2(stream, authority, hc).await;
            }
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            (sender, tokio::spawn(async move { conn.await.map(|_| ()) }))
        }
    };
    let (mut sender, conn) = conn;
    let req = http::Request::get(hc.path.as_str())
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, "cratopus-health-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let res = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let verdict = judge(res, hc).await;
    conn.abort();
    verdict
}

/// The status, and with `read_body` the body to its end (read and dropped as it comes, so a
/// large one costs no memory): a target that cuts its answers short is not healthy.
async fn judge(res: http::Response<hyper::body::Incoming>, hc: &HealthCheckConfig) -> Result<(), String> {
    let status = res.status().as_u16();
    let ok = match hc.expect_status {
        Some(s) => status == s,
        None => (200..300).contains(&status),
    };
    if !ok {
        return Err(format!("status {status}"));
    }
    if hc.read_body {
        let mut body = res.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| format!("body: {e}"))?;
        }
    }
    Ok(())
}

/// An `http` check over HTTP/2 (a TLS target that chose ALPN h2).
async fn check_h2<S>(stream: S, authority: &http::uri::Authority, hc: &HealthCheckConfig) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("https://{authority}{}", hc.path))
        .header(http::header::USER_AGENT, "cratopus-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let verdict = match sender.send_request(req).await {
        Ok(res) => judge(res, hc).await,
        Err(e) => Err(format!("request: {e}")),
    };
    conn.abort();
    verdict
}
