//! The `cluster:` section of gateway.yaml, the config bundle that the control plane publishes,
//! and the names of every Redis key and channel that the nodes and the control plane share.
//!
//! A node of a cluster keeps its own gateway.yaml (listeners, admin, state, limits, TLS files);
//! what the cluster distributes are organizations. A *bundle* is one numbered version of them:
//! the control plane stores it in Redis under [`keys::config_version`], sets
//! [`keys::CONFIG_CURRENT`] and announces the number on [`keys::CONFIG_CHANNEL`]; a node loads
//! its gateway.yaml with the bundle's organizations added ([`crate::load::load_with_bundle`]),
//! swaps it in as a reload does and reports the version it runs in [`keys::NODES`].
//!
//! Every key is a single string or hash, so a Redis Cluster needs no hash tags and no
//! multi-key command.

use crate::policies::RedisConfig;
use crate::units::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A gateway node that takes its organizations from the cluster (the control plane, through
/// Redis) as well as from its own files.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster; the control plane lists nodes by it.
    /// Default: the machine's host name.
    #[serde(default)]
    pub node: Option<String>,
    /// The Redis that carries config versions, certificates, challenge tokens and target state.
    pub redis: RedisConfig,
    /// Where the node keeps the last config version it ran, to start from it when Redis is
    /// unreachable. Relative to gateway.yaml. Default: `cratopus-cluster.json` beside it.
    #[serde(default)]
    pub cache_file: Option<String>,
    /// How often the node reports the version it runs and checks for a version it missed.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: Dur,
}

fn default_heartbeat() -> Dur {
    Dur::secs(5)
}

/// One version of the cluster's organizations, as the control plane publishes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bundle {
    /// Increases by one with every accepted change (a restore is a change too).
    pub version: u64,
    /// Every organization of the cluster, by name.
    pub organizations: Vec<BundleOrg>,
    /// RFC 3339 time of the change that made this version.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// One organization of a [`Bundle`]: the same document as an organization YAML file, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BundleOrg {
    pub name: String,
    pub document: serde_json::Value,
}

impl Bundle {
    /// The organizations as documents to load: a virtual file name each (which errors name,
    /// `cluster/v7/acme.json`) and the document's text, pretty-printed so that an error has a
    /// useful line.
    pub fn documents(&self) -> Vec<(std::path::PathBuf, String)> {
        self.organizations
            .iter()
            .map(|o| {
                let file = std::path::PathBuf::from(format!("cluster/v{}/{}.json", self.version, o.name));
                let text = serde_json::to_string_pretty(&o.document).unwrap_or_default();
                (file, text)
            })
            .collect()
    }
}

/// The Redis keys and channels of a cluster. All start with `cratopus:`.
pub mod keys {
    /// String: the number of the current config version.
    pub const CONFIG_CURRENT: &str = "cratopus:config:current";
    /// Pub/sub channel: the number of a version just stored (a node fetches it).
    pub const CONFIG_CHANNEL: &str = "cratopus:config";
    /// Hash: node name → JSON `{"name","version","seen_ms","started_ms","error"}`, written by
    /// each node at every heartbeat and right after a swap (or a rejected version).
    pub const NODES: &str = "cratopus:nodes";

    /// String: the JSON [`super::Bundle`] of version `n`.
    pub fn config_version(n: u64) -> String {
        format!("cratopus:config:v:{n}")
    }

    /// String: the counter `cratopus push` takes version numbers from (`INCR`, lifted above
    /// [`CONFIG_CURRENT`] and the versions the nodes report, so that two pushers never take the
    /// same number and a Redis that lost its data does not hand out numbers the nodes ignore).
    pub const CONFIG_NEXT: &str = "cratopus:config:next";
    /// Hash: certificate name → `updated_ms` of its record (the index of stored certificates).
    pub const CERTS: &str = "cratopus:certs";
    /// Pub/sub channel: the name of a certificate just stored, replaced or deleted.
    pub const CERTS_CHANNEL: &str = "cratopus:certs";

    /// String: the JSON [`crate::cluster_certs::CertRecord`] of certificate `name`.
    pub fn cert(name: &str) -> String {
        format!("cratopus:cert:{name}")
    }

    /// String (`SET NX PX`, kept while the order runs): the node ordering the ACME certificate
    /// whose first domain is `domain`, as `<node>/<random>`.
    pub fn acme_lock(domain: &str) -> String {
        format!("cratopus:acme:lock:{domain}")
    }

    /// String (`EX 600`): the key authorization of a pending HTTP-01 challenge, so that any
    /// node the CA reaches can answer it.
    pub fn acme_challenge(token: &str) -> String {
        format!("cratopus:acme:challenge:{token}")
    }

    /// Pub/sub channel: a target one node found down or up again, JSON `{"i","node",
    /// "upstream","target","down","cause","for_ms"}` (`upstream` is `org/name`, `target` the
    /// address, `cause` `health`, `outlier` or `breaker`, `for_ms` how long the mark holds).
    pub const TARGETS_CHANNEL: &str = "cratopus:targets";
    /// Hash: node name → ms time of its last in-flight report (readers skip stale nodes).
    pub const INFLIGHT_NODES: &str = "cratopus:inflight:nodes";

    /// Hash of one node's in-flight requests: `org/upstream|address` → count. Rewritten every
    /// second with a 3 s TTL, so a node that stops leaves nothing behind.
    pub fn inflight(node: &str) -> String {
        format!("cratopus:inflight:{node}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_reads_back_and_names_its_documents() {
        let b = Bundle {
            version: 7,
            organizations: vec![BundleOrg {
                name: "acme".into(),
                document: serde_json::json!({"name": "acme", "routes": []}),
            }],
            created_at: None,
        };
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Bundle>(&text).unwrap(), b);
        let docs = b.documents();
        assert_eq!(docs[0].0, std::path::PathBuf::from("cluster/v7/acme.json"));
        assert!(docs[0].1.contains("\"routes\": []"));
        assert_eq!(keys::config_version(7), "cratopus:config:v:7");
    }

    fn bundle(document: serde_json::Value) -> Bundle {
        Bundle {
            version: 3,
            organizations: vec![BundleOrg {
                name: "acme".into(),
                document,
            }],
            created_at: None,
        }
    }

    const GATEWAY: &str = "organizations:\n  - name: local\n    routes:\n      - path: /\n        upstream: m\n    upstreams:\n      m: {targets: [\"mirror://\"]}\n";

    #[test]
    fn a_bundle_adds_its_organizations_to_the_nodes_own() {
        let b = bundle(serde_json::json!({
            "name": "acme",
            "domains": ["api.acme.test"],
            "upstreams": {"m": {"targets": ["mirror://"]}},
            "routes": [{"path": "/x/${NOT_INTERPOLATED}", "upstream": "m"}]
        }));
        let cfg = crate::load_with_bundle(std::path::Path::new("/etc/cratopus/gateway.yaml"), GATEWAY, &b).unwrap();
        let names: Vec<&str> = cfg.orgs.iter().map(|o| o.config.name.value.as_str()).collect();
        assert_eq!(names, ["local", "acme"]);
        assert_eq!(cfg.orgs[1].config.routes[0].path.value, "/x/${NOT_INTERPOLATED}");
        assert!(!cfg.files.iter().any(|f| f.starts_with("cluster")), "nothing to watch");
    }

    #[test]
    fn an_error_in_a_bundle_names_its_document_and_line() {
        let b = bundle(serde_json::json!({
            "name": "acme",
            "domains": ["api.acme.test"],
            "routes": [{"path": "/x", "upstream": "nowhere"}]
        }));
        let err = crate::load_with_bundle(std::path::Path::new("gateway.yaml"), GATEWAY, &b)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster/v3/acme.json:"), "{err}");
        assert!(err.contains("nowhere"), "{err}");
    }
}
