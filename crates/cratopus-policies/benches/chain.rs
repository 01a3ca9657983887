//! Enum dispatch against trait objects for a route's policy chain.
//!
//! The chain runs per request; a policy's own work (a CIDR check, a header lookup) is small, so
//! the cost of calling it matters. `enum` is the shipped `Policy::on_request` (a `match`, the
//! futures inlined into the caller's); `dyn` wraps the same policies in a trait object whose
//! `on_request` returns a boxed future, as `async_trait`-style dispatch would.

use cratopus_config::IpRulesConfig;
use cratopus_policies::chain::{Halt, Policy, RequestCx};
use cratopus_policies::ip_rules::IpRules;
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

type Boxed<'a> = Pin<Box<dyn Future<Output = Result<(), Halt>> + Send + 'a>>;

trait DynPolicy: Send + Sync {
    fn on_request<'a>(&'a self, cx: &'a mut RequestCx, req: &'a mut http::request::Parts) -> Boxed<'a>;
}

struct Wrapped(Policy);

impl DynPolicy for Wrapped {
    fn on_request<'a>(&'a self, cx: &'a mut RequestCx, req: &'a mut http::request::Parts) -> Boxed<'a> {
        Box::pin(self.0.on_request(cx, req))
    }
}

fn chain() -> Vec<Policy> {
    let rules = |allow: &[&str]| {
        Policy::IpRules(Arc::new(
            IpRules::compile(&IpRulesConfig {
                allow: allow.iter().map(|s| s.to_string()).collect(),
                deny: vec!["10.9.0.0/16".into()],
            })
            .expect("rules"),
        ))
    };
    vec![
        rules(&["127.0.0.0/8", "10.0.0.0/8"]),
        rules(&["127.0.0.1/32"]),
        Policy::BodyLimit(1 << 20),
        Policy::BodyLimit(1 << 16),
    ]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let id = HeaderValue::from_static("req-1");
    let route: Arc<str> = Arc::from("r");
    let (mut parts, ()) = http::Request::get("/x")
        .header("content-length", "10")
        .body(())
        .expect("request")
        .into_parts();
    let enum_chain = chain();
    let dyn_chain: Vec<Box<dyn DynPolicy>> = chain().into_iter().map(|p| Box::new(Wrapped(p)) as _).collect();

    let mut g = c.benchmark_group("chain_of_4");
    g.bench_function("enum", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut cx = RequestCx::new("127.0.0.1".parse().expect("ip"), id.clone(), route.clone());
                for p in &enum_chain {
                    p.on_request(&mut cx, &mut parts).await.expect("passes");
                }
            })
        })
    });
    g.bench_function("dyn", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut cx = RequestCx::new("127.0.0.1".parse().expect("ip"), id.clone(), route.clone());
                for p in &dyn_chain {
                    p.on_request(&mut cx, &mut parts).await.expect("passes");
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
