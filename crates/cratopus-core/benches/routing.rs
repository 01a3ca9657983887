//! Route matching with 10,000 routes across 100 hosts: Host lookup plus the path/method match,
//! which is what every request pays before its policies run.

use cratopus_core::router::Match;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use std::hint::black_box;
use std::path::Path;

const HOSTS: usize = 100;
const ROUTES_PER_HOST: usize = 100;

fn config() -> String {
    let mut y = String::from("listeners: [{bind: \"127.0.0.1:0\"}]\norganizations:\n");
    for h in 0..HOSTS {
        y.push_str(&format!(
            "  - name: org{h}\n    domains: [api{h}.example.test, \"*.org{h}.example.test\"]\n    upstreams:\n      u:\n        targets: [\"http://127.0.0.1:9\"]\n    routes:\n"
        ));
        for r in 0..ROUTES_PER_HOST {
            // A realistic mix: literal paths, one-parameter paths, catch-alls, method splits.
            match r % 4 {
                0 => y.push_str(&format!("      - {{path: /v1/service{r}/health, upstream: u}}\n")),
                1 => y.push_str(&format!(
                    "      - {{path: \"/v1/service{r}/items/{{id}}\", upstream: u, methods: [GET]}}\n"
                )),
                2 => y.push_str(&format!(
                    "      - {{path: \"/v1/service{r}/users/{{user}}/orders/{{order}}\", upstream: u}}\n"
                )),
                _ => y.push_str(&format!(
                    "      - {{path: \"/v1/service{r}/files/{{*rest}}\", upstream: u}}\n"
                )),
            }
        }
    }
    y
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let loaded = cratopus_config::load_str(Path::new("bench.yaml"), &config()).unwrap();
    let snap = rt.block_on(cratopus_core::compile(loaded, None, 1)).unwrap();
    let requests: Vec<(String, Method, String)> = (0..1000)
        .map(|i| {
            let h = (i * 37) % HOSTS;
            let r = (i * 13) % ROUTES_PER_HOST;
            let host = if i % 2 == 0 {
                format!("api{h}.example.test")
            } else {
                format!("eu.org{h}.example.test:8080")
            };
            let path = match r % 4 {
                0 => format!("/v1/service{r}/health"),
                1 => format!("/v1/service{r}/items/{i}"),
                2 => format!("/v1/service{r}/users/u{i}/orders/{i}"),
                _ => format!("/v1/service{r}/files/a/b/c{i}.txt"),
            };
            (host, Method::GET, path)
        })
        .collect();
    // Every request must match, or the benchmark measures misses.
    for (h, m, p) in &requests {
        let org = snap.org_for_host(h).expect("host");
        assert!(matches!(org.router.find(m, p), Match::Found(..)), "{h} {p}");
    }
    let mut i = 0;
    c.bench_function("route_match_10k_routes_100_hosts", |b| {
        b.iter(|| {
            let (h, m, p) = &requests[i % requests.len()];
            i += 1;
            let org = snap.org_for_host(black_box(h)).expect("host");
            match org.router.find(m, black_box(p)) {
                Match::Found(route, params) => black_box((route.name.len(), params.len())),
                _ => unreachable!(),
            }
        })
    });
    c.bench_function("route_miss_unknown_path", |b| {
        b.iter(|| {
            let org = snap.org_for_host(black_box("api7.example.test")).expect("host");
            black_box(matches!(
                org.router.find(&Method::GET, black_box("/nope/x")),
                Match::NotFound
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
