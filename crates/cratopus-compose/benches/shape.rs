//! The per-request cost of composition on a typical answer of about 2 KiB: shaping alone
//! (target + allow + mapping + group, the brief's case), a flatmap over an array, and the whole
//! path of one backend (decode, shape, merge, encode as JSON).
//!
//! `cargo bench -p cratopus-compose --bench shape`

use cratopus_compose::Endpoint;
use cratopus_compose::config::{ComposeBackendConfig, ComposeEndpointConfig};
use cratopus_compose::shape::Shaper;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use std::hint::black_box;

/// A user-service answer of about 2 KiB.
fn answer() -> Vec<u8> {
    let orders: Vec<Value> = (0..16)
        .map(|i| json!({"id": 1000 + i, "total": 12.5 * i as f64, "currency": "EUR", "status": "shipped", "items": i % 3 + 1}))
        .collect();
    let body = json!({
        "status": "ok",
        "request_id": "5f1c7e2a-9a0b-4c1e-8d3f-2b7a6c9e0d41",
        "meta": {"version": "2.3.1", "region": "eu-west-1", "cached": false, "took_ms": 12},
        "data": {
            "user": {
                "id": 42, "name": "Alice Example", "email": "alice@example.com", "city": "Barcelona",
                "country": "ES", "phone": "+34 600 000 000", "created_at": "2019-03-01T10:00:00Z",
                "address": {"street": "Carrer de Mallorca 401", "zip": "08013", "floor": "3", "door": "2"},
                "preferences": {"language": "ca", "newsletter": true, "theme": "dark", "timezone": "Europe/Madrid"},
                "roles": ["admin", "editor", "viewer"],
                "bio": "Gateway enthusiast who writes long biographies to make answers realistically sized."
            },
            "orders": orders,
            "links": {"self": "/users/42", "orders": "/users/42/orders", "avatar": "https://cdn.example.com/a/42.png"}
        }
    });
    serde_json::to_vec(&body).unwrap()
}

fn backend(cfg: Value) -> ComposeBackendConfig {
    serde_json::from_value(cfg).unwrap()
}

fn bench(c: &mut Criterion) {
    let body = answer();
    eprintln!("answer: {} bytes", body.len());
    let data: Map<String, Value> = serde_json::from_slice(&body).unwrap();

    let shaper = Shaper::compile(&backend(json!({
        "url_pattern": "/users/{id}",
        "target": "data.user",
        "allow": ["id", "name", "email", "address.city", "address.zip", "preferences.language", "roles"],
        "mapping": {"email": "contact_email", "name": "full_name"},
        "group": "user"
    })))
    .unwrap();
    c.bench_function("shape 2KiB: target+allow+mapping+group", |b| {
        b.iter_batched(|| data.clone(), |d| black_box(shaper.apply(d)), BatchSize::SmallInput)
    });

    let flat = Shaper::compile(&backend(json!({
        "url_pattern": "/users/{id}",
        "target": "data",
        "flatmap_filter": [
            {"type": "del", "args": ["orders.*.currency", "links"]},
            {"type": "move", "args": ["orders.*.total", "orders.*.amount"]},
            {"type": "move", "args": ["user.name", "name"]}
        ]
    })))
    .unwrap();
    c.bench_function("shape 2KiB: flatmap del+move over 16 orders", |b| {
        b.iter_batched(|| data.clone(), |d| black_box(flat.apply(d)), BatchSize::SmallInput)
    });

    c.bench_function("clone of the 2KiB answer (baseline of the two above)", |b| {
        b.iter(|| black_box(data.clone()))
    });

    let endpoint: ComposeEndpointConfig = serde_json::from_value(json!({"backend": [{
        "url_pattern": "/users/{id}",
        "target": "data.user",
        "allow": ["id", "name", "email", "address.city", "address.zip", "preferences.language", "roles"],
        "mapping": {"email": "contact_email", "name": "full_name"},
        "group": "user"
    }]}))
    .unwrap();
    let endpoint = Endpoint::compile(&endpoint).unwrap();
    c.bench_function("one backend 2KiB: decode+shape+merge+encode json", |b| {
        b.iter(|| {
            let mut agg = endpoint.aggregate::<()>();
            agg.answered(0, endpoint.backends()[0].read(black_box(&body)).unwrap());
            let merged = endpoint.finish(agg);
            black_box(endpoint.encode(&merged.data, None).unwrap())
        })
    });
    c.bench_function("decode 2KiB json only", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Map<String, Value>>(black_box(&body)).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
