//! Certificates in a cluster: the key type of ACME certificates (`tls.acme.key_type`), and the
//! record a certificate is stored as in Redis ([`CertRecord`], under
//! [`crate::cluster::keys::cert`]), written by the node that ordered it from ACME or by the
//! control plane for an uploaded one, and read by every node.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The key of an ACME certificate.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AcmeKeyType {
    /// ECDSA on P-256 with SHA-256: every client supports it (the default).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
}

/// Where a stored certificate came from.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// Ordered from ACME by a node of the cluster (the one holding the order's lock).
    Acme,
    /// Uploaded through the control plane.
    Upload,
}

/// A certificate as the cluster stores it: the JSON string at `cratopus:cert:<name>`, listed in
/// the hash `cratopus:certs` (field: name, value: `updated_ms`); a change is announced by
/// publishing the name on the channel `cratopus:certs` (a name whose key is gone was deleted).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertRecord {
    /// The record's name: for an ACME certificate its first (sorted) domain.
    pub name: String,
    /// The names it is served for: exact, or `*.example.com` for one label under a domain.
    pub domains: Vec<String>,
    /// PEM chain, leaf first.
    pub cert_pem: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
    /// RFC 3339 end of validity (informative; the certificate itself is authoritative).
    #[serde(default)]
    pub not_after: Option<String>,
    pub source: CertSource,
    /// Milliseconds since the epoch of the last write: a node keeps the newest.
    pub updated_ms: u64,
}

impl CertRecord {
    /// Whether `name` is one a record name may be: non-empty, at most 255 bytes, of letters,
    /// digits, `.`, `-`, `_` and a leading `*` (it is used in a Redis key and a file name).
    pub fn valid_name(name: &str) -> bool {
        let body = name.strip_prefix("*.").unwrap_or(name);
        !body.is_empty()
            && name.len() <= 255
            && !body.starts_with('.')
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_the_contracts_json() {
        let text = r#"{"name":"api.acme.test","domains":["api.acme.test","*.acme.test"],
            "cert_pem":"C","key_pem":"K","not_after":"2027-01-01T00:00:00Z","source":"upload","updated_ms":7}"#;
        let r: CertRecord = serde_json::from_str(text).unwrap();
        assert_eq!(r.source, CertSource::Upload);
        assert_eq!(r.domains[1], "*.acme.test");
        assert!(CertRecord::valid_name("api.acme.test"));
        assert!(CertRecord::valid_name("*.acme.test"));
        assert!(!CertRecord::valid_name("../etc/passwd"));
        assert!(!CertRecord::valid_name(""));
        assert!(!CertRecord::valid_name("a b"));
    }
}
