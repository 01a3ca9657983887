//! Observability of cratopus: the traffic log, the Prometheus metrics and the
//! export of request spans over OTLP.

pub mod metrics;
pub mod spans;
pub mod split_metrics;
pub mod traffic_log;
pub mod ws_metrics;

pub use metrics::{GatewayMetrics, RouteLabels, RouteMetrics, TargetHealth};
pub use traffic_log::{LogLine, TrafficLog};
