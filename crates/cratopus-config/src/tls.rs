//! The serde types of TLS: the gateway's certificates and ACME settings (`tls:` in
//! gateway.yaml), an organization's certificates, HSTS and client certificates (`tls:` in an
//! organization), and TLS towards an upstream's `https://` targets (`tls:` in an upstream).
//!
//! File paths are relative to the file that names them. The files are read when the config is
//! compiled (and again at every reload; a change to one of them triggers a reload).

use crate::units::Dur;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// `tls:` in gateway.yaml: what the HTTPS listeners serve when no organization claims a name,
/// and where ACME certificates come from.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayTlsConfig {
    /// The certificate served for a name no organization's certificate covers (and to clients
    /// that send no SNI), unless `unknown_sni` is `refuse`.
    #[serde(default)]
    pub default_certificate: Option<CertKeyConfig>,
    /// What a handshake for an unknown name gets: `default_certificate` (the default when one is
    /// set) or `refuse` (a fatal TLS alert; the default without a default certificate).
    #[serde(default)]
    pub unknown_sni: Option<UnknownSni>,
    /// Where organizations with `tls.acme` get their certificates.
    #[serde(default)]
    pub acme: AcmeGatewayConfig,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertKeyConfig {
    /// PEM file with the certificate chain, leaf first.
    #[schemars(with = "String")]
    pub cert: Spanned<String>,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[schemars(with = "String")]
    pub key: Spanned<String>,
}

/// What a TLS handshake for a name no certificate covers gets.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnknownSni {
    /// The gateway's `default_certificate`.
    DefaultCertificate,
    /// A fatal TLS alert: nothing is served.
    Refuse,
}

/// ACME (RFC 8555) settings shared by every organization with `tls.acme`.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AcmeGatewayConfig {
    /// `letsencrypt` (default), `letsencrypt-staging`, or the `https://` URL of another ACME
    /// directory.
    #[serde(default = "default_directory")]
    pub directory: String,
    /// PEM file of the CA that signs the ACME directory's own HTTPS certificate, when it is not
    /// in the system roots (a test server such as pebble).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub directory_ca: Option<Spanned<String>>,
    /// Directory for accounts, certificates and keys (relative to gateway.yaml); keys are
    /// written with mode 0600.
    #[serde(default = "default_storage")]
    pub storage: String,
    /// Renew when less than this is left of a certificate's validity. Default: a third of
    /// its lifetime.
    #[serde(default)]
    pub renew_before: Option<Dur>,
    /// First wait after a failed order; each further failure doubles it, up to `retry_max`.
    #[serde(default = "default_retry_base")]
    pub retry_base: Dur,
    /// Longest wait between attempts after failures.
    #[serde(default = "default_retry_max")]
    pub retry_max: Dur,
    /// Key of the certificates: `ecdsa_p256` (default) or `ecdsa_p384`; an organization's
    /// `tls.acme.key_type` overrides it. A certificate with another key is ordered again (not
    /// sooner than `retry_max` after the last order).
    #[serde(default)]
    pub key_type: Option<crate::cluster_certs::AcmeKeyType>,
}

impl Default for AcmeGatewayConfig {
    fn default() -> Self {
        AcmeGatewayConfig {
            directory: default_directory(),
            directory_ca: None,
            storage: default_storage(),
            renew_before: None,
            retry_base: default_retry_base(),
            retry_max: default_retry_max(),
            key_type: None,
        }
    }
}

fn default_directory() -> String {
    "letsencrypt".into()
}
fn default_storage() -> String {
    "acme".into()
}
fn default_retry_base() -> Dur {
    Dur::secs(60)
}
fn default_retry_max() -> Dur {
    Dur::secs(6 * 3600)
}

/// The directory URL for a `tls.acme.directory` value.
pub fn acme_directory_url(directory: &str) -> Option<&str> {
    match directory {
        "letsencrypt" => Some("https://acme-v02.api.letsencrypt.org/directory"),
        "letsencrypt-staging" => Some("https://acme-staging-v02.api.letsencrypt.org/directory"),
        u if u.starts_with("https://") => Some(u),
        _ => None,
    }
}

/// `tls:` of an organization.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgTlsConfig {
    /// PEM certificate chain served for every domain of the organization (with `key`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cert: Option<Spanned<String>>,
    /// PEM private key of `cert`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub key: Option<Spanned<String>>,
    /// More certificates: each for the names in its `domains` (or, without `domains`, for
    /// every domain of the organization). Give an RSA and an ECDSA certificate for the same
    /// names and each client gets one it supports.
    #[serde(default)]
    pub certificates: Vec<CertificateConfig>,
    /// Get the certificate from the ACME directory of `tls.acme` in gateway.yaml over HTTP-01
    /// and renew it.
    #[serde(default)]
    pub acme: Option<AcmeOrgConfig>,
    /// `Strict-Transport-Security` on every HTTPS response of the organization.
    #[serde(default)]
    pub hsts: Option<HstsConfig>,
    /// Client certificates (mutual TLS).
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
}

/// A certificate of an organization, for some or all of its domains.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the certificate chain, leaf first.
    #[schemars(with = "String")]
    pub cert: Spanned<String>,
    /// PEM file with the private key.
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// The names it is served for (exact or `*.wildcard`, each one a domain of the
    /// organization or under one of its wildcards). Default: every domain.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub domains: Vec<Spanned<String>>,
}

/// An ACME certificate for an organization.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcmeOrgConfig {
    /// Contact address of the ACME account (expiry notices).
    #[schemars(with = "String")]
    pub email: Spanned<String>,
    /// Names on the certificate. Default: the organization's exact domains (HTTP-01 cannot
    /// prove a wildcard).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub domains: Vec<Spanned<String>>,
    /// Key of this certificate, instead of the gateway's `tls.acme.key_type`.
    #[serde(default)]
    pub key_type: Option<crate::cluster_certs::AcmeKeyType>,
}

/// HTTP Strict Transport Security.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HstsConfig {
    /// How long browsers remember to use HTTPS only.
    #[serde(default = "default_hsts_max_age")]
    pub max_age: Dur,
    /// The rule covers every subdomain too.
    #[serde(default)]
    pub include_subdomains: bool,
    /// Consent to browsers' preload lists (needs `include_subdomains` and a year or more).
    #[serde(default)]
    pub preload: bool,
}

fn default_hsts_max_age() -> Dur {
    Dur::secs(365 * 86400)
}

impl HstsConfig {
    /// The header value.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age.0.as_secs());
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// Client certificates of an organization, checked against `ca`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM bundle of the CAs client certificates must chain to.
    #[schemars(with = "String")]
    pub ca: Spanned<String>,
    /// `required` (no handshake without a valid certificate), `optional` (a certificate is
    /// asked for; a request without one goes on), or `required_http` (as optional, but a
    /// request without one gets 401).
    #[serde(default)]
    pub mode: ClientAuthMode,
    /// Request header that carries the client certificate's subject and names to the
    /// upstream (a client's own header of that name is always removed).
    #[serde(default = "default_client_cert_header")]
    pub header: String,
}

fn default_client_cert_header() -> String {
    "X-Forwarded-Client-Cert".into()
}

/// How client certificates are asked for.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// A handshake without a valid certificate fails with a TLS alert.
    #[default]
    Required,
    /// A certificate is asked for; without one requests go on without the header.
    Optional,
    /// As `optional` for the handshake; requests without a certificate get 401.
    RequiredHttp,
}

/// `tls:` of an upstream with `https://` targets.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// Verify the targets' certificates (chain and name). Turning it off is logged as a
    /// warning at every load.
    #[serde(default = "yes")]
    pub verify: bool,
    /// PEM bundle of the CAs to trust instead of the system roots.
    #[serde(default)]
    pub ca: Option<String>,
    /// Name sent as SNI and checked against the certificate; default: the target's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// A client certificate to present to the targets.
    #[serde(default)]
    pub client_cert: Option<UpstreamClientCert>,
}

/// A client certificate for an upstream: PEM chain and key.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamClientCert {
    pub cert: String,
    pub key: String,
}

fn yes() -> bool {
    true
}
