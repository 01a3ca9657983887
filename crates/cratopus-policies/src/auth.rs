//! Authentication: who is calling. API keys (looked up by their SHA-256 in the organization's
//! consumers) and JWTs (verified with a secret, a PEM key, or a JWKS found directly or through
//! OIDC discovery). The result is an [`Identity`] that authorization, rate limits and the
//! traffic log read.

use crate::jwks::KeySource;
use cratopus_config::{ApiKeyAuthConfig, AuthConfig, ConsumerConfig, JwtAuthConfig};
use http::HeaderValue;
use http::header::{AUTHORIZATION, HeaderName};
use http::request::Parts;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

/// A consumer of an organization, as requests are matched against it.
#[derive(Debug)]
pub struct Consumer {
    pub id: Arc<str>,
    /// `id` as the `X-Consumer-Id` value sent upstream, made once at config load (`None` for
    /// an id that is not a valid header value).
    pub header: Option<HeaderValue>,
    pub tier: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}

/// The consumers of one organization, indexed by key hash, by JWT subject and by client
/// certificate.
#[derive(Debug, Default)]
pub struct Consumers {
    /// SHA-256 of a key → the consumer and the routes the key is limited to (empty: all).
    by_key: HashMap<[u8; 32], (Arc<Consumer>, Vec<String>)>,
    by_subject: HashMap<String, Arc<Consumer>>,
    /// A certificate name as [`CertId::names`] writes it (`sha256:…`, `cn:…`, `dns:…`) → the
    /// consumer.
    by_cert: HashMap<String, Arc<Consumer>>,
}

/// What identifies a verified client certificate: its fingerprint and names, written the way
/// consumers' `certificates` are, so that finding the consumer is a map lookup per name.
#[derive(Debug, Clone, Default)]
pub struct CertId {
    /// `sha256:<hex>` first (the most precise), then `cn:<common name>`, then the subject
    /// alternative names (`dns:`, `uri:`, `email:`, `ip:`), in the certificate's order.
    pub names: Vec<String>,
}

impl CertId {
    /// The names of a certificate given its DER bytes, common name and alternative names
    /// (`DNS:…`, `URI:…`, `email:…`, `IP:…`).
    pub fn new(der: &[u8], common_name: Option<&str>, sans: &[String]) -> CertId {
        let hex: String = Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect();
        let mut names = vec![format!("sha256:{hex}")];
        names.extend(common_name.map(|cn| format!("cn:{cn}")));
        names.extend(sans.iter().filter_map(|s| normalize_cert_name(s).ok()));
        CertId { names }
    }
}

/// A consumer's `certificates` entry in the form [`CertId::names`] uses: the kind in lower
/// case, DNS names in lower case, a fingerprint as lower-case hex without colons.
pub fn normalize_cert_name(s: &str) -> Result<String, String> {
    let (kind, value) = s.split_once(':').ok_or_else(|| cert_name_error(s))?;
    let kind = kind.to_ascii_lowercase();
    let value = value.trim();
    if value.is_empty() {
        return Err(cert_name_error(s));
    }
    match kind.as_str() {
        "sha256" => {
            let hex: String = value
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("certificate `{s}`: a SHA-256 fingerprint has 64 hex digits"));
            }
            Ok(format!("sha256:{hex}"))
        }
        "dns" => Ok(format!("dns:{}", value.to_ascii_lowercase())),
        "cn" | "uri" | "email" | "ip" => Ok(format!("{kind}:{value}")),
        _ => Err(cert_name_error(s)),
    }
}

fn cert_name_error(s: &str) -> String {
    format!(
        "certificate `{s}`: expected `sha256:<fingerprint>`, `cn:<common name>`, `dns:<name>`, `uri:<uri>`, `email:<address>` or `ip:<address>`"
    )
}

impl Consumers {
    pub fn compile(list: &[ConsumerConfig]) -> Result<Consumers, String> {
        let mut out = Consumers::default();
        for c in list {
            let consumer = Arc::new(Consumer {
                id: c.id.as_str().into(),
                header: HeaderValue::from_str(&c.id).ok(),
                tier: c.tier.clone(),
                scopes: c.scopes.clone(),
                roles: c.roles.clone(),
            });
            for k in &c.keys {
                let digest = parse_key_hash(&k.hash).map_err(|e| format!("consumer `{}`: {e}", c.id))?;
                if out
                    .by_key
                    .insert(digest, (consumer.clone(), k.routes.clone()))
                    .is_some()
                {
                    return Err(format!("consumer `{}`: a key is listed twice", c.id));
                }
            }
            for s in &c.jwt_subjects {
                out.by_subject.insert(s.clone(), consumer.clone());
            }
            for name in &c.certificates {
                let name = normalize_cert_name(name).map_err(|e| format!("consumer `{}`: {e}", c.id))?;
                if let Some(other) = out.by_cert.insert(name.clone(), consumer.clone())
                    && other.id != consumer.id
                {
                    return Err(format!(
                        "consumers `{}` and `{}` both claim the certificate `{name}`",
                        other.id, c.id
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The consumer of a presented key. The key is hashed and the hash looked up: no secret
    /// is ever compared byte by byte, so the time taken says nothing about a stored key.
    fn by_key(&self, key: &[u8]) -> Option<&(Arc<Consumer>, Vec<String>)> {
        self.by_key.get(&<[u8; 32]>::from(Sha256::digest(key)))
    }

    /// The consumer of a client certificate: the first of its names that a consumer lists.
    fn by_cert(&self, cert: &CertId) -> Option<&Arc<Consumer>> {
        cert.names.iter().find_map(|n| self.by_cert.get(n))
    }
}

/// `sha256:<64 hex digits>` → the digest.
pub fn parse_key_hash(s: &str) -> Result<[u8; 32], String> {
    let hex = s
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("key hash `{s}` must look like `sha256:<64 hex digits>` (see `cratopus hash-key`)"))?;
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return Err(format!("key hash `{s}`: expected 64 hex digits"));
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)
            .map_err(|_| format!("key hash `{s}`: not hex"))?;
    }
    Ok(out)
}

/// What `cratopus hash-key` prints for a key.
pub fn hash_key(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Who a request is, once authenticated.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub consumer: Option<Arc<Consumer>>,
    /// The verified JWT's claims.
    pub claims: Option<Arc<Map<String, Value>>>,
}

impl Identity {
    /// Scopes from the JWT (`scope`, space-separated, or `scp`, a list or string) and the
    /// consumer's.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|c| c.scopes.iter().any(|s| s == scope))
            || self.claims.as_ref().is_some_and(|claims| {
                ["scope", "scp"].iter().any(|k| match claims.get(*k) {
                    Some(Value::String(s)) => s.split_whitespace().any(|x| x == scope),
                    Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(scope)),
                    _ => false,
                })
            })
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|c| c.roles.iter().any(|r| r == role))
            || self.claims.as_ref().is_some_and(|claims| match claims.get("roles") {
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(role)),
                Some(Value::String(s)) => s == role,
                _ => false,
            })
    }

    /// A claim as text (strings as they are, numbers and booleans written out).
    pub fn claim(&self, name: &str) -> Option<String> {
        match self.claims.as_ref()?.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The values of a claim: the elements of an array claim, or the claim itself.
    pub fn claim_values(&self, name: &str) -> Vec<String> {
        match self.claims.as_ref().and_then(|c| c.get(name)) {
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Some(_) => self.claim(name).into_iter().collect(),
            None => Vec::new(),
        }
    }
}

/// Why authentication failed; `code` goes to the JSON error and the traffic log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials at all.
    Missing,
    /// An API key that no consumer has, or not for this route.
    InvalidKey,
    /// A JWT that failed: expired, bad signature, wrong audience, refused algorithm …
    InvalidToken(&'static str),
    /// A verified client certificate that names no consumer.
    UnknownCertificate,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_credentials",
            AuthError::InvalidKey => "invalid_api_key",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::UnknownCertificate => "unknown_client_certificate",
        }
    }

    /// The detail of an invalid token (`expired`, `bad_signature`, …), for the message.
    pub fn detail(&self) -> &'static str {
        match self {
            AuthError::Missing => "no credentials",
            AuthError::InvalidKey => "unknown API key",
            AuthError::InvalidToken(why) => why,
            AuthError::UnknownCertificate => "the client certificate names no consumer",
        }
    }
}

/// The authentication of a route (or of an organization, shared by its routes).
#[derive(Debug)]
pub struct Authenticator {
    api_key: Option<KeyIn>,
    jwt: Option<Arc<JwtVerifier>>,
    /// Whether the connection's client certificate can name the consumer.
    mtls: bool,
    consumers: Arc<Consumers>,
    /// `WWW-Authenticate` of a 401.
    pub challenge: HeaderValue,
}

#[derive(Debug)]
struct KeyIn {
    header: Option<HeaderName>,
    query: Option<String>,
}

impl Authenticator {
    /// `base` is the directory of the organization file, for `public_key_file`.
    pub fn compile(cfg: &AuthConfig, consumers: Arc<Consumers>, base: &Path) -> Result<Authenticator, String> {
        let api_key = cfg.api_key.as_ref().map(key_in).transpose()?;
        let jwt = match &cfg.jwt {
            Some(j) => Some(Arc::new(JwtVerifier::compile(j, base)?)),
            None => None,
        };
        let challenge = if jwt.is_some() {
            HeaderValue::from_static("Bearer realm=\"cratopus\"")
        } else if api_key.is_none() {
            // No HTTP scheme asks for a certificate; this names what is missing.
            HeaderValue::from_static("MutualTLS realm=\"cratopus\"")
        } else {
            let name = api_key
                .as_ref()
                .and_then(|k| k.header.as_ref().map(|h| h.as_str().to_string()).or(k.query.clone()))
                .unwrap_or_default();
            HeaderValue::from_str(&format!("ApiKey realm=\"cratopus\", in=\"{name}\""))
                .unwrap_or(HeaderValue::from_static("ApiKey realm=\"cratopus\""))
        };
        Ok(Authenticator {
            api_key,
            jwt,
            mtls: cfg.mtls.is_some(),
            consumers,
            challenge,
        })
    }

    /// The headers this authenticator sets from a verified identity (`forward_claims`), which
    /// a client must never be able to send itself.
    pub fn identity_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.jwt.iter().flat_map(|j| j.forward.iter().map(|(_, h)| h))
    }

    /// The JWKS this authenticator fetches, for the start step of a compiled config.
    pub fn jwks(&self) -> Option<&Arc<crate::jwks::Jwks>> {
        match &self.jwt.as_ref()?.keys {
            crate::jwks::KeySource::Jwks(j) => Some(j),
            crate::jwks::KeySource::Static { .. } => None,
        }
    }

    /// Whether the route authenticates at all (`auth: {}` does not).
    pub fn is_active(&self) -> bool {
        self.api_key.is_some() || self.jwt.is_some() || self.mtls
    }

    /// Authenticates a request and removes the API key from it (header or query parameter),
    /// so that the secret never reaches the upstream. `cert` is the connection's verified
    /// client certificate.
    pub async fn authenticate(
        &self,
        route: &str,
        parts: &mut Parts,
        cert: Option<&CertId>,
    ) -> Result<Identity, AuthError> {
        let mut failure = AuthError::Missing;
        if let Some(k) = &self.api_key
            && let Some(key) = self.take_key(k, parts)
        {
            match self.consumers.by_key(key.as_bytes()) {
                Some((c, routes)) if routes.is_empty() || routes.iter().any(|r| r == route) => {
                    return Ok(Identity {
                        consumer: Some(c.clone()),
                        claims: None,
                    });
                }
                _ => failure = AuthError::InvalidKey,
            }
        }
        if self.mtls
            && let Some(cert) = cert
        {
            match self.consumers.by_cert(cert) {
                Some(c) => {
                    return Ok(Identity {
                        consumer: Some(c.clone()),
                        claims: None,
                    });
                }
                None if failure == AuthError::Missing => failure = AuthError::UnknownCertificate,
                None => {}
            }
        }
        if let Some(j) = &self.jwt {
            let token = parts
                .headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim);
            if let Some(token) = token {
                let claims = j.verify(token).await.map_err(AuthError::InvalidToken)?;
                let consumer = j
                    .consumer_claim
                    .as_ref()
                    .and_then(|c| claims.get(c))
                    .and_then(Value::as_str)
                    .and_then(|s| self.consumers.by_subject.get(s).cloned());
                for (claim, header) in &j.forward {
                    parts.headers.remove(header);
                    let v = match claims.get(claim) {
                        Some(Value::String(s)) => HeaderValue::from_str(s).ok(),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => HeaderValue::from_str(&v.to_string()).ok(),
                        Some(v @ Value::Array(_)) => HeaderValue::from_str(&v.to_string()).ok(),
                        _ => None,
                    };
                    if let Some(v) = v {
                        parts.headers.insert(header.clone(), v);
                    }
                }
                return Ok(Identity {
                    consumer,
                    claims: Some(claims),
                });
            }
        }
        Err(failure)
    }

    fn take_key(&self, k: &KeyIn, parts: &mut Parts) -> Option<String> {
        if let Some(h) = &k.header
            && let Some(v) = parts.headers.remove(h)
        {
            return v.to_str().ok().map(|s| s.trim().to_string());
        }
        let name = k.query.as_deref()?;
        let query = parts.uri.query()?;
        let mut found = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                if n == name && found.is_none() {
                    found = Some(percent_decode(v));
                    false
                } else {
                    n != name
                }
            })
            .collect();
        found.as_ref()?;
        let kept = (!kept.is_empty()).then(|| kept.join("&"));
        crate::chain::set_query(&mut parts.uri, kept.as_deref());
        found
    }
}

fn key_in(c: &ApiKeyAuthConfig) -> Result<KeyIn, String> {
    let header = match (&c.header, &c.query) {
        (Some(h), _) => Some(HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("`{h}` is not a header name"))?),
        (None, None) => Some(HeaderName::from_static("x-api-key")),
        (None, Some(_)) => None,
    };
    Ok(KeyIn {
        header,
        query: c.query.clone(),
    })
}

/// `%XX` and `+` decoded, for a key given in the query string.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Verifies JWTs for one `auth.jwt`.
#[derive(Debug)]
pub struct JwtVerifier {
    keys: KeySource,
    allowed: Vec<Algorithm>,
    /// One prepared validation per allowed algorithm (issuer, audience, leeway, `exp`).
    validations: HashMap<Algorithm, Validation>,
    forward: Vec<(String, HeaderName)>,
    consumer_claim: Option<String>,
    /// Tokens verified lately, by SHA-256 of the token: a client sends the same token with
    /// every request, and checking an RSA or EC signature costs tens of microseconds. A hit
    /// still checks `exp`; an entry lives at most [`VERIFIED_TTL`], so a key withdrawn from a
    /// JWKS stops being honoured within that time.
    verified: moka::sync::Cache<[u8; 32], Arc<Map<String, Value>>>,
    leeway: u64,
}

/// How long a verified token is taken on trust before its signature is checked again.
const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Verified tokens kept per verifier.
const VERIFIED_MAX: u64 = 10_000;

impl JwtVerifier {
    pub fn compile(c: &JwtAuthConfig, base: &Path) -> Result<JwtVerifier, String> {
        let (keys, issuer) = KeySource::compile(c, base)?;
        let allowed: Vec<Algorithm> = if c.algorithms.is_empty() {
            keys.default_algorithms()
        } else {
            c.algorithms
                .iter()
                .map(|a| {
                    if a.eq_ignore_ascii_case("none") {
                        return Err("algorithm `none` is never accepted".to_string());
                    }
                    Algorithm::from_str(a).map_err(|_| format!("unknown JWT algorithm `{a}`"))
                })
                .collect::<Result<_, _>>()?
        };
        let issuer = c.issuer.clone().or(issuer);
        let validations = allowed
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = c.leeway.0.as_secs();
                v.validate_nbf = true;
                if c.audience.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&c.audience);
                }
                if let Some(iss) = &issuer {
                    v.set_issuer(&[iss]);
                }
                (*alg, v)
            })
            .collect();
        let forward = c
            .forward_claims
            .iter()
            .map(|(claim, h)| {
                HeaderName::from_bytes(h.as_bytes())
                    .map(|h| (claim.clone(), h))
                    .map_err(|_| format!("forward_claims: `{h}` is not a header name"))
            })
            .collect::<Result<_, _>>()?;
        Ok(JwtVerifier {
            keys,
            allowed,
            validations,
            forward,
            consumer_claim: c.consumer_claim.clone(),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_MAX)
                .time_to_live(VERIFIED_TTL)
                .build(),
            leeway: c.leeway.0.as_secs(),
        })
    }

    /// The verified claims, or why the token is refused; from the cache of verified tokens
    /// when this very token passed lately and has not expired since.
    pub async fn verify(&self, token: &str) -> Result<Arc<Map<String, Value>>, &'static str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified.get(&digest) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
            if exp.saturating_add(self.leeway) > now {
                return Ok(claims);
            }
            self.verified.invalidate(&digest);
            return Err("expired");
        }
        let claims = Arc::new(self.verify_signature(token).await?);
        self.verified.insert(digest, claims.clone());
        Ok(claims)
    }

    async fn verify_signature(&self, token: &str) -> Result<Map<String, Value>, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed")?;
        if !self.allowed.contains(&header.alg) {
            return Err("algorithm_not_allowed");
        }
        let key = self.keys.key_for(header.kid.as_deref(), header.alg).await?;
        // A key of another family than the token's algorithm (an RSA public key used as an
        // HMAC secret, say) is refused before any signature check.
        if key.family() != header.alg.family() {
            return Err("algorithm_mismatch");
        }
        let validation = self.validations.get(&header.alg).ok_or("algorithm_not_allowed")?;
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key, validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "expired",
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => "not_yet_valid",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "wrong_audience",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => "wrong_issuer",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad_signature",
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => "algorithm_mismatch",
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => "missing_claim",
                _ => "malformed",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_round_trip() {
        let h = hash_key("s3cret");
        assert!(h.starts_with("sha256:") && h.len() == 71);
        assert_eq!(parse_key_hash(&h).unwrap(), <[u8; 32]>::from(Sha256::digest(b"s3cret")));
        assert!(parse_key_hash("md5:abc").is_err());
        assert!(parse_key_hash("sha256:zz").is_err());
        assert!(parse_key_hash(&format!("sha256:{}", "g".repeat(64))).is_err());
    }

    #[tokio::test]
    async fn a_cached_token_still_expires() {
        let secret = "this-is-a-test-secret-of-32-bytes!!";
        let cfg = JwtAuthConfig {
            secret: Some(secret.into()),
            leeway: cratopus_config::Dur::secs(0),
            ..Default::default()
        };
        let v = JwtVerifier::compile(&cfg, Path::new(".")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u", "exp": now + 2}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert!(v.verify(&token).await.is_ok());
        assert!(v.verify(&token).await.is_ok(), "from the cache");
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        assert!(v.verified.contains_key(&digest));
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert_eq!(v.verify(&token).await, Err("expired"));
        // A token changed after it was cached is a different token: checked from scratch.
        let mut forged = token.clone();
        forged.push('x');
        assert!(v.verify(&forged).await.is_err());
    }

    #[test]
    fn certificate_names_are_normalized_and_checked() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            normalize_cert_name(&format!("SHA256:{colons}")),
            Ok(format!("sha256:{hex}"))
        );
        assert_eq!(normalize_cert_name("DNS:Alice.Example"), Ok("dns:alice.example".into()));
        assert_eq!(normalize_cert_name("URI:spiffe://x/Y"), Ok("uri:spiffe://x/Y".into()));
        assert_eq!(normalize_cert_name("cn: alice "), Ok("cn:alice".into()));
        for bad in [
            "alice",
            "cn:",
            "subject:CN=alice",
            "sha256:abc",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            assert!(normalize_cert_name(bad).is_err(), "{bad}");
        }
        // The fingerprint comes first, so it wins over a name another consumer lists.
        let id = CertId::new(
            b"der",
            Some("alice"),
            &["DNS:Alice.Example".into(), "URI:spiffe://x".into()],
        );
        assert_eq!(id.names.len(), 4);
        assert!(id.names[0].starts_with("sha256:") && id.names[0].len() == 71);
        assert_eq!(&id.names[1..], ["cn:alice", "dns:alice.example", "uri:spiffe://x"]);
    }

    #[test]
    fn two_consumers_cannot_share_a_certificate() {
        let consumer = |id: &str, cert: &str| ConsumerConfig {
            id: id.into(),
            tier: None,
            scopes: vec![],
            roles: vec![],
            metadata: Default::default(),
            keys: vec![],
            jwt_subjects: vec![],
            certificates: vec![cert.into()],
        };
        let err = Consumers::compile(&[consumer("a", "cn:x"), consumer("b", "CN:x")]).unwrap_err();
        assert!(err.contains("`a` and `b`"), "{err}");
        assert!(Consumers::compile(&[consumer("a", "cn:x"), consumer("b", "cn:y")]).is_ok());
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("a%20b+c%2F"), "a b c/");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
