//! Uploaded certificates: parsed, checked to belong to their key, and described (domains,
//! expiry) for the API and for the nodes, which take them from Redis as the certificate
//! contract says: `cratopus:cert:<name>` (JSON with the PEMs), index hash `cratopus:certs`
//! (name → updated_ms), the name announced on channel `cratopus:certs`. The cluster-wide name
//! of an uploaded certificate is `<organization>/<name>`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What an upload holds, once checked.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// DNS names of the leaf's subjectAltName (its common name when it has none).
    pub domains: Vec<String>,
    /// RFC 3339 end of validity of the leaf.
    pub not_after: String,
}

/// Parses `cert_pem` (leaf first, then its chain) and `key_pem`, and checks that the key is the
/// leaf's. The error says what is wrong, for a 422.
pub fn parse(cert_pem: &str, key_pem: &str) -> Result<Parsed, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cert_pem: not a PEM certificate chain: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("cert_pem: no CERTIFICATE block".into());
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("key_pem: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("key_pem: unsupported key: {e}"))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signing)
        .keys_match()
        .map_err(|_| "key_pem: the key does not belong to the certificate (their public keys differ)".to_string())?;
    let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("cert_pem: cannot read the certificate: {e}"))?;
    let mut domains: Vec<String> = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = name {
                domains.push(d.to_ascii_lowercase());
            }
        }
    }
    if domains.is_empty() {
        domains.extend(
            x509.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let not_after = crate::rfc3339(x509.validity().not_after.timestamp().saturating_mul(1000));
    Ok(Parsed { domains, not_after })
}

/// Redis keys of the certificate contract (shared with the nodes and the ACME side).
pub const INDEX: &str = "cratopus:certs";
pub const CHANNEL: &str = "cratopus:certs";

pub fn key(cluster_name: &str) -> String {
    format!("cratopus:cert:{cluster_name}")
}

pub fn cluster_name(org: &str, name: &str) -> String {
    format!("{org}/{name}")
}

/// A certificate as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub name: String,
    pub domains: serde_json::Value,
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: String,
    pub updated_ms: i64,
}

/// Writes (`Some`) or removes (`None`) one certificate in Redis and announces its name.
pub async fn publish(
    redis: &cratopus_state::RedisLimiter,
    cluster_name: &str,
    cert: Option<&Stored>,
) -> Result<(), cratopus_state::StateError> {
    match cert {
        Some(c) => {
            let doc = serde_json::json!({"name": cluster_name, "domains": c.domains, "cert_pem": c.cert_pem,
                "key_pem": c.key_pem, "not_after": c.not_after, "source": "upload", "updated_ms": c.updated_ms});
            redis
                .set_persistent(&key(cluster_name), doc.to_string().as_bytes())
                .await?;
            redis
                .hset(INDEX, cluster_name, c.updated_ms.to_string().as_bytes())
                .await?;
        }
        None => {
            redis.delete(&key(cluster_name)).await?;
            redis.hash_del(INDEX, cluster_name).await?;
        }
    }
    redis.publish(CHANNEL, cluster_name.as_bytes()).await
}

/// Publishes every stored certificate that Redis lacks or holds an older copy of (Redis was
/// down during an upload, or restarted empty). Certificates Redis has and the database does
/// not (ACME's, or one deleted while Redis was down) are left alone.
pub async fn catch_up(redis: &cratopus_state::RedisLimiter, pool: &deadpool_postgres::Pool) -> Result<usize, String> {
    let index = redis.hgetall(INDEX).await.map_err(|e| e.to_string())?;
    let have: std::collections::HashMap<String, i64> = index
        .into_iter()
        .filter_map(|(k, v)| Some((k, std::str::from_utf8(&v).ok()?.parse().ok()?)))
        .collect();
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query("SELECT org, name, updated_ms FROM certificates", &[])
        .await
        .map_err(|e| e.to_string())?;
    let mut published = 0;
    for row in rows {
        let (org, name, updated): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        let cn = cluster_name(&org, &name);
        if have.get(&cn).is_some_and(|&h| h >= updated) {
            continue;
        }
        let Some(full) = client
            .query_opt(
                "SELECT domains, cert_pem, key_pem, not_after, updated_ms FROM certificates WHERE org = $1 AND name = $2",
                &[&org, &name],
            )
            .await
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        let stored = Stored {
            name,
            domains: full.get(0),
            cert_pem: full.get(1),
            key_pem: full.get(2),
            not_after: full.get(3),
            updated_ms: full.get(4),
        };
        publish(redis, &cn, Some(&stored)).await.map_err(|e| e.to_string())?;
        tracing::info!(certificate = %cn, "certificate published again");
        published += 1;
    }
    Ok(published)
}
