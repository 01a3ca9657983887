//! Where JWT verification keys come from: a secret or PEM key in the config, or a JWKS document
//! fetched over HTTP(S), found directly or through OIDC discovery.
//!
//! A JWKS is cached. It is fetched at config load (a failure there does not fail the config:
//! the identity provider may be down for a moment), again every `jwks_refresh`, and at once
//! when a token names a `kid` the cache lacks, but no more often than `jwks_min_refresh`, so a
//! stream of tokens with made-up `kid`s cannot turn the gateway into a load generator. When
//! the URL fails, the keys already known keep working.

use arc_swap::ArcSwap;
use bytes::Bytes;
use cratopus_config::JwtAuthConfig;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The verification keys of one `auth.jwt`.
pub enum KeySource {
    /// One key from the config: an HMAC secret or a PEM public key.
    Static {
        key: DecodingKey,
        kind: KeyKind,
    },
    Jwks(Arc<Jwks>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Static { kind, .. } => write!(f, "Static({kind:?})"),
            KeySource::Jwks(j) => write!(f, "Jwks({:?})", j.source),
        }
    }
}

/// The family of a configured key, which decides the default algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Hmac,
    Rsa,
    Ec,
    Ed,
    /// Keys from a JWKS: any asymmetric family.
    Any,
}

impl KeySource {
    /// The key source and, with OIDC discovery, the issuer's own `issuer`.
    pub fn compile(c: &JwtAuthConfig, base: &Path) -> Result<(KeySource, Option<String>), String> {
        let sources = [
            c.secret.is_some(),
            c.public_key.is_some(),
            c.public_key_file.is_some(),
            c.jwks_url.is_some(),
            c.oidc_issuer.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(
                "auth.jwt needs exactly one of `secret`, `public_key`, `public_key_file`, `jwks_url`, `oidc_issuer`"
                    .into(),
            );
        }
        if let Some(s) = &c.secret {
            if s.len() < 32 {
                return Err("auth.jwt.secret must be at least 32 bytes (256 bits)".into());
            }
            return Ok((
                KeySource::Static {
                    key: DecodingKey::from_secret(s.as_bytes()),
                    kind: KeyKind::Hmac,
                },
                None,
            ));
        }
        let pem = match (&c.public_key, &c.public_key_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(f)) => {
                let path = base.join(f);
                Some(cratopus_config::files::read_text_limited(&path)?)
            }
            _ => None,
        };
        if let Some(pem) = pem {
            let (key, kind) = pem_key(&pem)?;
            return Ok((KeySource::Static { key, kind }, None));
        }
        // Nothing is fetched here: compiling a config opens no socket (see `Jwks::start`).
        let (source, issuer) = match (&c.jwks_url, &c.oidc_issuer) {
            (Some(u), _) => (JwksSource::Url(u.clone()), None),
            (None, Some(iss)) => (JwksSource::Issuer(iss.clone()), Some(iss.clone())),
            _ => return Err("auth.jwt has no key".into()),
        };
        let jwks = Arc::new(Jwks {
            source,
            url: std::sync::OnceLock::new(),
            client: std::sync::OnceLock::new(),
            keys: ArcSwap::from_pointee(HashMap::new()),
            fetching: tokio::sync::Mutex::new(None),
            min_refresh: c.jwks_min_refresh.0,
            refresh: c.jwks_refresh.0,
        });
        Ok((KeySource::Jwks(jwks), issuer))
    }

    /// The algorithms accepted when the config lists none: those of the key's family.
    pub fn default_algorithms(&self) -> Vec<Algorithm> {
        use Algorithm::*;
        match self {
            KeySource::Static {
                kind: KeyKind::Hmac, ..
            } => vec![HS256, HS384, HS512],
            KeySource::Static { kind: KeyKind::Rsa, .. } => vec![RS256, RS384, RS512, PS256, PS384, PS512],
            KeySource::Static { kind: KeyKind::Ec, .. } => vec![ES256, ES384],
            KeySource::Static { kind: KeyKind::Ed, .. } => vec![EdDSA],
            _ => vec![RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA],
        }
    }

    /// The key for a token's `kid` and algorithm.
    pub async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, &'static str> {
        match self {
            KeySource::Static { key, .. } => Ok(key.clone()),
            KeySource::Jwks(j) => j.key_for(kid, alg).await,
        }
    }
}

/// A PEM public key of any supported family.
fn pem_key(pem: &str) -> Result<(DecodingKey, KeyKind), String> {
    if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((k, KeyKind::Rsa));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok((k, KeyKind::Ec));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem.as_bytes()) {
        return Ok((k, KeyKind::Ed));
    }
    Err("auth.jwt public key is not a PEM RSA, EC or Ed25519 public key".into())
}

fn http_client() -> Result<HttpsClient, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no TLS roots for the JWKS client: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// GET `url` (at most 1 MiB, 10 s) as JSON.
async fn get_json(client: &HttpsClient, url: &str) -> Result<serde_json::Value, String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let call = async {
        let res = client.get(uri).await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        let body = Limited::new(res.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// The JWKS URL of an OIDC issuer, from its discovery document.
async fn discover(client: &HttpsClient, issuer: &str) -> Result<String, String> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let doc = get_json(client, &url)
        .await
        .map_err(|e| format!("OIDC discovery at `{url}` failed: {e}"))?;
    doc.get("jwks_uri")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("OIDC discovery at `{url}`: no `jwks_uri`"))
}

/// Where a JWKS comes from.
#[derive(Debug)]
enum JwksSource {
    Url(String),
    /// An OIDC issuer: the JWKS URL is read from its discovery document at the first fetch.
    Issuer(String),
}

/// A cached JWKS.
pub struct Jwks {
    source: JwksSource,
    /// The JWKS URL, once known.
    url: std::sync::OnceLock<String>,
    /// Made at the first fetch (it reads the system's trust roots).
    client: std::sync::OnceLock<HttpsClient>,
    /// How often it is fetched again.
    refresh: Duration,
    /// `kid` (empty for a key without one) → key and the algorithm family it serves.
    keys: ArcSwap<HashMap<String, DecodingKey>>,
    /// When the last fetch began; a fetch holds the lock, so concurrent misses share it.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
}

impl Jwks {
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, &'static str> {
        let kid = kid.unwrap_or("");
        if let Some(k) = self.lookup(kid, alg) {
            return Ok(k);
        }
        // Unknown kid: fetch again unless a fetch was made very recently.
        {
            let mut last = self.fetching.lock().await;
            if let Some(k) = self.lookup(kid, alg) {
                return Ok(k); // another request's fetch brought it
            }
            if last.is_none_or(|t| t.elapsed() >= self.min_refresh) {
                *last = Some(Instant::now());
                if let Err(e) = self.fetch().await {
                    tracing::warn!(source = ?self.source, error = %e, "JWKS fetch failed; known keys stay in use");
                }
            }
        }
        self.lookup(kid, alg).ok_or("unknown_key")
    }

    fn lookup(&self, kid: &str, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.keys.load();
        match keys.get(kid) {
            Some(k) => Some(k.clone()),
            // A token without `kid` and a JWKS of one key of the right family.
            None if kid.is_empty() => {
                let mut fitting = keys.values().filter(|k| k.family() == alg.family());
                let first = fitting.next()?;
                fitting.next().is_none().then(|| first.clone())
            }
            None => None,
        }
    }

    /// Fetches the keys once now, then every `refresh` while the verifier is in use: the
    /// start step of a compiled config (compiling itself opens no socket).
    pub async fn start(self: &Arc<Self>) {
        if let Err(e) = self.fetch().await {
            tracing::warn!(source = ?self.source, error = %e, "JWKS not fetched at load; will retry when a token needs it");
        }
        self.clone().refresh_every(self.refresh);
    }

    async fn fetch(&self) -> Result<(), String> {
        let client = match self.client.get() {
            Some(c) => c,
            None => {
                let c = http_client()?;
                self.client.get_or_init(|| c)
            }
        };
        let url = match (self.url.get(), &self.source) {
            (Some(u), _) => u,
            (None, JwksSource::Url(u)) => self.url.get_or_init(|| u.clone()),
            (None, JwksSource::Issuer(iss)) => {
                let u = discover(client, iss).await?;
                self.url.get_or_init(|| u)
            }
        };
        let doc = get_json(client, url).await?;
        let set: JwkSet = serde_json::from_value(doc).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue; // symmetric keys do not belong in a published JWKS
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(k) => {
                    keys.insert(jwk.common.key_id.clone().unwrap_or_default(), k);
                }
                Err(e) => tracing::debug!(url = %url, error = %e, "JWKS key skipped"),
            }
        }
        tracing::debug!(url = %url, keys = keys.len(), "JWKS fetched");
        self.keys.store(Arc::new(keys));
        Ok(())
    }

    /// Refreshes every `every` while the verifier is in use.
    fn refresh_every(self: Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every.max(Duration::from_secs(1)));
            t.tick().await;
            loop {
                t.tick().await;
                let Some(j) = weak.upgrade() else { return };
                if let Err(e) = j.fetch().await {
                    tracing::warn!(source = ?j.source, error = %e, "JWKS refresh failed; known keys stay in use");
                }
            }
        });
    }
}
