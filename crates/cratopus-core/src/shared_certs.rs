//! The certificates of a cluster's store, as this node serves them.
//!
//! A node of a cluster (gateway.yaml with `cluster:`) reads every certificate of the store at
//! start and each one announced afterwards (cratopus-server's `cluster_certs`), and keeps them
//! here: ACME certificates ordered by any node and certificates uploaded through the control
//! plane alike. The TLS resolvers ([`crate::tls`]) look a ClientHello's name up here after the
//! organization's own certificate files and ACME certificate, before the gateway's default:
//! an organization's files always win over the store (a local decision is never overridden
//! from afar), and the store wins over a catch-all default.
//!
//! Lookups run at every handshake, so the index is an immutable map swapped whole (one atomic
//! load, no lock) when a certificate arrives or goes; on a node outside a cluster it stays
//! empty and costs one load and one branch.

use crate::tls::{CertMeta, certified_key_from_pem, choose};
use arc_swap::ArcSwap;
use cratopus_config::cluster_certs::{CertRecord, CertSource};
use rustls::SignatureScheme;
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One certificate of the store, parsed.
#[derive(Debug, Clone)]
pub struct SharedCert {
    pub name: String,
    /// Lower case; `*.example.com` covers one label under `example.com`.
    pub domains: Vec<String>,
    pub key: Arc<CertifiedKey>,
    pub meta: CertMeta,
    pub source: CertSource,
    pub updated_ms: u64,
}

impl SharedCert {
    /// Parses a stored record: its chain and key must make a usable pair and its name and
    /// domains must be valid names.
    pub fn from_record(r: &CertRecord) -> Result<SharedCert, String> {
        if !CertRecord::valid_name(&r.name) {
            return Err(format!("invalid certificate name `{}`", r.name));
        }
        if r.domains.is_empty() {
            return Err(format!("certificate `{}` has no domains", r.name));
        }
        let mut domains = Vec::with_capacity(r.domains.len());
        for d in &r.domains {
            if !CertRecord::valid_name(d) {
                return Err(format!("certificate `{}`: invalid domain `{d}`", r.name));
            }
            domains.push(d.to_ascii_lowercase());
        }
        let (key, meta) =
            certified_key_from_pem(&r.cert_pem, &r.key_pem).map_err(|e| format!("certificate `{}`: {e}", r.name))?;
        Ok(SharedCert {
            name: r.name.clone(),
            domains,
            key,
            meta,
            source: r.source,
            updated_ms: r.updated_ms,
        })
    }

    /// Whether it covers every one of `names` (exact names only; wildcards cover one label).
    pub fn covers(&self, names: &[String]) -> bool {
        names.iter().all(|n| {
            self.domains.iter().any(|d| match d.strip_prefix("*.") {
                Some(parent) => n.split_once('.').is_some_and(|(_, rest)| rest == parent),
                None => d == n,
            })
        })
    }
}

/// Name → certificates, for the resolvers.
#[derive(Debug, Default)]
struct Index {
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// `example.com` for `*.example.com`.
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
}

/// The store's certificates on this node; one per gateway, carried across reloads (it lives in
/// the [`crate::tls::AcmeStore`]).
#[derive(Debug, Default)]
pub struct SharedCerts {
    certs: Mutex<HashMap<String, SharedCert>>,
    index: ArcSwap<Index>,
}

impl SharedCerts {
    /// Adds or replaces the certificate of `cert.name`, unless the one held is newer; whether
    /// it was taken.
    pub fn upsert(&self, cert: SharedCert) -> bool {
        let mut certs = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        if certs
            .get(&cert.name)
            .is_some_and(|held| held.updated_ms > cert.updated_ms)
        {
            return false;
        }
        certs.insert(cert.name.clone(), cert);
        self.reindex(&certs);
        true
    }

    /// Forgets the certificate `name`; whether there was one.
    pub fn remove(&self, name: &str) -> bool {
        let mut certs = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        let removed = certs.remove(name).is_some();
        if removed {
            self.reindex(&certs);
        }
        removed
    }

    /// The certificate `name`, if held.
    pub fn get(&self, name: &str) -> Option<SharedCert> {
        self.certs.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Every held certificate's name and `updated_ms`, sorted by name.
    pub fn versions(&self) -> Vec<(String, u64)> {
        let certs = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = certs.values().map(|c| (c.name.clone(), c.updated_ms)).collect();
        v.sort();
        v
    }

    /// Every held certificate, sorted by name (for the admin API).
    pub fn all(&self) -> Vec<SharedCert> {
        let certs = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = certs.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn reindex(&self, certs: &HashMap<String, SharedCert>) {
        let mut index = Index::default();
        // Newest first, so that of two certificates for one name the newer one is chosen.
        let mut sorted: Vec<&SharedCert> = certs.values().collect();
        sorted.sort_by(|a, b| b.updated_ms.cmp(&a.updated_ms).then_with(|| a.name.cmp(&b.name)));
        for c in sorted {
            for d in &c.domains {
                let (map, key) = match d.strip_prefix("*.") {
                    Some(parent) => (&mut index.wildcard, parent),
                    None => (&mut index.exact, d.as_str()),
                };
                map.entry(key.to_string()).or_default().push(c.key.clone());
            }
        }
        self.index.store(Arc::new(index));
    }

    /// The certificate for a server name (lower case, no trailing dot): one for the exact name,
    /// else one for the wildcard of its parent; of several, one whose key can sign with a
    /// scheme the client offers.
    pub fn resolve(&self, name: &str, schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let index = self.index.load();
        if index.exact.is_empty() && index.wildcard.is_empty() {
            return None;
        }
        if let Some(c) = index.exact.get(name).and_then(|c| choose(c, schemes)) {
            return Some(c);
        }
        let (_, parent) = name.split_once('.')?;
        index.wildcard.get(parent).and_then(|c| choose(c, schemes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str, domains: &[&str], updated_ms: u64) -> SharedCert {
        let key = test_key();
        SharedCert {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            key,
            meta: CertMeta::default(),
            source: CertSource::Upload,
            updated_ms,
        }
    }

    fn test_key() -> Arc<CertifiedKey> {
        // A key is all the index needs; any signing key does.
        let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(
            &rustls::pki_types::PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).unwrap(),
        )
        .unwrap();
        Arc::new(CertifiedKey::new(vec![], key))
    }

    use rustls::pki_types::pem::PemObject;
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPVVQC4+TFbaTRw0z
LqlUltZY90dKbesCt3oTlCS3BUyhRANCAASXv3E5YLNp4UjV2h+obvxJKdK+R6f3
hJ9HHqNIyEc53Jdxx6mCzX2+cSPLItWrG8glJYrL3+Jm7lZkWas4lQBw
-----END PRIVATE KEY-----
";

    #[test]
    fn exact_names_win_over_wildcards_which_cover_one_label_and_the_newest_record_stays() {
        let store = SharedCerts::default();
        assert!(store.resolve("api.acme.test", &[]).is_none());
        let wild = cert("wild", &["*.acme.test"], 1);
        let exact = cert("api", &["api.acme.test"], 1);
        let (wild_key, exact_key) = (wild.key.clone(), exact.key.clone());
        store.upsert(wild);
        store.upsert(exact);
        assert!(Arc::ptr_eq(&store.resolve("api.acme.test", &[]).unwrap(), &exact_key));
        assert!(Arc::ptr_eq(&store.resolve("www.acme.test", &[]).unwrap(), &wild_key));
        assert!(store.resolve("a.b.acme.test", &[]).is_none());
        assert!(store.resolve("acme.test", &[]).is_none());
        assert!(
            !store.upsert(cert("api", &["api.acme.test"], 0)),
            "older than the one held"
        );
        assert!(store.remove("api"));
        assert!(Arc::ptr_eq(&store.resolve("api.acme.test", &[]).unwrap(), &wild_key));
        assert!(store.get("wild").unwrap().covers(&["x.acme.test".into()]));
        assert!(!store.get("wild").unwrap().covers(&["acme.test".into()]));
    }
}
