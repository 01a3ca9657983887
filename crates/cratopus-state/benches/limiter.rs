//! Cost of one local rate-limit check: the per-request price of a rate-limit policy when the
//! state is in memory (and of the fallback when Redis is away).
//!
//! - `100k_keys`: 100,000 distinct keys, pre-populated, checked in turn: hash-table lookups
//!   that miss the CPU cache, as with many clients.
//! - `hot_key`: one key checked over and over: the lock and cache line of one shard, as with
//!   one busy client.
//! - `stack_of_2`: the hot key with two limits (10/s + 1000/min).

use cratopus_state::{LocalLimiter, Rate};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn local_limiter(c: &mut Criterion) {
    // A high limit so that checks are allowed and write state (the usual case), not denied.
    let rates = [Rate::per_second(1_000_000_000)];
    let stack = [Rate::per_second(1_000_000_000), Rate::per_minute(1_000_000_000)];

    let limiter = LocalLimiter::new();
    let keys: Vec<String> = (0..100_000).map(|i| format!("consumer-{i:06}")).collect();
    for k in &keys {
        limiter.check(k, &rates);
    }
    assert_eq!(limiter.len(), keys.len());
    let mut group = c.benchmark_group("local_check");
    let mut i = 0;
    group.bench_function("100k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(limiter.check(black_box(&keys[i]), &rates))
        })
    });

    let hot = LocalLimiter::new();
    group.bench_function("hot_key", |b| {
        b.iter(|| black_box(hot.check(black_box("consumer-42"), &rates)))
    });
    group.bench_function("stack_of_2", |b| {
        b.iter(|| black_box(hot.check(black_box("consumer-43"), &stack)))
    });
    group.finish();
}

criterion_group!(benches, local_limiter);
criterion_main!(benches);
