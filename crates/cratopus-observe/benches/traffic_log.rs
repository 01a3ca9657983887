//! What formatting one traffic-log line costs the writer thread (a thread that shares the
//! machine's cores with the workers: at 40k requests per second every microsecond here is 4% of
//! a core).

use cratopus_observe::traffic_log::{LogLine, format_line};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

fn line() -> LogLine {
    LogLine {
        ts: UNIX_EPOCH + Duration::from_millis(1_795_442_701_123),
        request_id: http::HeaderValue::from_static("4bf92f3577b34da6a3ce929d0e0e4736"),
        org: Some("bench".into()),
        route: Some("/{*rest}".into()),
        method: Some(http::Method::GET),
        host: Some(http::HeaderValue::from_static("127.0.0.1:18090")),
        uri: Some("/hello".parse().expect("a valid URI")),
        status: 200,
        bytes_in: 0,
        bytes_out: 12,
        upstream: Some("127.0.0.1:18080".into()),
        total_ms: 0.187_345,
        upstream_ms: Some(0.101_2),
        client_ip: "127.0.0.1".parse().expect("an address"),
        user_agent: Some(http::HeaderValue::from_static("wrk/4.2.0")),
        error: None,
        trace_id: Some([0x4b; 16]),
        consumer: None,
        reason: None,
        fields: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let l = line();
    let mut buf = Vec::with_capacity(1024);
    c.bench_function("traffic_log/format_line", |b| {
        b.iter(|| {
            buf.clear();
            format_line(black_box(&l), &mut buf);
            black_box(buf.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
