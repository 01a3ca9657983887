//! The codec's costs (`cargo bench -p cratopus-http1`), with mimalloc as the gateway runs:
//! - `request/*`: parse and frame a typical proxied request (8 fields, a 100-byte body): this
//!   codec, and the same steps hyper 1's server takes (httparse, then a `HeaderMap` of
//!   `HeaderName`/`HeaderValue`s, `Method`, `Uri`; hyper's parser itself is not public);
//! - `pipelined/*`: 64 such requests in one buffer, each answered with a 200 and a small
//!   body: hyper's whole HTTP/1 server over an in-memory duplex, and this codec's parse,
//!   body framing and response head writing (no I/O: a floor, not a like-for-like);
//! - `buffer/*`: a 4 KiB read buffer from the pool or from the allocator.

use bytes::{Bytes, BytesMut};
use cratopus_http1::response::{HeadWriter, ResponseFraming};
use cratopus_http1::{BodyDecoder, Limits, Version, parse_request, pool};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn request() -> Vec<u8> {
    let mut r = b"POST /api/v1/orders?page=2 HTTP/1.1\r\n\
        Host: api.example.com\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench/1.0\r\n\
        Accept: application/json\r\n\
        Accept-Encoding: gzip, br\r\n\
        Content-Type: application/json\r\n\
        Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc\r\n\
        X-Request-Id: 0123456789abcdef0123456789abcdef\r\n\
        Content-Length: 100\r\n\r\n"
        .to_vec();
    r.extend_from_slice(&[b'x'; 100]);
    r
}

fn ours(buf: &[u8], limits: &Limits) -> usize {
    let Ok(Some(head)) = parse_request(buf, limits) else {
        panic!("bench request refused");
    };
    let mut dec = BodyDecoder::new(head.body, limits);
    let step = dec.decode(&buf[head.len..]).unwrap_or_default();
    head.headers.len() + step.data.len()
}

/// What hyper's `Server::parse` does after httparse (proto/h1/role.rs), without its private
/// parts: the header map, the method, the URI, the length.
fn hyper_like(buf: &Bytes) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = req.parse(buf) else {
        panic!("bench request refused");
    };
    let method = http::Method::from_bytes(req.method.unwrap_or_default().as_bytes()).unwrap_or_default();
    let path = req.path.unwrap_or("/");
    let slice = buf.slice(..len);
    let uri = http::Uri::from_maybe_shared(slice.slice_ref(path.as_bytes())).unwrap_or_default();
    let mut map = http::HeaderMap::with_capacity(req.headers.len());
    let mut length = 0;
    for h in req.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).unwrap_or(http::header::WARNING);
        // SAFETY-free: hyper uses from_maybe_shared_unchecked; the checked form costs a scan more.
        let value = http::HeaderValue::from_maybe_shared(slice.slice_ref(h.value))
            .unwrap_or(http::HeaderValue::from_static(""));
        if name == http::header::CONTENT_LENGTH {
            length = value.to_str().ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        }
        map.append(name, value);
    }
    let body = buf.slice(len..len + length);
    black_box((method, uri));
    map.len() + body.len()
}

fn request_bench(c: &mut Criterion) {
    let req = request();
    let bytes = Bytes::from(req.clone());
    let limits = Limits::default();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cratopus_http1", |b| b.iter(|| ours(black_box(&req), &limits)));
    g.bench_function("hyper_like", |b| b.iter(|| hyper_like(black_box(&bytes))));
    // The floor both stand on.
    g.bench_function("httparse_only", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut req = httparse::Request::new(&mut headers);
            let n = req.parse(black_box(&bytes[..]));
            black_box(n.is_ok())
        })
    });
    g.finish();
}

const PIPELINED: usize = 64;

fn pipelined_bench(c: &mut Criterion) {
    let one = request();
    let all: Vec<u8> = one.iter().copied().cycle().take(one.len() * PIPELINED).collect();
    let limits = Limits::default();
    let mut g = c.benchmark_group("pipelined");
    g.throughput(Throughput::Elements(PIPELINED as u64));
    g.bench_function("cratopus_http1", |b| {
        b.iter(|| {
            let mut buf = pool::take_large();
            buf.extend_from_slice(&all);
            let mut out = pool::take();
            let mut served = 0;
            while !buf.is_empty() {
                let Ok(Some(head)) = parse_request(&buf, &limits) else {
                    panic!("bench request refused");
                };
                let keep = head.keep_alive;
                bytes::Buf::advance(&mut buf, head.len);
                let mut dec = BodyDecoder::new(head.body, &limits);
                while !dec.is_done() {
                    match dec.decode_bytes(&mut buf) {
                        Ok(Some(data)) => {
                            black_box(data);
                        }
                        _ => break,
                    }
                }
                let Ok(mut w) = HeadWriter::new(&mut out, 200, None) else {
                    panic!("status refused");
                };
                let _ = w.field(b"content-type", b"text/plain");
                w.finish(ResponseFraming::Length(2), keep, Version::Http11);
                out.extend_from_slice(b"ok");
                served += 1;
                if out.len() > 3000 {
                    out.clear();
                }
            }
            pool::give(buf);
            pool::give(out);
            served
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    g.bench_function("hyper_server", |b| {
        b.iter(|| {
            rt.block_on(async {
                use http_body_util::BodyExt;
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (mut client, server) = tokio::io::duplex(256 * 1024);
                let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    black_box(body);
                    let mut res = http::Response::new(http_body_util::Full::new(Bytes::from_static(b"ok")));
                    res.headers_mut()
                        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
                    Ok::<_, std::convert::Infallible>(res)
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .half_close(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(server), svc);
                let feed = async {
                    let _ = client.write_all(&all).await;
                    let _ = client.shutdown().await;
                    let mut sink = Vec::new();
                    let _ = client.read_to_end(&mut sink).await;
                    sink.len()
                };
                let (_, n) = tokio::join!(conn, feed);
                n
            })
        })
    });
    g.finish();
}

fn buffer_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("buffer");
    g.bench_function("pool_take_give_4k", |b| {
        b.iter(|| {
            let mut buf = pool::take();
            buf.extend_from_slice(black_box(b"GET / HTTP/1.1\r\n"));
            pool::give(black_box(buf));
        })
    });
    g.bench_function("alloc_free_4k", |b| {
        b.iter(|| {
            let mut buf = BytesMut::with_capacity(pool::SMALL);
            buf.extend_from_slice(black_box(b"GET / HTTP/1.1\r\n"));
            drop(black_box(buf));
        })
    });
    // The pattern of a real connection: many buffers out at once (one per busy connection),
    // then all given back.
    g.bench_function("pool_256_out_then_back", |b| {
        b.iter(|| {
            let bufs: Vec<BytesMut> = (0..256).map(|_| pool::take()).collect();
            for buf in bufs {
                pool::give(buf);
            }
        })
    });
    g.bench_function("alloc_256_out_then_back", |b| {
        b.iter(|| {
            let bufs: Vec<BytesMut> = (0..256).map(|_| BytesMut::with_capacity(pool::SMALL)).collect();
            drop(black_box(bufs));
        })
    });
    g.finish();
}

criterion_group!(benches, request_bench, pipelined_bench, buffer_bench);
criterion_main!(benches);
