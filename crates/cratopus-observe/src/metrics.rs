//! Metrics in the Prometheus text exposition format (0.0.4).
//!
//! Each route owns a [`RouteMetrics`]: fixed arrays of atomics, updated with relaxed operations
//! only, so recording a request takes no lock, allocates nothing and looks no label up. Labels
//! (organization, route, target) are supplied only when [`render`] writes the exposition, which
//! happens on a scrape, off the hot path.
//!
//! Families written by [`render`]:
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `cratopus_requests_total` | counter | org, route, method, class |
//! | `cratopus_requests_in_flight` | gauge | org, route |
//! | `cratopus_request_duration_seconds` | histogram | org, route |
//! | `cratopus_upstream_duration_seconds` | histogram | org, route |
//! | `cratopus_request_bytes_total` | counter | org, route |
//! | `cratopus_response_bytes_total` | counter | org, route |
//! | `cratopus_upstream_target_healthy` | gauge | org, upstream, target |
//! | `cratopus_upstream_target_in_flight` | gauge | org, upstream, target |
//! | `cratopus_config_reloads_total` | counter | result (`ok`, `error`) |
//! | `cratopus_traffic_log_dropped_total` | counter | |
//! | `cratopus_unrouted_requests_total` | counter | class |
//! | `cratopus_rate_limited_total` | counter | org, route, mode (`enforce`, `soft`) |
//! | `cratopus_state_redis_up` | gauge | (with Redis, by [`render_state`]) |
//! | `cratopus_state_fallbacks_total` | counter | (with Redis) |
//! | `cratopus_state_outages_total` | counter | (with Redis) |
//!
//! Of the method × status-class matrix (and of the unrouted classes) only series with a non-zero
//! count are written; histograms and gauges of every route given are always written.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The method label values, in the order of [`RouteMetrics`]' request matrix.
const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"];
/// The status class label values.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upper bounds of the latency buckets in nanoseconds, and their `le` labels.
const BUCKETS: [(u64, &str); 14] = [
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (2_500_000_000, "2.5"),
    (5_000_000_000, "5"),
    (10_000_000_000, "10"),
];

fn method_index(m: &http::Method) -> usize {
    use http::Method;
    if m == Method::GET {
        0
    } else if m == Method::HEAD {
        1
    } else if m == Method::POST {
        2
    } else if m == Method::PUT {
        3
    } else if m == Method::PATCH {
        4
    } else if m == Method::DELETE {
        5
    } else if m == Method::OPTIONS {
        6
    } else {
        7
    }
}

/// `1xx` … `5xx`; a status below 200 counts as 1xx, one of 500 or above as 5xx.
fn class_index(status: u16) -> usize {
    match status {
        ..200 => 0,
        200..300 => 1,
        300..400 => 2,
        400..500 => 3,
        _ => 4,
    }
}

/// A latency histogram: one counter per bucket (not cumulative; [`render`] sums them up) and
/// the sum of all observations in microseconds. The count is the sum of the buckets, so the
/// `+Inf` bucket and `_count` always agree, even when read during updates.
struct Histogram {
    /// `BUCKETS.len()` bounded buckets, then the `+Inf` one.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKETS.partition_point(|&(bound, _)| bound < ns);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    #[cfg(test)]
    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }
}

/// The counters of one route. Share it (`Arc`) between the route and the metrics endpoint.
pub struct RouteMetrics {
    /// `[method][class]`, see [`METHODS`] and [`CLASSES`].
    requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    in_flight: AtomicI64,
    total: Histogram,
    upstream: Histogram,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Requests over a rate limit or quota: `[refused, let through in soft mode]`.
    over_limit: [AtomicU64; 2],
}

impl Default for RouteMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("requests", &self.requests_total())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl RouteMetrics {
    pub fn new() -> Self {
        RouteMetrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            in_flight: AtomicI64::new(0),
            total: Histogram::new(),
            upstream: Histogram::new(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            over_limit: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// A request went over a rate limit or quota: refused (`soft` false) or, in soft mode,
    /// let through.
    pub fn over_limit(&self, soft: bool) {
        self.over_limit[usize::from(soft)].fetch_add(1, Relaxed);
    }

    /// A request on this route began: in flight +1.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// A request routed here went on to route `to` before anything ran for it here (routes
    /// matching on the consumer are decided after authentication): it is in flight there now.
    pub fn request_moved_to(&self, to: &RouteMetrics) {
        self.in_flight.fetch_sub(1, Relaxed);
        to.in_flight.fetch_add(1, Relaxed);
    }

    /// A request on this route ended (its response body finished or was dropped): in flight −1,
    /// and its method, status, timings and sizes recorded. `upstream` is `None` when no upstream
    /// was called (the gateway answered itself).
    pub fn request_finished(
        &self,
        method: &http::Method,
        status: u16,
        total: Duration,
        upstream: Option<Duration>,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.in_flight.fetch_sub(1, Relaxed);
        self.requests[method_index(method)][class_index(status)].fetch_add(1, Relaxed);
        self.total.observe(total);
        if let Some(u) = upstream {
            self.upstream.observe(u);
        }
        if bytes_in > 0 {
            self.bytes_in.fetch_add(bytes_in, Relaxed);
        }
        if bytes_out > 0 {
            self.bytes_out.fetch_add(bytes_out, Relaxed);
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Relaxed)
    }

    /// Requests finished so far, all methods and statuses.
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().flatten().map(|c| c.load(Relaxed)).sum()
    }
}

/// Process-wide counters, not tied to a route.
pub struct GatewayMetrics {
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    unrouted: [AtomicU64; CLASSES.len()],
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics")
            .field("reloads_ok", &self.reloads_ok.load(Relaxed))
            .field("reloads_failed", &self.reloads_failed.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl GatewayMetrics {
    pub fn new() -> Self {
        GatewayMetrics {
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            unrouted: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// A config reload succeeded (`ok`) or failed and the old config kept serving.
    pub fn reload(&self, ok: bool) {
        let counter = if ok { &self.reloads_ok } else { &self.reloads_failed };
        counter.fetch_add(1, Relaxed);
    }

    /// A request answered without a route (unknown host, no matching route, a head refused
    /// before routing, a client gone before routing) with `status`.
    pub fn unrouted(&self, status: u16) {
        self.unrouted[class_index(status)].fetch_add(1, Relaxed);
    }
}

/// The labels of one route's series.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabels<'a> {
    pub org: &'a str,
    pub route: &'a str,
}

/// The state of one upstream target at render time.
#[derive(Debug, Clone, Copy)]
pub struct TargetHealth<'a> {
    pub org: &'a str,
    pub upstream: &'a str,
    pub target: &'a str,
    pub healthy: bool,
    pub inflight: usize,
}

/// Appends `v` to `out` escaped as a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn escape_into(out: &mut String, v: &str) {
    let mut rest = v;
    while let Some(i) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// `name="value",…` with the values escaped, without braces.
pub fn label_list(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        escape_into(&mut s, v);
        s.push('"');
    }
    s
}

pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line; `labels` is a [`label_list`] (may be empty).
pub(crate) fn sample(out: &mut String, name: &str, labels: &str, extra: &str, value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() || !extra.is_empty() {
        out.push('{');
        out.push_str(labels);
        if !labels.is_empty() && !extra.is_empty() {
            out.push(',');
        }
        out.push_str(extra);
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Microseconds as seconds, exactly (`1234567` → `1.234567`).
struct Seconds(u64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

fn histogram(
    out: &mut String,
    name: &str,
    labels: &[String],
    routes: &[(RouteLabels<'_>, &RouteMetrics)],
    upstream: bool,
) {
    for (l, (_, m)) in labels.iter().zip(routes) {
        let h = if upstream { &m.upstream } else { &m.total };
        // Read the buckets once: `+Inf` and `_count` are the same number.
        let mut cumulative = 0u64;
        for (i, bucket) in h.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf", |b| b.1);
            let _ = write!(out, "{name}_bucket{{");
            if !l.is_empty() {
                out.push_str(l);
                out.push(',');
            }
            let _ = writeln!(out, "le=\"{le}\"}} {cumulative}");
        }
        sample(out, &format!("{name}_sum"), l, "", Seconds(h.sum_us.load(Relaxed)));
        sample(out, &format!("{name}_count"), l, "", cumulative);
    }
}

/// The shared state store (Redis) as `/metrics` shows it.
#[derive(Debug, Clone, Copy)]
pub struct StateStats {
    pub redis_up: bool,
    /// Checks answered by the local fallback (or refused, failing closed) because Redis was not.
    pub fallbacks: u64,
    /// Times Redis went from reachable to unreachable.
    pub outages: u64,
}

/// Appends the state store's families; only written when the gateway uses Redis.
pub fn render_state(out: &mut String, s: &StateStats) {
    let name = "cratopus_state_redis_up";
    header(
        out,
        name,
        "gauge",
        "Whether the Redis state store answers (1) or not (0).",
    );
    sample(out, name, "", "", u8::from(s.redis_up));
    let name = "cratopus_state_fallbacks_total";
    header(
        out,
        name,
        "counter",
        "Rate-limit and quota checks decided without Redis because it was unreachable.",
    );
    sample(out, name, "", "", s.fallbacks);
    let name = "cratopus_state_outages_total";
    header(out, name, "counter", "Times the Redis state store became unreachable.");
    sample(out, name, "", "", s.outages);
}

/// A certificate the gateway serves, for the expiry gauge.
#[derive(Debug, Clone)]
pub struct CertExpiry<'a> {
    /// The organization, or empty for the default certificate.
    pub org: &'a str,
    /// The names it is served for, comma-separated.
    pub names: &'a str,
    /// `file` or `acme`.
    pub source: &'a str,
    /// When it expires, in seconds since the Unix epoch.
    pub not_after: u64,
}

/// An ACME certificate's consecutive failed orders.
#[derive(Debug, Clone)]
pub struct AcmeFailures<'a> {
    pub org: &'a str,
    pub names: &'a str,
    pub failures: u32,
}

/// Certificate expiry times and ACME failures (only written when there are certificates).
pub fn render_certificates(out: &mut String, certs: &[CertExpiry<'_>], acme: &[AcmeFailures<'_>]) {
    if !certs.is_empty() {
        let name = "cratopus_certificate_expiry_timestamp_seconds";
        header(
            out,
            name,
            "gauge",
            "When a served certificate expires (Unix time), by organization, names and source (file, acme, or cluster: the store of a cluster).",
        );
        for c in certs {
            let labels = label_list(&[("org", c.org), ("names", c.names), ("source", c.source)]);
            sample(out, name, &labels, "", c.not_after);
        }
    }
    if !acme.is_empty() {
        let name = "cratopus_acme_consecutive_failures";
        header(
            out,
            name,
            "gauge",
            "Failed ACME orders in a row for a certificate (0 once one succeeds).",
        );
        for a in acme {
            let labels = label_list(&[("org", a.org), ("names", a.names)]);
            sample(out, name, &labels, "", a.failures);
        }
    }
}

/// Writes the exposition of all metrics to `out` (appending). `routes` are the known routes with
/// their labels (each pair of labels once), `targets` the upstream targets, `log_dropped` the
/// traffic log's drop count ([`crate::TrafficLog::dropped`]).
pub fn render(
    out: &mut String,
    gw: &GatewayMetrics,
    routes: &[(RouteLabels<'_>, &RouteMetrics)],
    targets: &[TargetHealth<'_>],
    log_dropped: u64,
) {
    let route_labels: Vec<String> = routes
        .iter()
        .map(|(l, _)| label_list(&[("org", l.org), ("route", l.route)]))
        .collect();

    let name = "cratopus_requests_total";
    header(
        out,
        name,
        "counter",
        "Requests answered on a route, by method and status class.",
    );
    for (l, (_, m)) in route_labels.iter().zip(routes) {
        for (mi, row) in m.requests.iter().enumerate() {
            for (ci, c) in row.iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    let extra = format!("method=\"{}\",class=\"{}\"", METHODS[mi], CLASSES[ci]);
                    sample(out, name, l, &extra, n);
                }
            }
        }
    }

    let name = "cratopus_requests_in_flight";
    header(out, name, "gauge", "Requests on a route being served now.");
    for (l, (_, m)) in route_labels.iter().zip(routes) {
        sample(out, name, l, "", m.in_flight());
    }

    let name = "cratopus_request_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from a request's arrival to the end of its response.",
    );
    histogram(out, name, &route_labels, routes, false);

    let name = "cratopus_upstream_duration_seconds";
    header(out, name, "histogram", "Time waiting for the upstream's response head.");
    histogram(out, name, &route_labels, routes, true);

    let name = "cratopus_request_bytes_total";
    header(out, name, "counter", "Request body bytes received from clients.");
    for (l, (_, m)) in route_labels.iter().zip(routes) {
        sample(out, name, l, "", m.bytes_in.load(Relaxed));
    }

    let name = "cratopus_response_bytes_total";
    header(out, name, "counter", "Response body bytes sent to clients.");
    for (l, (_, m)) in route_labels.iter().zip(routes) {
        sample(out, name, l, "", m.bytes_out.load(Relaxed));
    }

    let name = "cratopus_rate_limited_total";
    header(
        out,
        name,
        "counter",
        "Requests over a rate limit or quota: refused (mode enforce) or let through (mode soft).",
    );
    for (l, (_, m)) in route_labels.iter().zip(routes) {
        for (i, mode) in ["enforce", "soft"].iter().enumerate() {
            let n = m.over_limit[i].load(Relaxed);
            if n > 0 {
                sample(out, name, l, &format!("mode=\"{mode}\""), n);
            }
        }
    }

    let target_labels: Vec<String> = targets
        .iter()
        .map(|t| label_list(&[("org", t.org), ("upstream", t.upstream), ("target", t.target)]))
        .collect();

    let name = "cratopus_upstream_target_healthy";
    header(
        out,
        name,
        "gauge",
        "Whether an upstream target takes requests (1) or not (0).",
    );
    for (l, t) in target_labels.iter().zip(targets) {
        sample(out, name, l, "", u8::from(t.healthy));
    }

    let name = "cratopus_upstream_target_in_flight";
    header(out, name, "gauge", "Requests in flight to an upstream target.");
    for (l, t) in target_labels.iter().zip(targets) {
        sample(out, name, l, "", t.inflight);
    }

    let name = "cratopus_config_reloads_total";
    header(out, name, "counter", "Config reloads, by result.");
    sample(out, name, "", "result=\"ok\"", gw.reloads_ok.load(Relaxed));
    sample(out, name, "", "result=\"error\"", gw.reloads_failed.load(Relaxed));

    let name = "cratopus_traffic_log_dropped_total";
    header(
        out,
        name,
        "counter",
        "Traffic log lines dropped because the log queue was full or they could not be written.",
    );
    sample(out, name, "", "", log_dropped);

    let name = "cratopus_unrouted_requests_total";
    header(
        out,
        name,
        "counter",
        "Requests answered without a route (unknown host, no route, refused head), by status class.",
    );
    for (ci, c) in gw.unrouted.iter().enumerate() {
        let n = c.load(Relaxed);
        if n > 0 {
            sample(out, name, "", &format!("class=\"{}\"", CLASSES[ci]), n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use std::sync::Arc;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn golden_small_case() {
        let m = RouteMetrics::new();
        m.request_started();
        m.request_finished(&Method::GET, 200, 3 * MS, Some(2 * MS), 0, 100);
        m.request_started();
        m.request_finished(
            &Method::from_bytes(b"PURGE").unwrap(),
            503,
            Duration::from_secs(11),
            None,
            7,
            5,
        );
        m.request_started(); // still in flight
        let gw = GatewayMetrics::new();
        gw.reload(true);
        gw.reload(true);
        gw.reload(false);
        gw.unrouted(404);
        let targets = [TargetHealth {
            org: "acme",
            upstream: "api",
            target: "10.0.0.1:80",
            healthy: true,
            inflight: 1,
        }];
        let mut out = String::new();
        render(
            &mut out,
            &gw,
            &[(
                RouteLabels {
                    org: "acme",
                    route: "users",
                },
                &m,
            )],
            &targets,
            4,
        );
        let l = r#"org="acme",route="users""#;
        let mut want = String::new();
        want.push_str(&format!(
            "\
# HELP cratopus_requests_total Requests answered on a route, by method and status class.
# TYPE cratopus_requests_total counter
cratopus_requests_total{{{l},method=\"GET\",class=\"2xx\"}} 1
cratopus_requests_total{{{l},method=\"other\",class=\"5xx\"}} 1
# HELP cratopus_requests_in_flight Requests on a route being served now.
# TYPE cratopus_requests_in_flight gauge
cratopus_requests_in_flight{{{l}}} 1
# HELP cratopus_request_duration_seconds Time from a request's arrival to the end of its response.
# TYPE cratopus_request_duration_seconds histogram
"
        ));
        // total: 3 ms lands in le=0.005, 11 s only in +Inf.
        let total = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2];
        let upstream = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        let les = BUCKETS.iter().map(|b| b.1).chain(["+Inf"]);
        for (le, n) in les.clone().zip(total) {
            want.push_str(&format!(
                "cratopus_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {n}\n"
            ));
        }
        want.push_str(&format!(
            "\
cratopus_request_duration_seconds_sum{{{l}}} 11.003000
cratopus_request_duration_seconds_count{{{l}}} 2
# HELP cratopus_upstream_duration_seconds Time waiting for the upstream's response head.
# TYPE cratopus_upstream_duration_seconds histogram
"
        ));
        for (le, n) in les.zip(upstream) {
            want.push_str(&format!(
                "cratopus_upstream_duration_seconds_bucket{{{l},le=\"{le}\"}} {n}\n"
            ));
        }
        want.push_str(&format!(
            "\
cratopus_upstream_duration_seconds_sum{{{l}}} 0.002000
cratopus_upstream_duration_seconds_count{{{l}}} 1
# HELP cratopus_request_bytes_total Request body bytes received from clients.
# TYPE cratopus_request_bytes_total counter
cratopus_request_bytes_total{{{l}}} 7
# HELP cratopus_response_bytes_total Response body bytes sent to clients.
# TYPE cratopus_response_bytes_total counter
cratopus_response_bytes_total{{{l}}} 105
# HELP cratopus_rate_limited_total Requests over a rate limit or quota: refused (mode enforce) or let through (mode soft).
# TYPE cratopus_rate_limited_total counter
# HELP cratopus_upstream_target_healthy Whether an upstream target takes requests (1) or not (0).
# TYPE cratopus_upstream_target_healthy gauge
cratopus_upstream_target_healthy{{org=\"acme\",upstream=\"api\",target=\"10.0.0.1:80\"}} 1
# HELP cratopus_upstream_target_in_flight Requests in flight to an upstream target.
# TYPE cratopus_upstream_target_in_flight gauge
cratopus_upstream_target_in_flight{{org=\"acme\",upstream=\"api\",target=\"10.0.0.1:80\"}} 1
# HELP cratopus_config_reloads_total Config reloads, by result.
# TYPE cratopus_config_reloads_total counter
cratopus_config_reloads_total{{result=\"ok\"}} 2
cratopus_config_reloads_total{{result=\"error\"}} 1
# HELP cratopus_traffic_log_dropped_total Traffic log lines dropped because the log queue was full or they could not be written.
# TYPE cratopus_traffic_log_dropped_total counter
cratopus_traffic_log_dropped_total 4
# HELP cratopus_unrouted_requests_total Requests answered without a route (unknown host, no route, refused head), by status class.
# TYPE cratopus_unrouted_requests_total counter
cratopus_unrouted_requests_total{{class=\"4xx\"}} 1
"
        ));
        assert_eq!(out, want, "got:\n{out}");
    }

    #[test]
    fn nothing_recorded_still_lists_every_family() {
        let mut out = String::new();
        render(&mut out, &GatewayMetrics::new(), &[], &[], 0);
        assert_eq!(out.matches("# HELP ").count(), 12);
        assert_eq!(out.matches("# TYPE ").count(), 12);
        assert!(out.contains("cratopus_config_reloads_total{result=\"error\"} 0\n"));
        assert!(out.contains("cratopus_traffic_log_dropped_total 0\n"));
        assert!(!out.contains("cratopus_unrouted_requests_total{"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_into(&mut s, "a\\b\"c\nd");
        assert_eq!(s, r#"a\\b\"c\nd"#);
        let mut s = String::new();
        escape_into(&mut s, "plain é");
        assert_eq!(s, "plain é");

        let m = RouteMetrics::new();
        let mut out = String::new();
        let labels = RouteLabels {
            org: "o\"rg",
            route: "r\\oute\nnext",
        };
        render(&mut out, &GatewayMetrics::new(), &[(labels, &m)], &[], 0);
        assert!(
            out.contains("cratopus_requests_in_flight{org=\"o\\\"rg\",route=\"r\\\\oute\\nnext\"} 0\n"),
            "{out}"
        );
        // No raw newline inside any sample line: every line is a comment or `name{…} value`.
        for line in out.lines() {
            assert!(line.starts_with("# ") || line.starts_with("cratopus_"), "{line:?}");
        }
    }

    #[test]
    fn buckets_are_cumulative_and_inf_equals_count() {
        let m = RouteMetrics::new();
        // On the bounds (inclusive), between them, and beyond the last.
        let samples = [
            Duration::ZERO,
            Duration::from_micros(500),
            Duration::from_nanos(500_001),
            Duration::from_millis(7),
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_secs(30),
            Duration::MAX,
        ];
        for d in samples {
            m.request_started();
            m.request_finished(&Method::POST, 201, d, Some(d / 2), 0, 0);
        }
        let mut out = String::new();
        render(
            &mut out,
            &GatewayMetrics::new(),
            &[(RouteLabels { org: "o", route: "r" }, &m)],
            &[],
            0,
        );

        let value = |prefix: &str| -> Vec<u64> {
            out.lines()
                .filter(|l| l.starts_with(prefix))
                .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
                .collect()
        };
        let buckets = value("cratopus_request_duration_seconds_bucket");
        assert_eq!(buckets.len(), BUCKETS.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(buckets, [2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 9]);
        assert_eq!(value("cratopus_request_duration_seconds_count"), [9]);
        assert_eq!(*buckets.last().unwrap(), 9);

        let up = value("cratopus_upstream_duration_seconds_bucket");
        assert!(up.windows(2).all(|w| w[0] <= w[1]), "{up:?}");
        assert_eq!(value("cratopus_upstream_duration_seconds_count"), [*up.last().unwrap()]);
        assert!(out.contains("le=\"+Inf\"} 9\n"));
    }

    #[test]
    fn status_and_method_mapping() {
        assert_eq!(class_index(100), 0);
        assert_eq!(class_index(199), 0);
        assert_eq!(class_index(200), 1);
        assert_eq!(class_index(308), 2);
        assert_eq!(class_index(499), 3);
        assert_eq!(class_index(500), 4);
        assert_eq!(class_index(999), 4);
        for (i, m) in METHODS.iter().enumerate().take(7) {
            assert_eq!(method_index(&Method::from_bytes(m.as_bytes()).unwrap()), i);
        }
        assert_eq!(method_index(&Method::TRACE), 7);
        assert_eq!(method_index(&Method::CONNECT), 7);
    }

    #[test]
    fn concurrent_updates_add_up() {
        const THREADS: u64 = 4;
        const PER: u64 = 20_000;
        let m = Arc::new(RouteMetrics::new());
        let gw = Arc::new(GatewayMetrics::new());
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = m.clone();
                let gw = gw.clone();
                std::thread::spawn(move || {
                    let method = if t % 2 == 0 { Method::GET } else { Method::DELETE };
                    for i in 0..PER {
                        m.request_started();
                        let status = if i % 4 == 0 { 500 } else { 200 };
                        m.request_finished(&method, status, Duration::from_micros(i % 3000), Some(MS), 2, 3);
                        gw.reload(i % 2 == 0);
                        gw.unrouted(404);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let n = THREADS * PER;
        assert_eq!(m.in_flight(), 0);
        assert_eq!(m.requests_total(), n);
        assert_eq!(m.requests[0][4].load(Relaxed), n / 2 / 4);
        assert_eq!(m.requests[5][1].load(Relaxed), n / 2 * 3 / 4);
        assert_eq!(m.total.count(), n);
        assert_eq!(m.upstream.count(), n);
        assert_eq!(m.upstream.sum_us.load(Relaxed), n * 1000);
        let per_thread_sum: u64 = (0..PER).map(|i| i % 3000).sum();
        assert_eq!(m.total.sum_us.load(Relaxed), THREADS * per_thread_sum);
        assert_eq!(m.bytes_in.load(Relaxed), 2 * n);
        assert_eq!(m.bytes_out.load(Relaxed), 3 * n);
        assert_eq!(gw.reloads_ok.load(Relaxed) + gw.reloads_failed.load(Relaxed), n);
        assert_eq!(gw.unrouted[3].load(Relaxed), n);
    }
}
