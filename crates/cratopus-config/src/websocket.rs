//! The serde type of a route's WebSocket settings (`websocket:`). Without the key, a route
//! relays WebSocket upgrades (HTTP/1.1 `Upgrade`, HTTP/2 extended CONNECT) to its upstream and
//! copies the bytes both ways; any of the three limits makes the gateway read the frames. The
//! runtime is `cratopus_core::websocket`.

use crate::units::{ByteSize, Dur};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    /// `false` refuses WebSocket upgrades on this route with 403 (as Envoy does for a route
    /// without an upgrade config); plain requests are served as before.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A socket with no message either way for this long is closed (close code 1001).
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
    /// Largest message (all of its frames) either side may send; a larger one closes the
    /// socket with close code 1009 to the client.
    #[serde(default)]
    pub max_message_size: Option<ByteSize>,
    /// Messages per second a client may send on one socket; over it the socket is closed with
    /// close code 1008 (policy violation).
    #[serde(default)]
    pub message_rate: Option<MessageRateConfig>,
}

/// A token bucket per socket: `per_second` messages, with room for `burst` at once.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRateConfig {
    #[schemars(range(min = 1))]
    pub per_second: u32,
    /// Messages that may arrive at once; default: `per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
}

fn yes() -> bool {
    true
}

impl WebSocketConfig {
    /// Whether the gateway reads frames on this route (a limit is set), rather than copying
    /// bytes.
    pub fn reads_frames(&self) -> bool {
        self.idle_timeout.is_some() || self.max_message_size.is_some() || self.message_rate.is_some()
    }

    /// Values serde accepts but the runtime cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.idle_timeout.is_some_and(|d| d.0.is_zero()) {
            out.push("idle_timeout must be more than 0".into());
        }
        if let Some(m) = self.max_message_size {
            if m.0 < 2 {
                out.push(format!("max_message_size must be at least 2 bytes, not {}", m.0));
            } else if usize::try_from(m.0).is_err() {
                out.push(format!("max_message_size {} is too large", m.0));
            }
        }
        if let Some(r) = &self.message_rate {
            if r.per_second == 0 {
                out.push("message_rate: per_second must be at least 1".into());
            }
            if r.burst == Some(0) {
                out.push("message_rate: burst must be at least 1".into());
            }
        }
        if !self.enabled && self.reads_frames() {
            out.push("limits are set but enabled is false: they would never apply".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_switch_frame_reading_on_and_bad_values_are_named() {
        let c: WebSocketConfig =
            serde_saphyr::from_str("idle_timeout: 30s\nmax_message_size: 64KiB\nmessage_rate: {per_second: 10}")
                .unwrap();
        assert!(c.reads_frames());
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let c: WebSocketConfig = serde_saphyr::from_str("enabled: true").unwrap();
        assert!(!c.reads_frames());
        let c: WebSocketConfig =
            serde_saphyr::from_str("enabled: false\nidle_timeout: 0s\nmessage_rate: {per_second: 0, burst: 0}")
                .unwrap();
        assert_eq!(c.problems().len(), 4, "{:?}", c.problems());
    }
}
