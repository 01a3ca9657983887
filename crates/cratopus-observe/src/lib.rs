//! Observability of cratopus: the traffic log and the Prometheus metrics.

pub mod metrics;
pub mod traffic_log;

pub use metrics::{GatewayMetrics, RouteLabels, RouteMetrics, TargetHealth};
pub use traffic_log::{LogLine, TrafficLog};
