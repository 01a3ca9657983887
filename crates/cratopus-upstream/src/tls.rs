//! TLS towards an upstream's `https://` targets: certificate verification against the system
//! roots or a configured CA (on by default), SNI and ALPN, an optional client certificate.
//!
//! Built once per upstream when the config is compiled (the files are read then); connecting
//! is the cold path of a request, so the per-connection work here (a server name) may allocate.

use cratopus_config::UpstreamTlsConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The TLS client side of one upstream.
pub struct UpstreamTls {
    connector: TlsConnector,
    /// `tls.server_name`, else each target's host is used.
    server_name: Option<ServerName<'static>>,
    /// Changes when the settings or any file they read change: a reload keeps the upstream
    /// only while this stays the same.
    pub fingerprint: u64,
    pub verify: bool,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("verify", &self.verify)
            .finish_non_exhaustive()
    }
}

/// The crypto provider of every TLS connection of the gateway: aws-lc-rs with its default,
/// modern suites (TLS 1.3, and TLS 1.2 with ECDHE and AEAD only).
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The system's trusted roots, read once.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "cannot read a system root certificate");
            }
            let mut store = RootCertStore::empty();
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system root certificates loaded");
            Arc::new(store)
        })
        .clone()
}

/// Reads the certificates of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = cratopus_config::files::read_limited(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{}` is not a valid PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = cratopus_config::files::read_limited(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("`{}` holds no usable PEM private key: {e}", path.display()))
}

/// A root store of the certificates in a PEM bundle.
pub fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for c in read_certs(path)? {
        store
            .add(c)
            .map_err(|e| format!("`{}`: a CA certificate is not usable: {e}", path.display()))?;
    }
    Ok(store)
}

fn hash_file(h: &mut impl Hasher, path: &Path) {
    path.hash(h);
    cratopus_config::files::read_limited(path).unwrap_or_default().hash(h);
}

impl UpstreamTls {
    /// Builds the client side for `cfg` (defaults when `None`); relative paths are relative to
    /// `file`. `h2` offers ALPN `h2`, else `http/1.1`.
    pub fn build(cfg: Option<&UpstreamTlsConfig>, file: &Path, h2: bool) -> Result<UpstreamTls, String> {
        let defaults = UpstreamTlsConfig {
            verify: true,
            ca: None,
            server_name: None,
            client_cert: None,
        };
        let cfg = cfg.unwrap_or(&defaults);
        let resolve = |p: &str| -> PathBuf { cratopus_config::load::resolve_path(file, p) };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        cfg.hash_fields(&mut h);
        h2.hash(&mut h);

        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?;
        let builder = if !cfg.verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else {
            let roots = match &cfg.ca {
                Some(ca) => {
                    let p = resolve(ca);
                    hash_file(&mut h, &p);
                    Arc::new(read_roots(&p).map_err(|e| format!("tls.ca: {e}"))?)
                }
                None => system_roots(),
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match &cfg.client_cert {
            Some(c) => {
                let (cp, kp) = (resolve(&c.cert), resolve(&c.key));
                hash_file(&mut h, &cp);
                hash_file(&mut h, &kp);
                let certs = read_certs(&cp).map_err(|e| format!("tls.client_cert: {e}"))?;
                let key = read_key(&kp).map_err(|e| format!("tls.client_cert: {e}"))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("tls.client_cert: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![if h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
        let server_name = match &cfg.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone()).map_err(|_| format!("tls.server_name `{n}` is not a valid name"))?,
            ),
            None => None,
        };
        Ok(UpstreamTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            fingerprint: h.finish(),
            verify: cfg.verify,
        })
    }

    /// The TLS handshake with a target whose URL names `host`.
    pub async fn connect(&self, stream: TcpStream, host: &str) -> std::io::Result<TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_string())
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid server name"))?,
        };
        self.connector.connect(name, stream).await
    }
}

/// The host of an authority without IPv6 brackets, as a server name wants it.
pub fn host_of(authority: &http::uri::Authority) -> &str {
    authority.host().trim_start_matches('[').trim_end_matches(']')
}

trait HashFields {
    fn hash_fields(&self, h: &mut impl Hasher);
}

impl HashFields for UpstreamTlsConfig {
    fn hash_fields(&self, h: &mut impl Hasher) {
        self.verify.hash(h);
        self.ca.hash(h);
        self.server_name.hash(h);
        self.client_cert.as_ref().map(|c| (&c.cert, &c.key)).hash(h);
    }
}

/// `verify: false`: any certificate is accepted; the handshake's signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
