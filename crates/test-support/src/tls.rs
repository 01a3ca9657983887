//! Certificates made at test time (rcgen) and a real TLS client (rustls) that reports what the
//! handshake gave: protocol version, ALPN, the server's certificate.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;

/// The kind of key a certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    Rsa2048,
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A test CA that issues server and client certificates.
pub struct TestCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn key(kind: KeyKind) -> KeyPair {
    match kind {
        KeyKind::EcdsaP256 => KeyPair::generate().expect("ECDSA key"),
        KeyKind::Rsa2048 => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key"),
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let k = key(KeyKind::EcdsaP256);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&k).expect("CA cert");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, k),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str], kind: KeyKind) -> Pem {
        let k = key(kind);
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("server"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&k, &self.issuer).expect("server cert");
        Pem {
            cert: cert.pem(),
            key: k.serialize_pem(),
        }
    }

    /// A client certificate with common name `cn` and the given SANs (`DNS:…`, `URI:…`,
    /// `email:…`).
    pub fn client(&self, cn: &str, sans: &[&str]) -> Pem {
        let k = key(KeyKind::EcdsaP256);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.distinguished_name.push(DnType::OrganizationName, "Test Org");
        for s in sans {
            let san = match s.split_once(':') {
                Some(("DNS", v)) => SanType::DnsName(v.to_string().try_into().expect("dns")),
                Some(("URI", v)) => SanType::URI(v.to_string().try_into().expect("uri")),
                Some(("email", v)) => SanType::Rfc822Name(v.to_string().try_into().expect("email")),
                _ => panic!("unknown SAN {s}"),
            };
            params.subject_alt_names.push(san);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&k, &self.issuer).expect("client cert");
        Pem {
            cert: cert.pem(),
            key: k.serialize_pem(),
        }
    }
}

/// Options of one TLS client connection.
#[derive(Clone)]
pub struct ClientOpts {
    /// PEM roots to trust.
    pub roots: Vec<String>,
    pub alpn: Vec<Vec<u8>>,
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    pub client_cert: Option<Pem>,
    /// Only ECDSA (or only RSA) signature schemes offered, to see which certificate is chosen.
    pub only_schemes: Option<KeyKind>,
}

impl ClientOpts {
    pub fn trusting(roots: &[&str]) -> ClientOpts {
        ClientOpts {
            roots: roots.iter().map(|r| r.to_string()).collect(),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            client_cert: None,
            only_schemes: None,
        }
    }
}

/// What a handshake gave.
#[derive(Debug)]
pub struct Handshake {
    pub version: Option<rustls::ProtocolVersion>,
    pub alpn: Option<Vec<u8>>,
    /// The server's leaf certificate, DER.
    pub leaf: Vec<u8>,
}

/// A verifier wrapper that offers only the schemes of one key kind.
#[derive(Debug)]
struct Schemes(Arc<dyn rustls::client::danger::ServerCertVerifier>, KeyKind);

impl rustls::client::danger::ServerCertVerifier for Schemes {
    fn verify_server_cert(
        &self,
        e: &CertificateDer<'_>,
        i: &[CertificateDer<'_>],
        n: &ServerName<'_>,
        o: &[u8],
        t: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.0.verify_server_cert(e, i, n, o, t)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        use rustls::SignatureScheme as S;
        self.0
            .supported_verify_schemes()
            .into_iter()
            .filter(|s| match self.1 {
                KeyKind::EcdsaP256 => matches!(s, S::ECDSA_NISTP256_SHA256 | S::ECDSA_NISTP384_SHA384),
                KeyKind::Rsa2048 => matches!(
                    s,
                    S::RSA_PSS_SHA256 | S::RSA_PSS_SHA384 | S::RSA_PKCS1_SHA256 | S::RSA_PKCS1_SHA384
                ),
            })
            .collect()
    }
}

/// A rustls client config for `opts`.
pub fn client_config(opts: &ClientOpts) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for pem in &opts.roots {
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(c.expect("root pem")).expect("add root");
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&opts.versions)
        .expect("versions");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .expect("verifier");
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match opts.only_schemes {
        Some(k) => Arc::new(Schemes(verifier, k)),
        None => verifier,
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut cfg = match &opts.client_cert {
        Some(p) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(p.cert.as_bytes())
                .collect::<Result<_, _>>()
                .expect("client cert");
            let key = PrivateKeyDer::from_pem_slice(p.key.as_bytes()).expect("client key");
            builder.with_client_auth_cert(certs, key).expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = opts.alpn.clone();
    Arc::new(cfg)
}

/// Connects to `addr` with SNI `sni` and completes the handshake.
pub async fn handshake(
    addr: SocketAddr,
    sni: &str,
    opts: &ClientOpts,
) -> Result<(tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Handshake), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(client_config(opts))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = stream.get_ref();
    let hs = Handshake {
        version: conn.protocol_version(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        leaf: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default(),
    };
    Ok((stream, hs))
}

/// GET `path` over HTTPS (HTTP/2 when ALPN chose h2) with Host `host`; the handshake and the
/// whole reply.
pub async fn https_get(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    path: &str,
    opts: &ClientOpts,
) -> Result<(Handshake, crate::Reply), String> {
    https_get_with(addr, sni, host, path, opts, &[]).await
}

/// [`https_get`] with extra request headers.
pub async fn https_get_with(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    path: &str,
    opts: &ClientOpts,
    headers: &[(&str, &str)],
) -> Result<(Handshake, crate::Reply), String> {
    let (stream, hs) = handshake(addr, sni, opts).await?;
    let io = TokioIo::new(stream);
    let h2 = hs.alpn.as_deref() == Some(b"h2");
    let mut req = if h2 {
        Request::get(format!("https://{host}{path}"))
    } else {
        Request::get(path).header(http::header::HOST, host)
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let res = if h2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        s.send_request(req).await.map_err(|e| chain(&e))?
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        s.send_request(req).await.map_err(|e| chain(&e))?
    };
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map_err(|e| chain(&e))?.to_bytes();
    Ok((
        hs,
        crate::Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        },
    ))
}

/// An error with its causes (a TLS alert hides under hyper's "connection error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// The DER of the first certificate of a PEM text.
pub fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("valid pem")
        .as_ref()
        .to_vec()
}

/// A backend served over HTTPS with `pem`, answering every request with `200` and `body`, and
/// the SNI and ALPN it saw in `x-sni` and `x-alpn`.
pub async fn https_backend(pem: &Pem, body: &'static str, client_ca: Option<&str>) -> crate::Backend {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
        .collect::<Result<_, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).expect("key");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.expect("pem")).expect("root");
            }
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .expect("verifier"),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(certs, key).expect("server config");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let (_, conn) = tls.get_ref();
                let sni = conn.server_name().unwrap_or("-").to_string();
                let alpn = conn
                    .alpn_protocol()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .unwrap_or_else(|| "-".into());
                let client = conn
                    .peer_certificates()
                    .map(|c| c.len().to_string())
                    .unwrap_or_else(|| "0".into());
                let svc = hyper::service::service_fn(move |_req| {
                    let (sni, alpn, client) = (sni.clone(), alpn.clone(), client.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("x-sni", sni)
                                .header("x-alpn", alpn)
                                .header("x-client-certs", client)
                                .body(Full::new(Bytes::from_static(body.as_bytes())))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    crate::Backend::from_task(addr, task)
}

/// Handshakes, then reads: in TLS 1.3 a server refuses a client certificate after the client's
/// handshake is done, so its alert arrives at the first read. Returns the error (or the
/// handshake's own error), or `"no alert"`.
pub async fn refusal(addr: SocketAddr, sni: &str, opts: &ClientOpts) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = match handshake(addr, sni, opts).await {
        Ok((s, _)) => s,
        Err(e) => return e,
    };
    let mut buf = [0u8; 64];
    match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Err(e)) => chain(&e),
        Ok(Ok(0)) => "closed without an alert".into(),
        Ok(Ok(_)) => "no alert".into(),
        Err(_) => "no alert (timeout)".into(),
    }
}
