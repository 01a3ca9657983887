//! Client address rules: allow and deny lists per organization and route, and the client
//! address itself when trusted proxies stand in front of the gateway.

use cratopus_config::IpRulesConfig;
use http::HeaderMap;
use std::net::IpAddr;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| format!("`{s}` is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        self.addr.is_ipv4() == ip.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(bits.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(bits.into())
        }
    }
}

/// Compiled allow and deny lists.
#[derive(Debug, Clone, Default)]
pub struct IpRules {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

impl IpRules {
    pub fn compile(c: &IpRulesConfig) -> Result<IpRules, String> {
        let parse = |v: &Vec<String>| v.iter().map(|s| Cidr::parse(s)).collect::<Result<Vec<_>, _>>();
        Ok(IpRules {
            allow: parse(&c.allow)?,
            deny: parse(&c.deny)?,
        })
    }

    /// Denied when in `deny`, or when `allow` is set and the address is not in it.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|c| c.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
    }
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the last address
/// in `X-Forwarded-For` that is not one (proxies append, so the addresses right of it were
/// written by proxies we trust and the one at it by the client's side). A malformed entry
/// stops the walk at the last trusted hop.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    if trusted.is_empty() || !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let mut client = peer;
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for part in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Ok(ip) = part.trim().parse::<IpAddr>() else {
            return client;
        };
        client = ip;
        if !trusted.iter().any(|c| c.contains(ip)) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn allow_and_deny() {
        let r = IpRules::compile(&IpRulesConfig {
            allow: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            deny: vec!["10.0.0.13".into()],
        })
        .unwrap();
        assert!(r.permits("10.1.2.3".parse().unwrap()));
        assert!(!r.permits("10.0.0.13".parse().unwrap()));
        assert!(!r.permits("192.168.0.1".parse().unwrap()));
        assert!(r.permits("2001:db8::1".parse().unwrap()));
        assert!(IpRules::default().permits("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 198.51.100.7"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is ignored.
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        // Garbage stops at the last trusted hop.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("nonsense, 10.0.0.3"));
        assert_eq!(client_ip(proxy, &h, &trusted), "10.0.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }
}
