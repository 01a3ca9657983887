//! What operators change at run time through the admin API, beside the config: client
//! addresses blocked at once and routes switched off. These survive config reloads (they are
//! keyed by address and by organization and route name) and are lost on restart.
//!
//! The request path pays one atomic load per table when it is empty, as it usually is.

use arc_swap::ArcSwap;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

pub use cratopus_policies::ip_rules::Cidr;

#[derive(Debug, Default)]
pub struct Overrides {
    blocked: ArcSwap<Vec<Cidr>>,
    /// "organization\0route" of switched-off routes.
    disabled: ArcSwap<BTreeSet<String>>,
}

fn route_key(org: &str, route: &str) -> String {
    format!("{org}\0{route}")
}

impl Overrides {
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let blocked = self.blocked.load();
        !blocked.is_empty() && blocked.iter().any(|c| c.contains(ip))
    }

    pub fn is_disabled(&self, org: &str, route: &str) -> bool {
        let disabled = self.disabled.load();
        !disabled.is_empty() && disabled.contains(&route_key(org, route))
    }

    /// Blocks `cidr`; false if it was blocked already.
    pub fn block(&self, cidr: Cidr) -> bool {
        let mut added = false;
        self.blocked.rcu(|list| {
            let mut list = Vec::clone(list);
            added = !list.contains(&cidr);
            if added {
                list.push(cidr);
                list.sort();
            }
            list
        });
        added
    }

    /// Unblocks `cidr`; false if it was not blocked.
    pub fn unblock(&self, cidr: Cidr) -> bool {
        let mut removed = false;
        self.blocked.rcu(|list| {
            let mut list = Vec::clone(list);
            let before = list.len();
            list.retain(|c| *c != cidr);
            removed = list.len() != before;
            list
        });
        removed
    }

    pub fn blocked(&self) -> Vec<Cidr> {
        Vec::clone(&self.blocked.load())
    }

    /// Switches a route off (`true`) or on again (`false`).
    pub fn set_disabled(&self, org: &str, route: &str, disabled: bool) {
        let key = route_key(org, route);
        self.disabled.rcu(|set| {
            let mut set = BTreeSet::clone(set);
            if disabled {
                set.insert(key.clone());
            } else {
                set.remove(&key);
            }
            Arc::new(set)
        });
    }

    /// (organization, route) of every switched-off route.
    pub fn disabled(&self) -> Vec<(String, String)> {
        self.disabled
            .load()
            .iter()
            .filter_map(|k| k.split_once('\0').map(|(o, r)| (o.to_string(), r.to_string())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.9".parse().unwrap()));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn tables() {
        let o = Overrides::default();
        assert!(!o.is_blocked("10.0.0.1".parse().unwrap()));
        assert!(o.block(Cidr::parse("10.0.0.0/24").unwrap()));
        assert!(!o.block(Cidr::parse("10.0.0.0/24").unwrap()));
        assert!(o.is_blocked("10.0.0.1".parse().unwrap()));
        assert!(o.unblock(Cidr::parse("10.0.0.0/24").unwrap()));
        assert!(!o.is_blocked("10.0.0.1".parse().unwrap()));
        o.set_disabled("acme", "users", true);
        assert!(o.is_disabled("acme", "users"));
        assert!(!o.is_disabled("acme", "orders"));
        assert_eq!(o.disabled(), vec![("acme".to_string(), "users".to_string())]);
        o.set_disabled("acme", "users", false);
        assert!(!o.is_disabled("acme", "users"));
    }
}
