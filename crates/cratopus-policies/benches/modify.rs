//! The cost of header and query modifiers per request: the two modifiers the bench
//! route carries (a fixed header and a claim), a query rewrite, and the response side
//! (exact and pattern removal, a fixed header).

use cratopus_config::modify::ModifyConfig;
use cratopus_policies::auth::Identity;
use cratopus_policies::modify::{Modifiers, Names, Vars};
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use std::hint::black_box;
use std::sync::Arc;

fn compile(yaml: &str) -> Modifiers {
    let cfg: ModifyConfig = serde_saphyr::from_str(yaml).unwrap();
    let names = Names {
        route: "bench",
        org: "acme",
        env: &|_| None,
    };
    Modifiers::compile(None, Some(&cfg), &names).unwrap()
}

fn bench(c: &mut Criterion) {
    let two = compile("request_headers: {set: {X-Gateway: cratopus, X-User-Id: '{claim.sub}'}}");
    let query = compile("request_query: {remove: [debug], rename: {q: search}, add: {source: gateway}}");
    let response = compile(
        "response_headers: {remove: [Server, X-Powered-By], remove_matching: ['^x-internal-'], set: {X-Gateway: cratopus}}",
    );
    let claims = serde_json::json!({"sub": "user-7", "scope": "a b"});
    let identity = Identity {
        consumer: None,
        claims: serde_json::from_value(claims).ok().map(Arc::new),
    };
    let rid = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let vars = Vars {
        client: "203.0.113.7".parse().unwrap(),
        request_id: &rid,
        identity: Some(&identity),
        params: &[],
    };
    let req = http::Request::builder()
        .uri("/items?q=tea&debug=1&page=2")
        .header("host", "api.test")
        .header("user-agent", "bench/1")
        .header("accept", "*/*")
        .header("authorization", "Bearer x.y.z")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let res = http::Response::builder()
        .header("server", "nginx")
        .header("content-type", "application/json")
        .header("content-length", "20")
        .header("x-internal-trace", "abc")
        .header("date", "Sun, 06 Dec 2026 22:00:00 GMT")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let mut g = c.benchmark_group("modify");
    g.bench_function("clone_request_baseline", |b| {
        b.iter(|| black_box(req.headers.clone()));
    });
    g.bench_function("request_two_headers", |b| {
        b.iter_batched_ref(
            || req.clone_parts(),
            |r| two.on_request(&vars, r),
            criterion::BatchSize::SmallInput,
        );
    });
    g.bench_function("request_query", |b| {
        b.iter_batched_ref(
            || req.clone_parts(),
            |r| query.on_request(&vars, r),
            criterion::BatchSize::SmallInput,
        );
    });
    g.bench_function("response_headers", |b| {
        b.iter_batched_ref(
            || res.clone_parts(),
            |r| response.on_response(&vars, r),
            criterion::BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// `Parts` is not `Clone`; a copy of what the modifiers read and write.
trait CloneParts {
    fn clone_parts(&self) -> Self;
}

impl CloneParts for http::request::Parts {
    fn clone_parts(&self) -> Self {
        let mut p = http::Request::new(()).into_parts().0;
        p.method = self.method.clone();
        p.uri = self.uri.clone();
        p.headers = self.headers.clone();
        p
    }
}

impl CloneParts for http::response::Parts {
    fn clone_parts(&self) -> Self {
        let mut p = http::Response::new(()).into_parts().0;
        p.status = self.status;
        p.headers = self.headers.clone();
        p
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
