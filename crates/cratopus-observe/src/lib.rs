//! Observability of cratopus. Today: the traffic log.

pub mod traffic_log;

pub use traffic_log::{LogLine, TrafficLog};
