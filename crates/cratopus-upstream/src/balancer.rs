//! Choosing a target for a request. Everything a balancer needs is computed when the target
//! set is built (the weighted schedule, the hash ring), so a pick is a few atomic loads.

use crate::target::Target;
use cratopus_config::Balance;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Virtual nodes per unit of weight on the consistent-hash ring.
const RING_POINTS_PER_WEIGHT: u32 = 160;

/// The precomputed tables of one target set.
#[derive(Debug, Default)]
pub struct Tables {
    /// Target indices in smooth weighted round-robin order, one entry per unit of weight.
    schedule: Vec<u32>,
    /// (point, target index), sorted by point.
    ring: Vec<(u64, u32)>,
}

impl Tables {
    pub fn build(targets: &[Arc<Target>], balance: Balance) -> Tables {
        let mut t = Tables::default();
        match balance {
            Balance::RoundRobin => t.schedule = smooth_wrr(targets),
            Balance::ConsistentHash => t.ring = ring(targets),
            Balance::LeastConnections | Balance::PowerOfTwo => {}
        }
        t
    }
}

/// nginx's smooth weighted round robin, unrolled into a schedule: with weights 5,1,1 it gives
/// a a b a c a a rather than a a a a a b c.
fn smooth_wrr(targets: &[Arc<Target>]) -> Vec<u32> {
    // Keep the schedule small: divide by the common divisor of the weights.
    let g = targets.iter().map(|t| t.weight).fold(0, gcd).max(1);
    let weights: Vec<i64> = targets.iter().map(|t| i64::from(t.weight / g)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; targets.len()];
    let mut out = Vec::with_capacity(total.clamp(0, 1 << 16) as usize);
    for _ in 0..total.min(1 << 16) {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn ring(targets: &[Arc<Target>]) -> Vec<(u64, u32)> {
    let mut ring = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        for v in 0..t.weight.saturating_mul(RING_POINTS_PER_WEIGHT) {
            let mut key = t.label.as_bytes().to_vec();
            key.extend_from_slice(&v.to_le_bytes());
            ring.push((hash_key(&key), i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

/// FNV-1a with a final mix: stable across processes and versions, so that every gateway
/// node sends one key to the same target.
pub fn hash_key(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finaliser spreads nearby keys over the ring.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Picks a healthy target, or `None` when none is healthy.
pub fn pick(
    balance: Balance,
    targets: &[Arc<Target>],
    tables: &Tables,
    counter: &AtomicUsize,
    hash: Option<u64>,
) -> Option<usize> {
    let n = targets.len();
    match n {
        0 => return None,
        1 => return targets[0].is_available().then_some(0),
        _ => {}
    }
    match balance {
        Balance::RoundRobin => {
            let s = &tables.schedule;
            if s.is_empty() {
                return None;
            }
            round_robin(s, targets, counter)
        }
        Balance::LeastConnections => least_loaded(targets, fastrand::usize(..n)),
        Balance::PowerOfTwo => {
            let a = fastrand::usize(..n);
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            match (targets[a].is_available(), targets[b].is_available()) {
                (true, true) => Some(if load(&targets[b]) < load(&targets[a]) { b } else { a }),
                (true, false) => Some(a),
                (false, true) => Some(b),
                (false, false) => least_loaded(targets, a),
            }
        }
        Balance::ConsistentHash => {
            let ring = &tables.ring;
            if ring.is_empty() {
                return None;
            }
            let h = hash.unwrap_or_else(|| fastrand::u64(..));
            let start = ring.partition_point(|(p, _)| *p < h);
            (0..ring.len())
                .map(|k| ring[(start + k) % ring.len()].1 as usize)
                .find(|&i| targets[i].is_available())
        }
    }
}

/// How many further slots of the schedule a round-robin pick takes when its slot's target is
/// out, before it settles for the next available slot in order.
const ROUND_ROBIN_SKIPS: usize = 64;

/// The next slot of the schedule whose target is available.
///
/// A slot whose target is out (unhealthy, drained, ejected, breaker open) is *used up*: the pick
/// takes the next counter value rather than the next slot after its own. Each available slot
/// is then taken once per turn of the schedule, so the remaining targets keep their weights'
/// proportions: with A, B, C equal and B out, A C A C rather than A C C A C C (which is what
/// moving on to the following slot gives: C inherits every one of B's turns). Nothing changes
/// while every target is in (one `fetch_add`, as before). A pick gives up on skipping after
/// [`ROUND_ROBIN_SKIPS`] slots, so that a huge schedule with few targets left in it costs no
/// more than a scan.
fn round_robin(s: &[u32], targets: &[Arc<Target>], counter: &AtomicUsize) -> Option<usize> {
    let mut at = counter.fetch_add(1, Ordering::Relaxed);
    for _ in 0..s.len().min(ROUND_ROBIN_SKIPS) {
        let i = s[at % s.len()] as usize;
        if targets[i].is_available() {
            return Some(i);
        }
        if !targets.iter().any(|t| t.is_available()) {
            return None;
        }
        at = counter.fetch_add(1, Ordering::Relaxed);
    }
    (0..s.len())
        .map(|k| s[(at + k) % s.len()] as usize)
        .find(|&i| targets[i].is_available())
}

/// In-flight requests per unit of weight, scaled to stay integral. In a cluster with
/// `shared_state.inflight`, the other nodes' requests (exchanged every second) count too.
fn load(t: &Target) -> u64 {
    ((t.inflight() + t.remote_inflight()) as u64 + 1) * 1_000_000 / u64::from(t.weight)
}

/// The healthy target with the least load; ties go to the first after `start`.
fn least_loaded(targets: &[Arc<Target>], start: usize) -> Option<usize> {
    let n = targets.len();
    (0..n)
        .map(|k| (start + k) % n)
        .filter(|&i| targets[i].is_available())
        .min_by_key(|&i| load(&targets[i]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::TargetKind;

    fn targets(weights: &[u32]) -> Vec<Arc<Target>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Arc::new(Target::new(
                    TargetKind::Http {
                        addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                        authority: "x".parse().unwrap(),
                    },
                    *w,
                ))
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_order() {
        let t = targets(&[5, 1, 1]);
        assert_eq!(smooth_wrr(&t), vec![0, 0, 1, 0, 2, 0, 0]);
        let t = targets(&[2, 2]);
        assert_eq!(smooth_wrr(&t), vec![0, 1]);
    }

    #[test]
    fn round_robin_skips_unhealthy() {
        let t = targets(&[1, 1, 1]);
        let tables = Tables::build(&t, Balance::RoundRobin);
        let c = AtomicUsize::new(0);
        t[1].record_check(false, 1, 1);
        let picks: Vec<usize> = (0..6)
            .map(|_| pick(Balance::RoundRobin, &t, &tables, &c, None).unwrap())
            .collect();
        assert!(!picks.contains(&1));
        assert!(picks.contains(&0) && picks.contains(&2));
        t[0].record_check(false, 1, 1);
        t[2].record_check(false, 1, 1);
        assert_eq!(pick(Balance::RoundRobin, &t, &tables, &c, None), None);
    }

    /// One target out of three equal ones: the other two share its turns evenly, and with
    /// weights the remaining targets keep their proportions.
    #[test]
    fn round_robin_spreads_evenly_around_a_target_that_is_out() {
        let c = AtomicUsize::new(0);
        let count = |t: &[Arc<Target>], tables: &Tables, n: usize| {
            let mut counts = vec![0usize; t.len()];
            for _ in 0..n {
                counts[pick(Balance::RoundRobin, t, tables, &c, None).unwrap()] += 1;
            }
            counts
        };
        let t = targets(&[1, 1, 1]);
        let tables = Tables::build(&t, Balance::RoundRobin);
        t[1].record_check(false, 1, 1);
        assert_eq!(count(&t, &tables, 600), vec![300, 0, 300]);
        t[1].record_check(true, 1, 1);
        t[0].set_drained(true);
        assert_eq!(count(&t, &tables, 600), vec![0, 300, 300]);
        t[0].set_drained(false);
        t[2].set_ejected(true);
        assert_eq!(count(&t, &tables, 600), vec![300, 300, 0]);
        t[2].set_ejected(false);
        t[0].set_breaker_open(true);
        assert_eq!(count(&t, &tables, 600), vec![0, 300, 300]);

        // Weights 5, 1, 1 with the first out: the other two alternate. With the last out, the
        // first keeps five turns for the second's one.
        let t = targets(&[5, 1, 1]);
        let tables = Tables::build(&t, Balance::RoundRobin);
        t[0].set_drained(true);
        assert_eq!(count(&t, &tables, 700), vec![0, 350, 350]);
        t[0].set_drained(false);
        t[2].set_drained(true);
        assert_eq!(count(&t, &tables, 600), vec![500, 100, 0]);
    }

    #[test]
    fn least_connections_prefers_idle() {
        let t = targets(&[1, 1]);
        let _busy = t[0].begin();
        let tables = Tables::build(&t, Balance::LeastConnections);
        let c = AtomicUsize::new(0);
        for _ in 0..10 {
            assert_eq!(pick(Balance::LeastConnections, &t, &tables, &c, None), Some(1));
        }
    }

    #[test]
    fn consistent_hash_is_stable_and_spreads() {
        let t = targets(&[1, 1, 1]);
        let tables = Tables::build(&t, Balance::ConsistentHash);
        let c = AtomicUsize::new(0);
        let mut counts = [0; 3];
        for k in 0..3000u32 {
            let h = hash_key(&k.to_le_bytes());
            let a = pick(Balance::ConsistentHash, &t, &tables, &c, Some(h)).unwrap();
            let b = pick(Balance::ConsistentHash, &t, &tables, &c, Some(h)).unwrap();
            assert_eq!(a, b);
            counts[a] += 1;
        }
        assert!(counts.iter().all(|&n| n > 700), "{counts:?}");
        // Taking one target out moves only its keys.
        t[0].record_check(false, 1, 1);
        for k in 0..300u32 {
            let h = hash_key(&k.to_le_bytes());
            let now = pick(Balance::ConsistentHash, &t, &tables, &c, Some(h)).unwrap();
            assert_ne!(now, 0);
        }
    }

    #[test]
    fn power_of_two_avoids_loaded() {
        let t = targets(&[1, 1]);
        let _g: Vec<_> = (0..5).map(|_| t[1].begin()).collect();
        let tables = Tables::build(&t, Balance::PowerOfTwo);
        let c = AtomicUsize::new(0);
        for _ in 0..20 {
            assert_eq!(pick(Balance::PowerOfTwo, &t, &tables, &c, None), Some(0));
        }
    }
}
