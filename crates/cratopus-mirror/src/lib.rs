//! The mirror: an echo service that answers any request with a JSON description of it
//! (method, path, query, headers, body, client address), so that routing can be tried without
//! a real backend. Routes reach it through `mirror://` targets; `cratopus mirror` serves it alone.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;

/// Largest body the mirror reflects; larger gets 413 (the mirror must buffer to echo).
pub const MAX_ECHO_BODY: usize = 8 * 1024 * 1024;

/// Answers `req` with its JSON echo. `client` is the address the request came from.
pub async fn echo<B>(req: Request<B>, client: SocketAddr) -> Response<Bytes>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_ECHO_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": {"status": 413, "code": "body_too_large",
                    "message": format!("the mirror reflects bodies up to {MAX_ECHO_BODY} bytes")}}),
            );
        }
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": {"status": 400, "code": "bad_body", "message": e.to_string()}}),
            );
        }
    };

    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let v = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            Some(Value::Array(a)) => a.push(v),
            Some(prev) => *prev = Value::Array(vec![prev.take(), v]),
            None => {
                headers.insert(name.as_str().to_string(), v);
            }
        }
    }
    let query = parts.uri.query();
    let mut args = Map::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), Value::String(percent_decode(v)));
        match args.get_mut(&k) {
            Some(Value::Array(a)) => a.push(v),
            Some(prev) => *prev = Value::Array(vec![prev.take(), v]),
            None => {
                args.insert(k, v);
            }
        }
    }
    let (text, b64) = match std::str::from_utf8(&body) {
        Ok(s) => (Value::String(s.to_string()), Value::Null),
        Err(_) => (Value::Null, Value::String(base64(&body))),
    };
    let doc = json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "path": parts.uri.path(),
        "query": query,
        "args": args,
        "http_version": format!("{:?}", parts.version),
        "headers": headers,
        "body": text,
        "body_base64": b64,
        "body_bytes": body.len(),
        "client_addr": client.to_string(),
    });
    json_response(StatusCode::OK, &doc)
}

fn json_response(status: StatusCode, doc: &Value) -> Response<Bytes> {
    let mut bytes = serde_json::to_vec_pretty(doc).unwrap_or_default();
    bytes.push(b'\n');
    let mut res = Response::new(Bytes::from(bytes));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Serves the mirror alone on `listener` until `shutdown` resolves (`cratopus mirror`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| async move {
                Ok::<_, Infallible>(echo(req, peer).await.map(Full::new))
            });
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(error = %e, "mirror connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
        assert_eq!(base64(b"hi!"), "aGkh");
        assert_eq!(base64(b"hi"), "aGk=");
        assert_eq!(base64(b"h"), "aA==");
    }

    #[tokio::test]
    async fn echoes() {
        let req = Request::post("/anything?x=1&x=2&y=%20")
            .header("a", "1")
            .body(Full::new(Bytes::from_static(b"hi")))
            .unwrap();
        let res = echo(req, "127.0.0.1:5555".parse().unwrap()).await;
        assert_eq!(res.status(), 200);
        let body = res.into_body();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/anything");
        assert_eq!(v["args"]["x"], json!(["1", "2"]));
        assert_eq!(v["args"]["y"], " ");
        assert_eq!(v["body"], "hi");
        assert_eq!(v["headers"]["a"], "1");
        assert_eq!(v["client_addr"], "127.0.0.1:5555");
    }
}
