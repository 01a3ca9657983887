//! Uploaded certificates: parsed, checked to belong to their key, and described (domains,
//! expiry) for the API and for the nodes, which take them from Redis
//! (`cratopus:cert:<name>`, index `cratopus:certs`, announced on channel `cratopus:certs`).

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
