//! The serde types of identity and access: consumers and their credentials, authentication
//! (API keys, JWT), authorization rules, and IP allow and deny lists.
//!
//! `auth`, `authorize` and `ip` can be written on an organization (for all its routes) and on a
//! route. A route's `auth` and `authorize` replace the organization's; IP lists of both apply.

use crate::units::Dur;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A client of the organization's APIs: who it is, what it may do, and how it proves it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Unique in the organization; written to the traffic log and sent upstream.
    pub id: String,
    /// A plan or tier (`free`, `gold`, …) that `authorize.tiers` can require.
    #[serde(default)]
    pub tier: Option<String>,
    /// Scopes the consumer holds (added to a JWT's `scope`/`scp`).
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Free-form values, kept for the operator (not sent anywhere).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// API keys, stored as hashes: `cratopus hash-key` prints one (`sha256:<hex>`).
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Values of the JWT claim named by `auth.jwt.consumer_claim` (e.g. `sub`) that identify
    /// this consumer.
    #[serde(default)]
    pub jwt_subjects: Vec<String>,
    /// Client certificates that identify this consumer where a route has `auth.mtls`: the
    /// certificate's SHA-256 fingerprint (`sha256:<hex>`, colons allowed, as `openssl x509
    /// -fingerprint -sha256` prints it), its subject's common name (`cn:alice`), or one of its
    /// subject alternative names (`dns:alice.partner.test`, `uri:spiffe://partner.test/alice`,
    /// `email:alice@partner.test`, `ip:10.1.2.3`).
    #[serde(default)]
    pub certificates: Vec<String>,
}

/// One API key of a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    /// `sha256:<64 hex digits>`, from `cratopus hash-key`.
    pub hash: String,
    /// Names of the routes the key is good for; empty means every route.
    pub routes: Vec<String>,
}

impl<'de> Deserialize<'de> for KeyConfig {
    /// A bare string is a hash good for every route; a map gives `hash` and `routes`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            hash: String,
            #[serde(default)]
            routes: Vec<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Hash(String),
            Full(Full),
        }
        Ok(match Form::deserialize(d)? {
            Form::Hash(hash) => KeyConfig {
                hash,
                routes: Vec::new(),
            },
            Form::Full(f) => KeyConfig {
                hash: f.hash,
                routes: f.routes,
            },
        })
    }
}

/// How requests prove who they are. With several methods, any one that succeeds will do.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub api_key: Option<ApiKeyAuthConfig>,
    #[serde(default)]
    pub jwt: Option<JwtAuthConfig>,
    /// The client certificate of the TLS connection, verified by the organization's
    /// `tls.client_auth`, names the consumer (its `certificates`).
    #[serde(default)]
    pub mtls: Option<MtlsAuthConfig>,
}

/// Authentication by client certificate. It has no settings of its own: the CA and whether a
/// certificate is asked for are the organization's `tls.client_auth`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MtlsAuthConfig {}

/// An API key in a header (default `X-Api-Key`) or a query parameter. The key is removed
/// before the request is forwarded.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuthConfig {
    /// Header carrying the key; default `X-Api-Key` (when `query` is not set).
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter carrying the key.
    #[serde(default)]
    pub query: Option<String>,
}

/// A JWT in `Authorization: Bearer …`, verified with a key given inline, in a PEM file, from a
/// JWKS URL or found through OIDC discovery.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthConfig {
    /// Accepted algorithms, e.g. `[RS256]`; `none` is never accepted. Default: the family of
    /// the configured key (HS256/384/512 for a secret; the asymmetric ones for public keys).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// HMAC secret (HS*); write `${JWT_SECRET}` to keep it out of the file.
    #[serde(default)]
    pub secret: Option<String>,
    /// A PEM public key (RSA, EC or Ed25519), inline.
    #[serde(default)]
    pub public_key: Option<String>,
    /// A PEM public key file, relative to this file.
    #[serde(default)]
    pub public_key_file: Option<String>,
    /// A JWKS document's URL; keys are cached, fetched again for an unknown `kid` (at most
    /// every `jwks_min_refresh`) and kept when the URL is down.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// An OIDC issuer: its `/.well-known/openid-configuration` gives the JWKS URL, and `iss`
    /// must equal it unless `issuer` says otherwise.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values (one must match); empty: `aud` is not checked.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Clock skew allowed for `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: Dur,
    /// Refresh the JWKS every this long.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh: Dur,
    /// Fetch the JWKS for an unknown `kid` at most this often.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh: Dur,
    /// Claims sent upstream as headers: `{sub: X-User-Id}`.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// The claim whose value names a consumer (its `jwt_subjects`).
    #[serde(default)]
    pub consumer_claim: Option<String>,
}

/// The serde defaults, with no key source (one must be set).
impl Default for JwtAuthConfig {
    fn default() -> Self {
        JwtAuthConfig {
            algorithms: Vec::new(),
            secret: None,
            public_key: None,
            public_key_file: None,
            jwks_url: None,
            oidc_issuer: None,
            issuer: None,
            audience: Vec::new(),
            leeway: default_leeway(),
            jwks_refresh: default_jwks_refresh(),
            jwks_min_refresh: default_jwks_min_refresh(),
            forward_claims: BTreeMap::new(),
            consumer_claim: None,
        }
    }
}

fn default_leeway() -> Dur {
    Dur::secs(30)
}

fn default_jwks_refresh() -> Dur {
    Dur::secs(600)
}

fn default_jwks_min_refresh() -> Dur {
    Dur::secs(10)
}

/// What an authenticated request must have. Every listed condition must hold.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeConfig {
    /// Scopes that must all be present (JWT `scope`/`scp`, plus the consumer's).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// At least one of these roles (the consumer's, or a JWT `roles` claim).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Claims that must equal a value, or be one of a list (or contain it, for an array claim).
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimRule>,
    /// Only these consumers.
    #[serde(default)]
    pub consumers: Vec<String>,
    /// Only consumers of these tiers.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Answer 404 `no_route` instead of 401/403, so that the route does not reveal itself.
    #[serde(default)]
    pub hide: bool,
}

/// A claim's required value, or the values it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRule {
    Equals(String),
    OneOf(Vec<String>),
}

impl<'de> Deserialize<'de> for ClaimRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Form::deserialize(d)? {
            Form::One(s) => ClaimRule::Equals(s),
            Form::Many(v) => ClaimRule::OneOf(v),
        })
    }
}

/// Client addresses allowed or refused (CIDRs or single addresses, v4 and v6). A denied
/// address gets 403; with `allow` set, any other address gets 403.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpRulesConfig {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

impl JsonSchema for KeyConfig {
    fn schema_name() -> Cow<'static, str> {
        "KeyConfig".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An API key's hash (`sha256:<hex>` from `cratopus hash-key`), or `{hash, routes}` to limit it to some routes.",
            "anyOf": [
                {"type": "string"},
                {"type": "object", "additionalProperties": false, "required": ["hash"], "properties": {
                    "hash": {"type": "string"},
                    "routes": {"type": "array", "items": {"type": "string"}}
                }}
            ]
        })
    }
}

impl JsonSchema for ClaimRule {
    fn schema_name() -> Cow<'static, str> {
        "ClaimRule".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The value the claim must have, or a list of values it may have.",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
        })
    }
}
