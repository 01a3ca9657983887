//! The cost of the GraphQL guard per request: a typical 30-line operation (variables, a named
//! fragment spread twice, an inline fragment, nested lists with `first`) judged against every
//! limit with a few per-field cost rules; the same with an allow-list; an APQ hit that fills in
//! the query and rewrites the body; and, for scale, the parse alone.

use bytes::Bytes;
use cratopus_config::graphql::GraphqlConfig;
use cratopus_policies::chain::{Policy, RequestCx};
use cratopus_policies::graphql::GraphqlGuard;
use cratopus_policies::graphql::analyze::{CostModel, measure};
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::sync::Arc;

const QUERY: &str = r#"query ProductPage($id: ID!, $reviews: Int = 5, $related: Int) {
  product(id: $id) {
    id
    name
    description
    price { amount currency }
    images(first: 4) { url alt }
    seller {
      ...SellerCard
    }
    reviews(first: $reviews) {
      id
      rating
      body
      author { ...UserBadge }
    }
    related(first: $related) {
      ... on Product {
        id
        name
        price { amount currency }
      }
    }
  }
  me { ...UserBadge cartSize: cart { count } }
}

fragment SellerCard on Seller { id name rating }
fragment UserBadge on User { id name avatar(size: 64) }
"#;

fn guard(yaml: &str) -> GraphqlGuard {
    let cfg: GraphqlConfig = serde_saphyr::from_str(yaml).unwrap();
    GraphqlGuard::compile(&cfg, std::path::Path::new(".")).unwrap()
}

const LIMITS: &str = "max_depth: 8\nmax_cost: 5000\nmax_aliases: 10\nmax_root_fields: 5\nintrospection: false\ncost:\n  fields:\n    Query.product: {type: Product}\n    Product.reviews: {type: Review, list: true}\n    Product.related: {type: Product, list: true}\n  types: {Product: 3}\n";

fn bench(c: &mut Criterion) {
    let hex: String = Sha256::digest(QUERY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let plain = Policy::Graphql(Arc::new(guard(LIMITS)));
    let listed = Policy::Graphql(Arc::new(guard(&format!(
        "{LIMITS}persisted_queries: {{allow: [\"{hex}\"]}}\n"
    ))));
    let apq = Policy::Graphql(Arc::new(guard(&format!("{LIMITS}apq: {{}}\n"))));

    let body = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "query": QUERY,
            "operationName": "ProductPage",
            "variables": {"id": "p-42", "related": 8},
        }))
        .unwrap(),
    );
    let ext = serde_json::json!({"persistedQuery": {"version": 1, "sha256Hash": hex}});
    let with_hash = Bytes::from(
        serde_json::to_vec(&serde_json::json!({"query": QUERY, "variables": {"id": "p-42"}, "extensions": ext}))
            .unwrap(),
    );
    let hash_only =
        Bytes::from(serde_json::to_vec(&serde_json::json!({"variables": {"id": "p-42"}, "extensions": ext})).unwrap());
    let req = http::Request::post("/graphql")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let cx = || {
        RequestCx::new(
            "203.0.113.7".parse().unwrap(),
            HeaderValue::from_static("0123456789abcdef"),
            Arc::from("bench"),
        )
    };
    // Store the query once, so that the hash-only request is a hit.
    apq.on_body(&mut cx(), &req, &mut with_hash.clone()).unwrap();

    let mut g = c.benchmark_group("graphql");
    g.bench_function("guard_30_lines", |b| {
        b.iter(|| {
            let mut cx = cx();
            let mut body = body.clone();
            plain.on_body(&mut cx, &req, &mut body).unwrap();
            black_box(cx.log_fields.len())
        })
    });
    g.bench_function("guard_30_lines_allow_list", |b| {
        b.iter(|| {
            let mut cx = cx();
            let mut body = body.clone();
            listed.on_body(&mut cx, &req, &mut body).unwrap();
            black_box(cx.log_fields.len())
        })
    });
    g.bench_function("apq_hit_fills_the_body", |b| {
        b.iter(|| {
            let mut cx = cx();
            let mut body = hash_only.clone();
            apq.on_body(&mut cx, &req, &mut body).unwrap();
            black_box(body.len())
        })
    });
    let model = CostModel::default();
    g.bench_function("parse_and_measure_only", |b| {
        b.iter(|| black_box(measure(black_box(QUERY), Some("ProductPage"), None, &model, 15_000).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
