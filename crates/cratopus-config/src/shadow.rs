//! The serde type of a route's shadow traffic (`shadow:`): a share of the route's requests is
//! copied to another upstream of the organization, whose answers are discarded and only
//! measured. The runtime is `cratopus_upstream::backend::Shadow`.

use crate::units::{ByteSize, Dur};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// The upstream (of the same organization) that gets the copies.
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    /// Share of the route's requests copied, in percent (0–100).
    #[serde(default = "default_percent")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: f64,
    /// Largest request body copied; a request with a larger body, or a streamed one of unknown
    /// length, is not copied (and counted as skipped).
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Copies in flight at once; when the shadow is slow and they are all out, further copies
    /// are dropped (and counted) rather than queued.
    #[serde(default = "default_max_in_flight")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_in_flight: u32,
    /// How long a copy may take before it is abandoned.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
}

fn default_percent() -> f64 {
    100.0
}
fn default_max_body() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_max_in_flight() -> u32 {
    100
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}

impl ShadowConfig {
    /// Values serde accepts but the runtime cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(0.0..=100.0).contains(&self.percent) || self.percent.is_nan() {
            out.push(format!("percent must be between 0 and 100, not {}", self.percent));
        }
        if self.max_in_flight == 0 {
            out.push("max_in_flight must be at least 1".into());
        }
        if self.timeout.0.is_zero() {
            out.push("timeout must be more than 0".into());
        }
        out
    }
}
