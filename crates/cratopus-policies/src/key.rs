//! The counter key of a request under a limit or quota.

use crate::auth::Identity;
use cratopus_config::{RateKey, StateScope};
use http::HeaderMap;
use std::fmt::Write;
use std::net::IpAddr;

/// Writes `<policy id>|<what the key selects>` into `out`: the client address, the value of a
/// header (empty when the request has none, so such requests share one counter), nothing for
/// one counter per policy, or the consumer or a JWT claim (`c:`/`j:`-prefixed so they cannot
/// collide with an address; the client address when the request has none).
pub fn write_key(
    out: &mut String,
    policy: &str,
    key: &RateKey,
    headers: &HeaderMap,
    client: IpAddr,
    identity: Option<&Identity>,
) {
    out.clear();
    out.push_str(policy);
    out.push('|');
    match key {
        RateKey::ClientIp => {
            let _ = write!(out, "{client}");
        }
        RateKey::Route => {}
        RateKey::Header(name) => {
            if let Some(v) = headers.get(name.as_str()) {
                out.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
        }
        RateKey::Consumer => match identity.and_then(|i| i.consumer.as_ref()) {
            Some(c) => {
                out.push_str("c:");
                out.push_str(&c.id);
            }
            None => {
                let _ = write!(out, "{client}");
            }
        },
        RateKey::Claim(name) => match identity.and_then(|i| i.claim(name)) {
            Some(v) => {
                out.push_str("j:");
                out.push_str(&v);
            }
            None => {
                let _ = write!(out, "{client}");
            }
        },
    }
}

/// Whether a limit or quota counts in the shared store: as it says, or as the gateway does
/// (`default`: the gateway has `state.redis`).
pub fn in_cluster(scope: Option<StateScope>, default: bool) -> bool {
    match scope {
        Some(StateScope::Local) => false,
        Some(StateScope::Cluster) => true,
        None => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn keys_separate_what_they_select() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let mut s = String::new();
        write_key(&mut s, "acme/route:a", &RateKey::ClientIp, &h, ip, None);
        assert_eq!(s, "acme/route:a|10.0.0.7");
        write_key(&mut s, "acme/route:a", &RateKey::Route, &h, ip, None);
        assert_eq!(s, "acme/route:a|");
        write_key(
            &mut s,
            "acme/route:a",
            &RateKey::Header("x-api-key".into()),
            &h,
            ip,
            None,
        );
        assert_eq!(s, "acme/route:a|k1");
        write_key(&mut s, "p", &RateKey::Header("x-other".into()), &h, ip, None);
        assert_eq!(s, "p|");
    }
}
