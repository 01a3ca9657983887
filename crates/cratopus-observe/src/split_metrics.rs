//! The metrics of weighted splits (canary, A/B), written after the route families by
//! [`render_splits`] when the config has splits. The counters live in the split's runtime state
//! (`cratopus_upstream::split`); the caller reads them on a scrape and passes plain numbers.
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `cratopus_split_requests_total` | counter | org, route, arm |
//! | `cratopus_split_errors_total` | counter | org, route, arm (5xx, the gateway's own included) |
//! | `cratopus_split_weight` | gauge | org, route, arm (the running weight) |
//! | `cratopus_split_rollbacks_total` | counter | org, route |
//! | `cratopus_split_rolled_back` | gauge | org, route (1 while the canary is rolled back) |

use crate::metrics::{header, label_list, sample};

/// One arm of a split at the time of the scrape.
#[derive(Debug, Clone)]
pub struct SplitArmSample<'a> {
    pub arm: &'a str,
    pub requests: u64,
    pub errors: u64,
    pub weight: u32,
}

/// One route's split at the time of the scrape.
#[derive(Debug, Clone)]
pub struct SplitSample<'a> {
    pub org: &'a str,
    pub route: &'a str,
    pub arms: Vec<SplitArmSample<'a>>,
    pub rollbacks: u64,
    pub rolled_back: bool,
}

/// Appends the split families; nothing when there are no splits.
pub fn render_splits(out: &mut String, splits: &[SplitSample<'_>]) {
    if splits.is_empty() {
        return;
    }
    let arm_labels: Vec<Vec<String>> = splits
        .iter()
        .map(|s| {
            s.arms
                .iter()
                .map(|a| label_list(&[("org", s.org), ("route", s.route), ("arm", a.arm)]))
                .collect()
        })
        .collect();
    let per_arm = |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(&SplitArmSample) -> u64| {
        header(out, name, kind, help);
        for (s, labels) in splits.iter().zip(&arm_labels) {
            for (a, l) in s.arms.iter().zip(labels) {
                sample(out, name, l, "", value(a));
            }
        }
    };
    per_arm(
        out,
        "cratopus_split_requests_total",
        "counter",
        "Requests a split sent to an arm.",
        &|a| a.requests,
    );
    per_arm(
        out,
        "cratopus_split_errors_total",
        "counter",
        "5xx answers of a split's arm, the gateway's own 502, 503 and 504 included.",
        &|a| a.errors,
    );
    per_arm(
        out,
        "cratopus_split_weight",
        "gauge",
        "The running weight of a split's arm (admin API and rollbacks change it).",
        &|a| u64::from(a.weight),
    );
    let route_labels: Vec<String> = splits
        .iter()
        .map(|s| label_list(&[("org", s.org), ("route", s.route)]))
        .collect();
    let name = "cratopus_split_rollbacks_total";
    header(out, name, "counter", "Automatic rollbacks of a split's canary.");
    for (s, l) in splits.iter().zip(&route_labels) {
        sample(out, name, l, "", s.rollbacks);
    }
    let name = "cratopus_split_rolled_back";
    header(
        out,
        name,
        "gauge",
        "Whether a split's canary is rolled back now (1) or not (0).",
    );
    for (s, l) in splits.iter().zip(&route_labels) {
        sample(out, name, l, "", u8::from(s.rolled_back));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arm_and_route_gets_its_series() {
        let mut out = String::new();
        render_splits(&mut out, &[]);
        assert!(out.is_empty());
        let arms = vec![
            SplitArmSample {
                arm: "stable",
                requests: 99,
                errors: 0,
                weight: 99,
            },
            SplitArmSample {
                arm: "canary",
                requests: 1,
                errors: 1,
                weight: 0,
            },
        ];
        render_splits(
            &mut out,
            &[SplitSample {
                org: "acme",
                route: "users",
                arms,
                rollbacks: 1,
                rolled_back: true,
            }],
        );
        for line in [
            "cratopus_split_requests_total{org=\"acme\",route=\"users\",arm=\"stable\"} 99",
            "cratopus_split_errors_total{org=\"acme\",route=\"users\",arm=\"canary\"} 1",
            "cratopus_split_weight{org=\"acme\",route=\"users\",arm=\"canary\"} 0",
            "cratopus_split_rollbacks_total{org=\"acme\",route=\"users\"} 1",
            "cratopus_split_rolled_back{org=\"acme\",route=\"users\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }
}
