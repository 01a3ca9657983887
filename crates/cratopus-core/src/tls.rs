//! TLS termination, compiled: for each organization with TLS settings a rustls `ServerConfig`
//! (its certificates chosen by SNI, its client-certificate verifier), and one for every other
//! name (the gateway's default certificate, or a refusal).
//!
//! The listener reads the ClientHello first, asks [`TlsSnapshot::config_for`] for the config of
//! the name the client asked for, and finishes the handshake with it. Certificate files are
//! read when the config is compiled; ACME certificates live in the [`AcmeStore`], which is
//! carried from snapshot to snapshot and updated by the ACME manager while the gateway runs, as
//! do a cluster's stored certificates ([`crate::shared_certs`]).

use crate::router::HostTable;
use crate::shared_certs::SharedCerts;
use arc_swap::ArcSwapOption;
use cratopus_config::cluster_certs::AcmeKeyType;
use cratopus_config::{ClientAuthMode, ConfigError, LoadedConfig, UnknownSni, load::resolve_path};
use cratopus_upstream::tls::{provider, read_certs, read_key, read_roots};
use http::{HeaderName, HeaderValue};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureScheme};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// What the connection's TLS told us, for the requests on it.
#[derive(Debug)]
pub struct TlsConn {
    /// The organization whose TLS settings the handshake used (chosen by SNI).
    pub org: Option<Arc<str>>,
    /// The verified client certificate, if the client presented one.
    pub client_cert: Option<ClientCert>,
}

/// A verified client certificate: what later phases and upstreams may know of the client.
#[derive(Debug)]
pub struct ClientCert {
    /// The subject's distinguished name, e.g. `CN=alice, O=Acme`.
    pub subject: String,
    /// Subject alternative names: `DNS:…`, `URI:…`, `email:…`, `IP:…`.
    pub sans: Vec<String>,
    /// The forwarded header value: `Subject="…";DNS=…;URI=…;Email=…`.
    pub header: Option<HeaderValue>,
    /// Fingerprint, common name and alternative names, for `auth.mtls` to find the consumer.
    pub id: Arc<cratopus_policies::auth::CertId>,
}

impl ClientCert {
    /// Reads the subject and names of a DER certificate.
    pub fn parse(der: &[u8]) -> Option<ClientCert> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject().to_string();
        let mut sans = Vec::new();
        let mut header = format!("Subject=\"{}\"", subject.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            use x509_parser::extensions::GeneralName;
            for n in &ext.value.general_names {
                let (kind, key, value) = match n {
                    GeneralName::DNSName(d) => ("DNS", "DNS", d.to_string()),
                    GeneralName::URI(u) => ("URI", "URI", u.to_string()),
                    GeneralName::RFC822Name(e) => ("email", "Email", e.to_string()),
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b)
                                .ok()
                                .map(|a| std::net::IpAddr::from(a).to_string()),
                            16 => <[u8; 16]>::try_from(*b)
                                .ok()
                                .map(|a| std::net::IpAddr::from(a).to_string()),
                            _ => None,
                        };
                        match ip {
                            Some(ip) => ("IP", "IP", ip),
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                header.push_str(&format!(";{key}={value}"));
                sans.push(format!("{kind}:{value}"));
            }
        }
        let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok());
        let id = Arc::new(cratopus_policies::auth::CertId::new(der, common_name, &sans));
        Some(ClientCert {
            subject,
            sans,
            header: HeaderValue::from_bytes(header.as_bytes()).ok(),
            id,
        })
    }
}

/// An organization's client-certificate rule as requests see it.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// Requests without a certificate verified for this organization get 401.
    pub required: bool,
    /// Carries the certificate's subject and names upstream.
    pub header: HeaderName,
}

/// A certificate loaded from files, as the admin API lists it.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub org: Option<Arc<str>>,
    /// Names it is served for (`*`: every name of the organization; `default`: unknown names).
    pub serves: Vec<String>,
    pub file: PathBuf,
    pub names: Vec<String>,
    pub not_after: Option<SystemTime>,
}

/// An ACME certificate: its names, the current certificate (once there is one) and its state.
#[derive(Debug)]
pub struct AcmeCert {
    /// Sorted.
    pub domains: Vec<String>,
    pub current: ArcSwapOption<CertifiedKey>,
    pub status: Mutex<AcmeStatus>,
    /// Woken when another node's certificate for these names is adopted (a node waiting for
    /// the cluster's order looks again at once), and when the config changes.
    pub changed: tokio::sync::Notify,
}

/// Where an ACME certificate stands, for the log and the admin API.
#[derive(Debug, Clone, Default)]
pub struct AcmeStatus {
    /// `pending` (nothing yet), `issuing`, `valid`, `renewing`, `failed`.
    pub state: &'static str,
    pub not_after: Option<SystemTime>,
    pub renew_at: Option<SystemTime>,
    pub last_error: Option<String>,
    pub next_attempt: Option<SystemTime>,
    pub failures: u32,
    pub issued: u32,
}

/// ACME certificates, pending HTTP-01 challenges and, on a node of a cluster, the store's
/// certificates and the Redis that holds every node's challenges; one per gateway, carried
/// across reloads.
#[derive(Debug, Default)]
pub struct AcmeStore {
    certs: Mutex<HashMap<String, Arc<AcmeCert>>>,
    /// Token → key authorization, answered at `/.well-known/acme-challenge/<token>`.
    challenges: RwLock<HashMap<String, String>>,
    /// The cluster's stored certificates (empty outside a cluster).
    pub shared: SharedCerts,
    /// The cluster's Redis, where a token this node does not hold is looked up.
    cluster: std::sync::OnceLock<cratopus_state::RedisLimiter>,
}

impl AcmeStore {
    /// The entry for `domains` (sorted), made when new.
    pub fn entry(&self, domains: &[String]) -> Arc<AcmeCert> {
        let key = domains.join(",");
        let mut certs = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        certs
            .entry(key)
            .or_insert_with(|| {
                Arc::new(AcmeCert {
                    domains: domains.to_vec(),
                    current: ArcSwapOption::empty(),
                    status: Mutex::new(AcmeStatus {
                        state: "pending",
                        ..AcmeStatus::default()
                    }),
                    changed: tokio::sync::Notify::new(),
                })
            })
            .clone()
    }

    /// Every ACME certificate ever asked for since start.
    pub fn all(&self) -> Vec<Arc<AcmeCert>> {
        let certs = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = certs.values().cloned().collect();
        v.sort_by(|a, b| a.domains.cmp(&b.domains));
        v
    }

    pub fn set_challenge(&self, token: &str, key_authorization: &str) {
        if let Ok(mut c) = self.challenges.write() {
            c.insert(token.to_string(), key_authorization.to_string());
        }
    }

    pub fn clear_challenge(&self, token: &str) {
        if let Ok(mut c) = self.challenges.write() {
            c.remove(token);
        }
    }

    /// The key authorization for a challenge token, if one is pending.
    pub fn challenge(&self, token: &str) -> Option<String> {
        self.challenges.read().ok()?.get(token).cloned()
    }

    /// Makes this a node of a cluster whose challenges and certificates are in `redis` (once;
    /// later calls keep the first).
    pub fn join_cluster(&self, redis: cratopus_state::RedisLimiter) {
        let _ = self.cluster.set(redis);
    }

    /// The key authorization for a token: this node's, else (on a node of a cluster) the one
    /// another node wrote to Redis, within the Redis timeout. A token is base64url (RFC 8555
    /// §8.3); anything else is not looked up.
    pub async fn challenge_anywhere(&self, token: &str) -> Option<String> {
        if let Some(k) = self.challenge(token) {
            return Some(k);
        }
        let redis = self.cluster.get()?;
        let valid = !token.is_empty()
            && token.len() <= 256
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if !valid {
            return None;
        }
        let key = cratopus_config::cluster::keys::acme_challenge(token);
        match redis.get_bytes(&key).await {
            Ok(found) => found.and_then(|b| String::from_utf8(b).ok()),
            Err(e) => {
                tracing::warn!(token = %token, error = %e, "cannot look up an ACME challenge in redis");
                None
            }
        }
    }

    /// Serves `key` for the ACME certificates whose first name is `name` and whose names it
    /// covers, when it ends later than the one they serve (a certificate another node of the
    /// cluster ordered); whether any took it.
    pub fn adopt(&self, name: &str, covers: impl Fn(&[String]) -> bool, key: &Arc<CertifiedKey>) -> bool {
        let end = |k: &CertifiedKey| CertMeta::of(k.cert.first().map(|c| c.as_ref()).unwrap_or_default()).not_after;
        let new_end = end(key);
        let mut adopted = false;
        for cert in self.all() {
            if cert.domains.first().map(String::as_str) != Some(name) || !covers(&cert.domains) {
                continue;
            }
            let newer = match cert.current.load_full() {
                Some(cur) => !Arc::ptr_eq(&cur, key) && new_end > end(&cur),
                None => true,
            };
            if newer {
                cert.current.store(Some(key.clone()));
                if let Ok(mut s) = cert.status.lock() {
                    s.state = "valid";
                    s.not_after = new_end;
                }
                cert.changed.notify_waiters();
                adopted = true;
            }
        }
        adopted
    }
}

/// An organization that wants an ACME certificate.
#[derive(Debug, Clone)]
pub struct AcmeWant {
    pub org: Arc<str>,
    pub email: String,
    pub cert: Arc<AcmeCert>,
    pub key_type: AcmeKeyType,
}

/// The compiled TLS settings of one snapshot.
pub struct TlsSnapshot {
    /// Names → organization index, without the default organization.
    hosts: HostTable,
    /// Organization index → its config, for organizations with TLS settings.
    by_org: Vec<Option<(Arc<str>, Arc<ServerConfig>)>>,
    /// Every other name, and clients without SNI (`None` only if it could not be built).
    fallback: Option<Arc<ServerConfig>>,
    pub files: Vec<CertInfo>,
    pub acme: Arc<AcmeStore>,
    pub acme_wants: Vec<AcmeWant>,
}

impl std::fmt::Debug for TlsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSnapshot")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsSnapshot {
    /// The server config for a ClientHello's server name, and the organization it belongs to.
    pub fn config_for(&self, sni: Option<&str>) -> Option<(Option<Arc<str>>, Arc<ServerConfig>)> {
        let org = sni.and_then(|n| self.hosts.lookup(n));
        match org.and_then(|i| self.by_org.get(i)).and_then(Option::as_ref) {
            Some((name, cfg)) => Some((Some(name.clone()), cfg.clone())),
            None => self.fallback.clone().map(|c| (None, c)),
        }
    }
}

/// Picks, among certificates for one name, the first whose key can sign with a scheme the
/// client offers (an ECDSA one for a client that offers ECDSA first in our list, else RSA).
pub(crate) fn choose(certs: &[Arc<CertifiedKey>], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
    certs
        .iter()
        .find(|c| c.key.choose_scheme(schemes).is_some())
        .or_else(|| certs.first())
        .cloned()
}

/// Chooses an organization's certificate by SNI: a certificate for the exact name, then for the
/// longest wildcard, then the ACME certificate (once issued), then the organization-wide ones,
/// then one of the cluster's store (exact, then wildcard), then the gateway's default.
#[derive(Debug)]
struct OrgResolver {
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// `.acme.test` for `*.acme.test`.
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
    acme: Option<Arc<AcmeCert>>,
    org_wide: Vec<Arc<CertifiedKey>>,
    store: Arc<AcmeStore>,
    default: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for OrgResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        let sni = hello
            .server_name()
            .map(|n| crate::router::lower_case(n.trim_end_matches('.')));
        if let Some(name) = &sni {
            let name = name.as_ref();
            if let Some(c) = self.exact.get(name).and_then(|c| choose(c, schemes)) {
                return Some(c);
            }
            for (i, _) in name.match_indices('.') {
                if let Some(c) = self.wildcard.get(&name[i..]).and_then(|c| choose(c, schemes)) {
                    return Some(c);
                }
            }
            if let Some(a) = &self.acme
                && a.domains.iter().any(|d| d == name)
                && let Some(c) = a.current.load_full()
            {
                return Some(c);
            }
        }
        choose(&self.org_wide, schemes)
            .or_else(|| sni.and_then(|n| self.store.shared.resolve(&n, schemes)))
            .or_else(|| self.default.clone())
    }
}

/// Names of no organization with TLS settings: a certificate of the cluster's store for the
/// name, else the gateway's default, or none (a refusal).
#[derive(Debug)]
struct Fallback {
    store: Arc<AcmeStore>,
    default: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Fallback {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|n| {
                let n = crate::router::lower_case(n.trim_end_matches('.'));
                self.store.shared.resolve(&n, hello.signature_schemes())
            })
            .or_else(|| self.default.clone())
    }
}

/// Loads a certificate chain and its key, checking that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, CertMeta), String> {
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    let ck = CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| {
        format!(
            "`{}` and `{}` do not make a usable pair: {e}",
            cert.display(),
            key.display()
        )
    })?;
    let meta = CertMeta::of(ck.cert.first().map(|c| c.as_ref()).unwrap_or_default());
    Ok((Arc::new(ck), meta))
}

/// A certificate chain and key from PEM text (as an ACME server hands them out).
pub fn certified_key_from_pem(chain: &str, key: &str) -> Result<(Arc<CertifiedKey>, CertMeta), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the chain".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| format!("not a PEM private key: {e}"))?;
    let ck = CertifiedKey::from_der(certs, key, &provider()).map_err(|e| format!("unusable certificate: {e}"))?;
    let meta = CertMeta::of(ck.cert.first().map(|c| c.as_ref()).unwrap_or_default());
    Ok((Arc::new(ck), meta))
}

/// What the gateway reads from a leaf certificate.
#[derive(Debug, Clone, Default)]
pub struct CertMeta {
    pub names: Vec<String>,
    pub not_before: Option<SystemTime>,
    pub not_after: Option<SystemTime>,
}

impl CertMeta {
    pub fn of(der: &[u8]) -> CertMeta {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return CertMeta::default();
        };
        let time = |t: x509_parser::time::ASN1Time| {
            u64::try_from(t.timestamp())
                .ok()
                .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s))
        };
        let mut names = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for n in &ext.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_string());
                }
            }
        }
        CertMeta {
            names,
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
        }
    }
}

type Spanned = cratopus_config::Spanned<String>;

/// Loads the pair named in file `f`; a problem is an error at the `cert` line.
fn load(
    f: &Path,
    cert: &Spanned,
    key: &Spanned,
    errors: &mut Vec<ConfigError>,
) -> Option<(Arc<CertifiedKey>, CertMeta, PathBuf)> {
    let (cp, kp) = (resolve_path(f, &cert.value), resolve_path(f, &key.value));
    match load_certified_key(&cp, &kp) {
        Ok((ck, meta)) => {
            if meta.not_after.is_some_and(|t| t < SystemTime::now()) {
                tracing::warn!(cert = %cp.display(), "certificate has expired");
            }
            Some((ck, meta, cp))
        }
        Err(e) => {
            errors.push(ConfigError::at(f, &cert.referenced, format!("certificate: {e}")));
            None
        }
    }
}

fn server_config(
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless session tickets (TLS 1.2 and 1.3): a returning client skips the full handshake.
    if let Ok(t) = rustls::crypto::aws_lc_rs::Ticketer::new() {
        cfg.ticketer = t;
    }
    Ok(Arc::new(cfg))
}

/// The compiled TLS side of one organization, for the request phases.
#[derive(Debug, Clone, Default)]
pub struct OrgTls {
    pub hsts: Option<HeaderValue>,
    pub client_auth: Option<ClientAuth>,
}

/// Compiles the TLS settings of `cfg`. `acme` is the store of the snapshot being replaced (or a
/// new one). Returns the per-organization request settings, indexed like `cfg.orgs`.
pub fn compile(cfg: &LoadedConfig, acme: Arc<AcmeStore>, errors: &mut Vec<ConfigError>) -> (TlsSnapshot, Vec<OrgTls>) {
    let gw = &cfg.gateway;
    let file = cfg.file.as_path();
    let mut files = Vec::new();

    let default = gw.tls.default_certificate.as_ref().and_then(|c| {
        let (ck, meta, path) = load(file, &c.cert, &c.key, errors)?;
        files.push(CertInfo {
            org: None,
            serves: vec!["default".into()],
            file: path,
            names: meta.names,
            not_after: meta.not_after,
        });
        Some(ck)
    });
    let refuse = match gw.tls.unknown_sni {
        Some(UnknownSni::Refuse) => true,
        Some(UnknownSni::DefaultCertificate) => false,
        None => default.is_none(),
    };

    let mut hosts = HostTable::new(None);
    let mut by_org = Vec::new();
    let mut org_tls = Vec::new();
    let mut wants = Vec::new();
    for (oi, loaded) in cfg.orgs.iter().enumerate() {
        let o = &loaded.config;
        let f = loaded.file.as_path();
        let org: Arc<str> = o.name.value.as_str().into();
        for d in &o.domains {
            hosts.insert(&d.value.to_ascii_lowercase(), oi);
        }
        let Some(t) = &o.tls else {
            by_org.push(None);
            org_tls.push(OrgTls::default());
            continue;
        };
        let mut exact: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        let mut org_wide = Vec::new();
        if let (Some(c), Some(k)) = (&t.cert, &t.key)
            && let Some((ck, meta, path)) = load(f, c, k, errors)
        {
            files.push(CertInfo {
                org: Some(org.clone()),
                serves: vec!["*".into()],
                file: path,
                names: meta.names,
                not_after: meta.not_after,
            });
            org_wide.push(ck);
        }
        for c in &t.certificates {
            let Some((ck, meta, path)) = load(f, &c.cert, &c.key, errors) else {
                continue;
            };
            let serves: Vec<String> = c.domains.iter().map(|d| d.value.to_ascii_lowercase()).collect();
            for d in &serves {
                match d.strip_prefix('*') {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_default().push(ck.clone()),
                    None => exact.entry(d.clone()).or_default().push(ck.clone()),
                }
            }
            if serves.is_empty() {
                org_wide.push(ck);
            }
            files.push(CertInfo {
                org: Some(org.clone()),
                serves: if serves.is_empty() { vec!["*".into()] } else { serves },
                file: path,
                names: meta.names,
                not_after: meta.not_after,
            });
        }
        let acme_cert = t.acme.as_ref().map(|a| {
            let mut domains: Vec<String> = if a.domains.is_empty() {
                o.domains
                    .iter()
                    .map(|d| d.value.to_ascii_lowercase())
                    .filter(|d| !d.starts_with("*."))
                    .collect()
            } else {
                a.domains.iter().map(|d| d.value.to_ascii_lowercase()).collect()
            };
            domains.sort();
            domains.dedup();
            let cert = acme.entry(&domains);
            wants.push(AcmeWant {
                org: org.clone(),
                email: a.email.value.clone(),
                cert: cert.clone(),
                key_type: a.key_type.or(gw.tls.acme.key_type).unwrap_or_default(),
            });
            cert
        });
        let verifier = match &t.client_auth {
            None => None,
            Some(ca) => {
                let path = resolve_path(f, &ca.ca.value);
                let built = read_roots(&path).and_then(|roots| {
                    let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                    let b = if ca.mode == ClientAuthMode::Required {
                        b
                    } else {
                        b.allow_unauthenticated()
                    };
                    b.build().map_err(|e| e.to_string())
                });
                match built {
                    Ok(v) => Some(v),
                    Err(e) => {
                        errors.push(ConfigError::at(
                            f,
                            &ca.ca.referenced,
                            format!("tls.client_auth.ca: {e}"),
                        ));
                        None
                    }
                }
            }
        };
        let resolver = Arc::new(OrgResolver {
            exact,
            wildcard,
            acme: acme_cert,
            org_wide,
            store: acme.clone(),
            default: default.clone(),
        });
        match server_config(verifier, resolver) {
            Ok(sc) => by_org.push(Some((org.clone(), sc))),
            Err(e) => {
                errors.push(ConfigError::at(f, &o.name.referenced, format!("tls: {e}")));
                by_org.push(None);
            }
        }
        org_tls.push(OrgTls {
            hsts: t
                .hsts
                .as_ref()
                .and_then(|h| HeaderValue::from_str(&h.header_value()).ok()),
            client_auth: t.client_auth.as_ref().and_then(|c| {
                Some(ClientAuth {
                    required: c.mode != ClientAuthMode::Optional,
                    header: HeaderName::from_bytes(c.header.as_bytes()).ok()?,
                })
            }),
        });
    }
    let fallback_cert = if refuse { None } else { default };
    let fallback = match server_config(
        None,
        Arc::new(Fallback {
            store: acme.clone(),
            default: fallback_cert,
        }),
    ) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(ConfigError::new(file, format!("tls: {e}")));
            None
        }
    };
    (
        TlsSnapshot {
            hosts,
            by_org,
            fallback,
            files,
            acme,
            acme_wants: wants,
        },
        org_tls,
    )
}

/// A time as seconds since the epoch (or null), for the admin API.
pub fn describe_time(t: Option<SystemTime>) -> serde_json::Value {
    match t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => serde_json::Value::from(d.as_secs()),
        None => serde_json::Value::Null,
    }
}
