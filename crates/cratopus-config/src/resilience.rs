//! The serde types of an upstream's resilience settings: circuit breaker, outlier detection,
//! retries and bulkhead. Their runtime counterparts live in `cratopus-upstream` (`breaker`,
//! `outlier`, `retry`, `bulkhead`); these types only describe the file.
//!
//! Every type has a `Default` equal to what an empty section (`circuit_breaker: {}`) gives, and
//! a `problems()` listing the values serde accepts but the runtime cannot use (zero counts,
//! ratios out of range, a maximum below its minimum). Each problem is a sentence naming the
//! key, without the section's path, for `validate` to prefix (`upstream `api`: circuit_breaker:
//! …`).
//!
//! The defaults follow the usual practice of Envoy, Linkerd, Hystrix and resilience4j, picked
//! for an API gateway where a pool often has only two or three targets.

use crate::units::{ByteSize, Dur};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A circuit breaker per target: after repeated failures the target gets no requests for a
/// while (they are answered 503 at once, or go to the pool's other targets), then a few probe
/// requests decide whether it is back.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Failures in a row that open the breaker: catches a target that went down outright.
    /// A failure is a connect error, a timeout or a 5xx response; 4xx answers are successes
    /// (the client's fault, not the target's).
    #[serde(default = "default_consecutive_failures")]
    #[schemars(range(min = 1))]
    pub consecutive_failures: u32,
    /// Share of failed requests in the last `window`, from 0.0 to 1.0, that opens the breaker
    /// (at or above it): catches a target that fails on and off, where no long run of failures
    /// forms. `1.0` opens only when every request fails.
    #[serde(default = "default_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_rate: f64,
    /// Requests the `window` must hold before `error_rate` applies, so that a quiet period
    /// (two failures out of three requests) does not open the breaker.
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 1))]
    pub min_requests: u32,
    /// The rolling window `error_rate` is measured over (in ten buckets).
    #[serde(default = "default_window")]
    pub window: Dur,
    /// How long the breaker stays open, refusing requests, before it lets probes through.
    #[serde(default = "default_open_for")]
    pub open_for: Dur,
    /// Probe requests let through once `open_for` has passed, at most this many at once. When
    /// that many succeed the breaker closes; when one fails it opens for another `open_for`.
    #[serde(default = "default_half_open_probes")]
    #[schemars(range(min = 1, max = 1000))]
    pub half_open_probes: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            consecutive_failures: default_consecutive_failures(),
            error_rate: default_error_rate(),
            min_requests: default_min_requests(),
            window: default_window(),
            open_for: default_open_for(),
            half_open_probes: default_half_open_probes(),
        }
    }
}

impl CircuitBreakerConfig {
    /// The values serde accepts but a breaker cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        at_least_one(&mut out, "consecutive_failures", self.consecutive_failures);
        if !(self.error_rate > 0.0 && self.error_rate <= 1.0) {
            out.push(format!(
                "error_rate must be above 0.0 and at most 1.0, not {}",
                self.error_rate
            ));
        }
        at_least_one(&mut out, "min_requests", self.min_requests);
        above_zero(&mut out, "window", self.window);
        above_zero(&mut out, "open_for", self.open_for);
        if !(1..=1000).contains(&self.half_open_probes) {
            out.push(format!(
                "half_open_probes must be between 1 and 1000, not {}",
                self.half_open_probes
            ));
        }
        out
    }
}

fn default_consecutive_failures() -> u32 {
    5
}
fn default_error_rate() -> f64 {
    0.5
}
fn default_min_requests() -> u32 {
    20
}
fn default_window() -> Dur {
    Dur::secs(10)
}
fn default_open_for() -> Dur {
    Dur::secs(10)
}
fn default_half_open_probes() -> u32 {
    3
}

/// Outlier detection (passive health checking): a target whose real requests fail several
/// times in a row is taken out of rotation for a while, without waiting for a health check.
/// Ejection times grow for a target that keeps failing: `base_ejection_time` × the number of
/// its recent ejections, up to `max_ejection_time`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// 5xx responses in a row (response timeouts count as 504) that eject a target. A response
    /// below 500 starts the count over.
    #[serde(default = "default_consecutive")]
    #[schemars(range(min = 1))]
    pub consecutive_5xx: u32,
    /// Connect errors in a row (refused, connect timeout, TLS failure) that eject a target.
    /// Any response starts the count over. Counted apart from 5xx, like Envoy's
    /// `consecutive_local_origin_failure`.
    #[serde(default = "default_consecutive")]
    #[schemars(range(min = 1))]
    pub consecutive_connect_errors: u32,
    /// How long a first ejection lasts; the n-th in a row lasts n times as long. The count
    /// drops by one for every `base_ejection_time` the target then behaves.
    #[serde(default = "default_base_ejection_time")]
    pub base_ejection_time: Dur,
    /// The longest an ejection lasts.
    #[serde(default = "default_max_ejection_time")]
    pub max_ejection_time: Dur,
    /// The largest share of the upstream's targets, in percent, ejected at once: a target is
    /// ejected only if the ejected ones, it included, stay within it. Below 100 at least one
    /// target always stays in rotation; a pool too small for the share ejects nothing (at 50,
    /// a single target is never ejected, two or three targets lose at most one). `0` turns
    /// ejection off; `100` may eject every target.
    #[serde(default = "default_max_ejection_percent")]
    #[schemars(range(min = 0, max = 100))]
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: default_consecutive(),
            consecutive_connect_errors: default_consecutive(),
            base_ejection_time: default_base_ejection_time(),
            max_ejection_time: default_max_ejection_time(),
            max_ejection_percent: default_max_ejection_percent(),
        }
    }
}

impl OutlierConfig {
    /// The values serde accepts but outlier detection cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        at_least_one(&mut out, "consecutive_5xx", self.consecutive_5xx);
        at_least_one(&mut out, "consecutive_connect_errors", self.consecutive_connect_errors);
        above_zero(&mut out, "base_ejection_time", self.base_ejection_time);
        if self.max_ejection_time < self.base_ejection_time {
            out.push("max_ejection_time must not be below base_ejection_time".to_string());
        }
        if self.max_ejection_percent > 100 {
            out.push(format!(
                "max_ejection_percent must be between 0 and 100, not {}",
                self.max_ejection_percent
            ));
        }
        out
    }
}

fn default_consecutive() -> u32 {
    5
}
fn default_base_ejection_time() -> Dur {
    Dur::secs(30)
}
fn default_max_ejection_time() -> Dur {
    Dur::secs(300)
}
fn default_max_ejection_percent() -> u32 {
    50
}

/// Retries of failed requests, on an upstream (for every route to it) or on a route (then it
/// replaces the upstream's). Connect errors are retried for every method, since the request
/// was not sent; listed statuses, response timeouts (as 504) and connections lost mid-request
/// (as 502) only for idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) unless
/// `allow_non_idempotent` is set. Requests with a streamed body are not retried. A retry budget
/// keeps retries from multiplying the load of an upstream that is failing.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Tries in all, the first one included: `3` is the first try and up to two retries, `1`
    /// turns retries off.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub attempts: u32,
    /// Response statuses that are retried (4xx or 5xx).
    #[serde(default = "default_on_status")]
    #[schemars(inner(range(min = 400, max = 599)))]
    pub on_status: Vec<u16>,
    /// Retry when no connection could be made to the target (refused, connect timeout, TLS
    /// failure). The next try goes to the target the balancer picks next.
    #[serde(default = "yes")]
    pub on_connect_error: bool,
    /// The first retry waits a random time up to this long; each further retry up to twice as
    /// long as the one before ("full jitter"), so that clients that failed together do not
    /// retry together.
    #[serde(default = "default_backoff_base")]
    pub backoff_base: Dur,
    /// The longest wait before a retry.
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Dur,
    /// Retries allowed per original request over `budget_window`, from 0.0 to 1.0: `0.2`
    /// adds at most 20 % to the upstream's load, also during an outage.
    #[serde(default = "default_budget_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub budget_ratio: f64,
    /// Retries a second allowed beyond `budget_ratio`, so that a route with little traffic can
    /// still retry.
    #[serde(default = "default_min_retries_per_sec")]
    pub min_retries_per_sec: u32,
    /// The rolling window the retry budget counts requests and retries over.
    #[serde(default = "default_budget_window")]
    pub budget_window: Dur,
    /// Also retry POST, PATCH and other non-idempotent requests after a listed status, a
    /// timeout or a lost connection. Only for routes whose backend tolerates duplicates (for
    /// instance through an idempotency key).
    #[serde(default)]
    pub allow_non_idempotent: bool,
    /// A request body up to this size (by its `Content-Length`) is read before the first try
    /// and kept, so that a retry can send it again. A larger body, or one of unknown length,
    /// streams to the first target and its request is not retried. `0`: only requests without a
    /// body are retried.
    #[serde(default = "default_buffer_body")]
    pub buffer_body: ByteSize,
    /// gRPC status codes that are retried (`unavailable`, `resource_exhausted`, …) when the
    /// target answers a gRPC request with the status in its response headers (a
    /// Trailers-Only answer: the call failed before any message). Retried whatever the method
    /// (gRPC calls are POSTs), like Envoy's `retry-on: unavailable`. The request's messages
    /// are kept for a retry up to `buffer_body` bytes as they stream.
    #[serde(default)]
    pub on_grpc: Vec<crate::grpc::GrpcCode>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: default_attempts(),
            on_status: default_on_status(),
            on_connect_error: true,
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
            budget_ratio: default_budget_ratio(),
            min_retries_per_sec: default_min_retries_per_sec(),
            budget_window: default_budget_window(),
            allow_non_idempotent: false,
            buffer_body: default_buffer_body(),
            on_grpc: Vec::new(),
        }
    }
}

impl RetryConfig {
    /// The values serde accepts but retries cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(1..=10).contains(&self.attempts) {
            out.push(format!(
                "attempts must be between 1 and 10 (tries in all, the first included), not {}",
                self.attempts
            ));
        }
        for status in &self.on_status {
            if !(400..=599).contains(status) {
                out.push(format!("on_status: {status} is not an error status (400 to 599)"));
            }
        }
        if self.backoff_max < self.backoff_base {
            out.push("backoff_max must not be below backoff_base".to_string());
        }
        if !(0.0..=1.0).contains(&self.budget_ratio) {
            out.push(format!(
                "budget_ratio must be between 0.0 and 1.0, not {}",
                self.budget_ratio
            ));
        } else if self.budget_ratio == 0.0 && self.min_retries_per_sec == 0 && self.attempts > 1 {
            out.push(
                "budget_ratio and min_retries_per_sec are both 0, which allows no retries; \
                 set attempts: 1 to turn retries off"
                    .to_string(),
            );
        }
        above_zero(&mut out, "budget_window", self.budget_window);
        out
    }
}

fn default_attempts() -> u32 {
    2
}
fn default_on_status() -> Vec<u16> {
    vec![502, 503, 504]
}
fn yes() -> bool {
    true
}
fn default_backoff_base() -> Dur {
    Dur::millis(25)
}
fn default_backoff_max() -> Dur {
    Dur::millis(250)
}
fn default_budget_ratio() -> f64 {
    0.2
}
fn default_min_retries_per_sec() -> u32 {
    10
}
fn default_budget_window() -> Dur {
    Dur::secs(10)
}
fn default_buffer_body() -> ByteSize {
    ByteSize(64 * 1024)
}

/// A cap on the requests in flight (through a route, or to an upstream), so that one slow
/// backend cannot take up every connection of the gateway. Requests over the cap are refused
/// with 503 at once, or wait in a short `queue` first. A request counts until its response has
/// been sent in full.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Requests in flight at most.
    #[schemars(range(min = 1))]
    pub max_inflight: u32,
    /// Let requests over the cap wait for a place instead of refusing them at once. Default:
    /// no queue.
    #[serde(default)]
    pub queue: Option<BulkheadQueueConfig>,
}

impl BulkheadConfig {
    /// The values serde accepts but a bulkhead cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        at_least_one(&mut out, "max_inflight", self.max_inflight);
        if let Some(q) = &self.queue {
            out.extend(q.problems().into_iter().map(|p| format!("queue: {p}")));
        }
        out
    }
}

/// The waiting line of a bulkhead: at most `max_waiting` requests wait, each at most
/// `max_wait`, first come first served; past either they are refused with 503.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkheadQueueConfig {
    /// Requests waiting at most; more are refused at once.
    #[serde(default = "default_max_waiting")]
    #[schemars(range(min = 1))]
    pub max_waiting: u32,
    /// How long a request waits at most before it is refused. Keep it short: it adds to the
    /// client's latency.
    #[serde(default = "default_max_wait")]
    pub max_wait: Dur,
}

impl Default for BulkheadQueueConfig {
    fn default() -> Self {
        BulkheadQueueConfig {
            max_waiting: default_max_waiting(),
            max_wait: default_max_wait(),
        }
    }
}

impl BulkheadQueueConfig {
    /// The values serde accepts but a bulkhead queue cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        at_least_one(&mut out, "max_waiting", self.max_waiting);
        above_zero(&mut out, "max_wait", self.max_wait);
        out
    }
}

fn default_max_waiting() -> u32 {
    100
}
fn default_max_wait() -> Dur {
    Dur::millis(500)
}

fn at_least_one(out: &mut Vec<String>, key: &str, value: u32) {
    if value == 0 {
        out.push(format!("{key} must be at least 1"));
    }
}

fn above_zero(out: &mut Vec<String>, key: &str, value: Dur) {
    if value.0 == Duration::ZERO {
        out.push(format!("{key} must be above 0"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_yaml::{parse, refused};
    use serde::de::DeserializeOwned;

    #[test]
    fn circuit_breaker() {
        let empty: CircuitBreakerConfig = parse("{}");
        assert_eq!(empty, CircuitBreakerConfig::default());
        assert_eq!(empty.consecutive_failures, 5);
        assert_eq!(empty.error_rate, 0.5);
        assert_eq!(empty.min_requests, 20);
        assert_eq!(empty.window, Dur::secs(10));
        assert_eq!(empty.open_for, Dur::secs(10));
        assert_eq!(empty.half_open_probes, 3);
        assert!(empty.problems().is_empty());

        let c: CircuitBreakerConfig = parse(
            "consecutive_failures: 3\nerror_rate: 0.25\nmin_requests: 50\n\
             window: 30s\nopen_for: 500ms\nhalf_open_probes: 1\n",
        );
        assert_eq!(
            c,
            CircuitBreakerConfig {
                consecutive_failures: 3,
                error_rate: 0.25,
                min_requests: 50,
                window: Dur::secs(30),
                open_for: Dur::millis(500),
                half_open_probes: 1,
            }
        );
        assert!(refused::<CircuitBreakerConfig>("open_after: 3").contains("unknown field"));

        let bad: CircuitBreakerConfig = parse(
            "consecutive_failures: 0\nerror_rate: 1.5\nmin_requests: 0\nwindow: 0s\nopen_for: 0\nhalf_open_probes: 0",
        );
        let p = bad.problems();
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(p[1].contains("error_rate") && p[1].contains("1.5"), "{p:#?}");
        let zero_rate = CircuitBreakerConfig {
            error_rate: 0.0,
            ..Default::default()
        };
        assert_eq!(zero_rate.problems().len(), 1);
        let nan_rate = CircuitBreakerConfig {
            error_rate: f64::NAN,
            ..Default::default()
        };
        assert_eq!(nan_rate.problems().len(), 1);
    }

    #[test]
    fn outlier() {
        let empty: OutlierConfig = parse("{}");
        assert_eq!(empty, OutlierConfig::default());
        assert_eq!((empty.consecutive_5xx, empty.consecutive_connect_errors), (5, 5));
        assert_eq!(empty.base_ejection_time, Dur::secs(30));
        assert_eq!(empty.max_ejection_time, Dur::secs(300));
        assert_eq!(empty.max_ejection_percent, 50);
        assert!(empty.problems().is_empty());

        let c: OutlierConfig = parse(
            "consecutive_5xx: 3\nconsecutive_connect_errors: 2\n\
             base_ejection_time: 5s\nmax_ejection_time: 1m\nmax_ejection_percent: 100\n",
        );
        assert_eq!(
            c,
            OutlierConfig {
                consecutive_5xx: 3,
                consecutive_connect_errors: 2,
                base_ejection_time: Dur::secs(5),
                max_ejection_time: Dur::secs(60),
                max_ejection_percent: 100,
            }
        );
        assert!(c.problems().is_empty());
        assert!(refused::<OutlierConfig>("consecutive_gateway_failure: 3").contains("unknown field"));

        let bad: OutlierConfig = parse(
            "consecutive_5xx: 0\nconsecutive_connect_errors: 0\nbase_ejection_time: 0s\nmax_ejection_percent: 150",
        );
        assert_eq!(bad.problems().len(), 4, "{:#?}", bad.problems());
        let inverted: OutlierConfig = parse("base_ejection_time: 2m\nmax_ejection_time: 1m");
        assert_eq!(
            inverted.problems(),
            ["max_ejection_time must not be below base_ejection_time"]
        );
    }

    #[test]
    fn retry() {
        let empty: RetryConfig = parse("{}");
        assert_eq!(empty, RetryConfig::default());
        assert_eq!(empty.attempts, 2);
        assert_eq!(empty.on_status, [502, 503, 504]);
        assert!(empty.on_connect_error);
        assert_eq!(
            (empty.backoff_base, empty.backoff_max),
            (Dur::millis(25), Dur::millis(250))
        );
        assert_eq!((empty.budget_ratio, empty.min_retries_per_sec), (0.2, 10));
        assert_eq!(empty.budget_window, Dur::secs(10));
        assert!(!empty.allow_non_idempotent);
        assert!(empty.problems().is_empty());

        let c: RetryConfig = parse(
            "attempts: 3\non_status: [429, 503]\non_connect_error: false\nbackoff_base: 100ms\nbackoff_max: 2s\n\
             budget_ratio: 0.1\nmin_retries_per_sec: 0\nbudget_window: 1m\nallow_non_idempotent: true\n\
             buffer_body: 1MiB\n",
        );
        assert_eq!(
            c,
            RetryConfig {
                attempts: 3,
                on_status: vec![429, 503],
                on_connect_error: false,
                backoff_base: Dur::millis(100),
                backoff_max: Dur::secs(2),
                budget_ratio: 0.1,
                min_retries_per_sec: 0,
                budget_window: Dur::secs(60),
                allow_non_idempotent: true,
                buffer_body: ByteSize(1024 * 1024),
                on_grpc: Vec::new(),
            }
        );
        assert!(c.problems().is_empty());
        assert!(refused::<RetryConfig>("retries: 2").contains("unknown field"));
        assert!(refused::<RetryConfig>("on_status: [70000]").contains("70000"));

        let bad: RetryConfig = parse(
            "attempts: 0\non_status: [200, 503]\nbackoff_base: 1s\n\
             backoff_max: 100ms\nbudget_ratio: 2\nbudget_window: 0s",
        );
        let p = bad.problems();
        assert_eq!(p.len(), 5, "{p:#?}");
        assert!(p[1].contains("200"), "{p:#?}");
        let starved: RetryConfig = parse("budget_ratio: 0\nmin_retries_per_sec: 0");
        assert_eq!(starved.problems().len(), 1);
        let off: RetryConfig = parse("attempts: 1\nbudget_ratio: 0\nmin_retries_per_sec: 0");
        assert!(off.problems().is_empty());
    }

    #[test]
    fn bulkhead() {
        let c: BulkheadConfig = parse("max_inflight: 100");
        assert_eq!(
            c,
            BulkheadConfig {
                max_inflight: 100,
                queue: None
            }
        );
        assert!(c.problems().is_empty());
        let q: BulkheadConfig = parse("max_inflight: 10\nqueue: {}");
        assert_eq!(q.queue, Some(BulkheadQueueConfig::default()));
        assert_eq!(
            BulkheadQueueConfig::default(),
            BulkheadQueueConfig {
                max_waiting: 100,
                max_wait: Dur::millis(500)
            }
        );
        let q: BulkheadConfig = parse("max_inflight: 10\nqueue:\n  max_waiting: 5\n  max_wait: 50ms\n");
        assert_eq!(
            q.queue,
            Some(BulkheadQueueConfig {
                max_waiting: 5,
                max_wait: Dur::millis(50)
            })
        );
        assert!(refused::<BulkheadConfig>("{}").contains("max_inflight"));
        assert!(refused::<BulkheadConfig>("max_inflight: 1\nqueue: {size: 3}").contains("unknown field"));
        let bad: BulkheadConfig = parse("max_inflight: 0\nqueue: {max_waiting: 0, max_wait: 0s}");
        assert_eq!(
            bad.problems(),
            [
                "max_inflight must be at least 1",
                "queue: max_waiting must be at least 1",
                "queue: max_wait must be above 0"
            ]
        );
    }

    /// Every key has a description (they are the editor's hover text and the reference docs),
    /// and every default the schema shows reads back as the parser's default.
    #[test]
    fn schemas_describe_every_key_and_show_the_defaults() {
        fn check<T: JsonSchema + DeserializeOwned + PartialEq + std::fmt::Debug>(empty: &str) {
            let schema = schemars::schema_for!(T).to_value();
            let props = schema["properties"].as_object().expect("properties");
            let mut with_defaults = serde_json::Map::new();
            for (key, prop) in props {
                let description = prop["description"].as_str().unwrap_or("");
                assert!(description.len() > 10, "{}.{key} has no description", T::schema_name());
                if let Some(d) = prop.get("default").filter(|d| !d.is_null()) {
                    with_defaults.insert(key.clone(), d.clone());
                }
            }
            let mut explicit: serde_json::Value = serde_saphyr::from_str(empty).unwrap();
            for (k, v) in with_defaults {
                explicit.as_object_mut().unwrap().entry(k).or_insert(v);
            }
            let text = serde_json::to_string(&explicit).unwrap();
            assert_eq!(parse::<T>(&text), parse::<T>(empty), "{text}");
        }
        check::<CircuitBreakerConfig>("{}");
        check::<OutlierConfig>("{}");
        check::<RetryConfig>("{}");
        check::<BulkheadConfig>("max_inflight: 8");
        check::<BulkheadQueueConfig>("{}");
    }
}
