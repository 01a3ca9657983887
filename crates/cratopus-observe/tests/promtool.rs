//! The exposition passes `promtool check metrics` (Prometheus' own parser and linter).
//!
//! promtool comes from Debian's `prometheus` package; without it these tests fail rather than
//! pass unchecked.

use cratopus_observe::metrics::{
    GatewayMetrics, RouteLabels, RouteMetrics, StateStats, TargetHealth, render, render_state,
};
use http::Method;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One finished request: route, method, status, total, upstream, bytes in, bytes out.
type Call<'a> = (&'a RouteMetrics, Method, u16, Duration, Option<Duration>, u64, u64);

/// Runs `promtool check metrics` on `text` (stdin): `Err` with its report on any finding.
/// Panics when promtool is missing.
fn promtool(text: &str) -> Result<(), String> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool is not on PATH; install it: apt-get install -y --no-install-recommends prometheus")
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() && out.stderr.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        ))
    }
}

fn promtool_check(text: &str) {
    if let Err(report) = promtool(text) {
        panic!("{report}\nexposition:\n{text}");
    }
}

#[test]
fn realistic_exposition_passes_promtool() {
    let users = RouteMetrics::new();
    let orders = RouteMetrics::new();
    let odd = RouteMetrics::new();
    let idle = RouteMetrics::new();
    let ms = Duration::from_millis(1);
    let calls: [Call<'_>; 9] = [
        (&users, Method::GET, 200, 3 * ms, Some(2 * ms), 0, 512),
        (&users, Method::GET, 304, ms / 2, Some(ms / 3), 0, 0),
        (&users, Method::HEAD, 200, ms, Some(ms), 0, 0),
        (&users, Method::POST, 201, 40 * ms, Some(35 * ms), 2048, 64),
        (&orders, Method::PUT, 502, 120 * ms, Some(119 * ms), 100, 90),
        (
            &orders,
            Method::DELETE,
            504,
            Duration::from_secs(30),
            Some(Duration::from_secs(30)),
            0,
            80,
        ),
        (&orders, Method::PATCH, 429, ms / 10, None, 10, 70),
        (&odd, Method::OPTIONS, 204, ms / 5, None, 0, 0),
        (
            &odd,
            Method::from_bytes(b"PROPFIND").unwrap(),
            101,
            2 * ms,
            Some(ms),
            0,
            0,
        ),
    ];
    for (m, method, status, total, upstream, bytes_in, bytes_out) in calls {
        m.request_started();
        m.request_finished(&method, status, total, upstream, bytes_in, bytes_out);
    }
    users.request_started();
    users.request_started();

    let gw = GatewayMetrics::new();
    gw.reload(true);
    gw.reload(false);
    gw.reload(true);
    gw.unrouted(404);
    gw.unrouted(421);
    gw.unrouted(400);

    let routes = [
        (
            RouteLabels {
                org: "acme",
                route: "users",
            },
            &users,
        ),
        (
            RouteLabels {
                org: "acme",
                route: "orders",
            },
            &orders,
        ),
        (
            RouteLabels {
                org: "glob\"ex",
                route: "weird \\ name\nwith newline",
            },
            &odd,
        ),
        (
            RouteLabels {
                org: "globex",
                route: "idle",
            },
            &idle,
        ),
    ];
    let targets = [
        TargetHealth {
            org: "acme",
            upstream: "api",
            target: "10.0.0.1:8080",
            healthy: true,
            inflight: 2,
        },
        TargetHealth {
            org: "acme",
            upstream: "api",
            target: "10.0.0.2:8080",
            healthy: false,
            inflight: 0,
        },
        TargetHealth {
            org: "globex",
            upstream: "echo",
            target: "mirror",
            healthy: true,
            inflight: 0,
        },
    ];
    orders.over_limit(false);
    orders.over_limit(true);
    orders.over_limit(true);
    let mut out = String::new();
    render(&mut out, &gw, &routes, &targets, 17);
    render_state(
        &mut out,
        &StateStats {
            redis_up: true,
            fallbacks: 4,
            outages: 1,
        },
    );
    cratopus_observe::metrics::render_certificates(
        &mut out,
        &[
            cratopus_observe::metrics::CertExpiry {
                org: "acme",
                names: "*",
                source: "file",
                not_after: 1_900_000_000,
            },
            cratopus_observe::metrics::CertExpiry {
                org: "",
                names: "default",
                source: "file",
                not_after: 1_800_000_000,
            },
        ],
        &[cratopus_observe::metrics::AcmeFailures {
            org: "shop",
            names: "shop.test,www.shop.test",
            failures: 3,
        }],
    );

    for family in [
        "cratopus_requests_total counter",
        "cratopus_requests_in_flight gauge",
        "cratopus_request_duration_seconds histogram",
        "cratopus_upstream_duration_seconds histogram",
        "cratopus_request_bytes_total counter",
        "cratopus_response_bytes_total counter",
        "cratopus_upstream_target_healthy gauge",
        "cratopus_upstream_target_in_flight gauge",
        "cratopus_config_reloads_total counter",
        "cratopus_traffic_log_dropped_total counter",
        "cratopus_unrouted_requests_total counter",
        "cratopus_rate_limited_total counter",
        "cratopus_state_redis_up gauge",
        "cratopus_state_fallbacks_total counter",
        "cratopus_state_outages_total counter",
        "cratopus_certificate_expiry_timestamp_seconds gauge",
        "cratopus_acme_consecutive_failures gauge",
    ] {
        assert!(out.contains(&format!("# TYPE {family}\n")), "no {family} in:\n{out}");
    }
    assert!(out.contains("cratopus_requests_in_flight{org=\"acme\",route=\"users\"} 2\n"));
    assert!(out.contains("cratopus_requests_in_flight{org=\"globex\",route=\"idle\"} 0\n"));
    assert!(out.contains("cratopus_unrouted_requests_total{class=\"4xx\"} 3\n"));
    assert!(out.contains("cratopus_traffic_log_dropped_total 17\n"));
    assert!(out.contains("cratopus_rate_limited_total{org=\"acme\",route=\"orders\",mode=\"soft\"} 2\n"));
    assert!(out.contains("cratopus_state_fallbacks_total 4\n"));
    promtool_check(&out);
}

#[test]
fn empty_exposition_passes_promtool() {
    let mut out = String::new();
    render(&mut out, &GatewayMetrics::new(), &[], &[], 0);
    promtool_check(&out);
}

/// The check itself works: a broken exposition is caught.
#[test]
fn promtool_rejects_a_bad_exposition() {
    let report = promtool("# TYPE cratopus_x counter\ncratopus_x 1\n").unwrap_err();
    assert!(report.contains("_total"), "{report}");
}

#[test]
fn split_families_pass_promtool() {
    use cratopus_observe::split_metrics::{SplitArmSample, SplitSample, render_splits};
    let arm = |arm, requests, weight| SplitArmSample {
        arm,
        requests,
        errors: requests / 10,
        weight,
    };
    let mut out = String::new();
    render_splits(
        &mut out,
        &[
            SplitSample {
                org: "acme",
                route: "users",
                arms: vec![arm("stable", 990, 99), arm("canary", 10, 0)],
                rollbacks: 1,
                rolled_back: true,
            },
            SplitSample {
                org: "acme",
                route: "/ab/{*rest}",
                arms: vec![arm("a", 50, 1), arm("b", 50, 1)],
                rollbacks: 0,
                rolled_back: false,
            },
        ],
    );
    promtool_check(&out);
}
