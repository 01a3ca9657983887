//! The gRPC health-checking protocol as an active health check (`type: grpc`): a unary call of
//! `grpc.health.v1.Health/Check` over HTTP/2 to the target (h2c, or h2 over TLS), healthy when
//! the call succeeds and answers `SERVING` (grpc/doc/health-checking.md). The two messages are
//! tiny and written with prost's derive, so no `.proto` file is compiled.

use crate::tls::UpstreamTls;
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    /// `ServingStatus`: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

pub const SERVING: i32 = 1;

/// Checks one target over `stream` (TCP, already connected): `Ok` when it answers `SERVING`
/// for `service`.
pub async fn check(
    stream: tokio::net::TcpStream,
    tls: Option<&UpstreamTls>,
    authority: &http::uri::Authority,
    service: &str,
) -> Result<(), String> {
    match tls {
        None => call(stream, "http", authority, service).await,
        Some(tls) => {
            let stream = tls
                .connect(stream, crate::tls::host_of(authority))
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            call(stream, "https", authority, service).await
        }
    }
}

async fn call<S>(stream: S, scheme: &str, authority: &http::uri::Authority, service: &str) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = http::Request::post(format!("{scheme}://{authority}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, "cratopus-health-check")
        .body(Full::new(frame(&HealthCheckRequest {
            service: service.to_string(),
        })))
        .map_err(|e| format!("request: {e}"))?;
    let verdict = match sender.send_request(req).await {
        Ok(res) => judge(res).await,
        Err(e) => Err(format!("request: {e}")),
    };
    conn.abort();
    verdict
}

/// A message in gRPC's framing: not compressed, its length, its bytes.
pub fn frame(msg: &impl Message) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    // Encoding into a buffer with room for the message cannot fail.
    let _ = msg.encode(&mut buf);
    buf.freeze()
}

async fn judge(res: http::Response<hyper::body::Incoming>) -> Result<(), String> {
    if res.status() != http::StatusCode::OK {
        return Err(format!("HTTP status {}", res.status().as_u16()));
    }
    // A Trailers-Only answer carries the status in its head.
    if let Some(code) = crate::grpc::head_status(res.headers()).filter(|c| *c != 0) {
        return Err(format!("grpc-status {code}"));
    }
    let collected = res.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
    let status = collected.trailers().and_then(crate::grpc::head_status);
    let body = collected.to_bytes();
    match status {
        Some(0) => {}
        Some(code) => return Err(format!("grpc-status {code}")),
        None if body.is_empty() => return Err("no grpc-status".to_string()),
        None => return Err("no grpc-status trailer".to_string()),
    }
    let msg = body
        .get(5..)
        .filter(|_| body.first() == Some(&0))
        .ok_or_else(|| "a malformed answer".to_string())?;
    let answer = HealthCheckResponse::decode(msg).map_err(|e| format!("answer: {e}"))?;
    if answer.status == SERVING {
        Ok(())
    } else {
        Err(format!("serving status {}", answer.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_framed() {
        let f = frame(&HealthCheckRequest { service: "a".into() });
        assert_eq!(&f[..], b"\x00\x00\x00\x00\x03\x0a\x01a");
        assert_eq!(&frame(&HealthCheckRequest::default())[..], b"\x00\x00\x00\x00\x00");
    }
}
