//! The `/metrics` families of service discovery, written when an upstream has `discovery`:
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `cratopus_discovery_targets` | gauge | org, upstream (the targets the source gave last) |
//! | `cratopus_discovery_failures_total` | counter | org, upstream (reads of the source that failed) |

use cratopus_core::Snapshot;
use cratopus_observe::metrics::label_list;
use std::fmt::Write as _;

pub fn render(out: &mut String, snap: &Snapshot) {
    let mut rows: Vec<(String, usize, u64)> = snap
        .upstreams()
        .filter(|(_, u)| u.pool.config.discovery.is_some())
        .map(|((org, name), u)| {
            (
                label_list(&[("org", org), ("upstream", name)]),
                u.pool.targets().targets.len(),
                u.pool.discovery_failures(),
            )
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    rows.sort();
    let _ = writeln!(
        out,
        "# HELP cratopus_discovery_targets Targets of a discovered upstream, as its source last listed them.\n# TYPE cratopus_discovery_targets gauge"
    );
    for (l, n, _) in &rows {
        let _ = writeln!(out, "cratopus_discovery_targets{{{l}}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP cratopus_discovery_failures_total Reads of a discovery source that failed (the last known targets stayed).\n# TYPE cratopus_discovery_failures_total counter"
    );
    for (l, _, n) in &rows {
        let _ = writeln!(out, "cratopus_discovery_failures_total{{{l}}} {n}");
    }
}
