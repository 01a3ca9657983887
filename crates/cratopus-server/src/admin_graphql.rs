//! The GraphQL guards' refusals for `/metrics`: `cratopus_graphql_refusals_total{org, route,
//! reason}`, one sample per reason of every route with a `graphql` guard (nothing without one).
//! The counters live in the guards (`cratopus_policies::graphql::GraphqlGuard::refusals`), so a
//! reload, which compiles new guards, starts them at zero as Prometheus counters may.

use cratopus_observe::metrics::label_list;
use cratopus_policies::chain::Policy;
use std::fmt::Write;

/// Appends the family; nothing when no route has a guard.
pub fn render(out: &mut String, snap: &cratopus_core::Snapshot) {
    let guards: Vec<_> = snap
        .routes
        .iter()
        .flat_map(|r| {
            r.chain.iter().filter_map(move |p| match p {
                Policy::Graphql(g) => Some((r, g)),
                _ => None,
            })
        })
        .collect();
    if guards.is_empty() {
        return;
    }
    let name = "cratopus_graphql_refusals_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests a route's GraphQL guard refused, by reason."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for (r, g) in guards {
        for (reason, n) in g.refusals() {
            let l = label_list(&[("org", &r.org), ("route", &r.name), ("reason", reason)]);
            let _ = writeln!(out, "{name}{{{l}}} {n}");
        }
    }
}
