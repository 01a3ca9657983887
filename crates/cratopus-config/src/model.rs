//! The serde types of `gateway.yaml` and of an organization file.
//!
//! Unknown keys are errors everywhere (`deny_unknown_fields`), so a typo never silently turns
//! a setting off. Values whose place matters for a later error (references, patterns, names)
//! are kept [`Spanned`].
//!
//! Every type also describes itself as a JSON Schema ([`schemars::JsonSchema`], see
//! [`crate::schema`]); the types with a hand-written `Deserialize` have a hand-written schema
//! that accepts what it accepts, and `Spanned<T>` fields appear as plain `T`.

use crate::access::{AuthConfig, AuthorizeConfig, ConsumerConfig, IpRulesConfig};
use crate::http_policies::{CorsConfig, ForwardConfig, ValidationConfig};
use crate::policies::{PolicyConfig, QuotaConfig, RateLimitConfig, StateConfig};
use crate::resilience::{BulkheadConfig, CircuitBreakerConfig, OutlierConfig, RetryConfig};
use crate::tls::{GatewayTlsConfig, OrgTlsConfig, UpstreamTlsConfig};
use crate::units::{ByteSize, Dur};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
pub use serde_saphyr::Spanned;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// `gateway.yaml`: listeners, limits, the traffic log and where the organizations come from.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway accepts HTTP. Default: one listener on 127.0.0.1:8080.
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerConfig>,
    /// Runtime worker threads. Default: the number of cores. `1` runs a single-threaded runtime.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Path answered with 200 by the gateway itself, before routing.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// Protection against oversized and slow requests.
    #[serde(default)]
    pub limits: Limits,
    /// The traffic log: one JSON line per request. Default: off.
    #[serde(default)]
    pub traffic_log: Option<TrafficLogConfig>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Dur,
    /// The organization that answers hosts no organization claims.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub default_organization: Option<Spanned<String>>,
    /// Organization files (a path or glob relative to this file, such as `orgs/*.yaml`), an inline
    /// organization, or a list mixing both.
    #[serde(default)]
    pub organizations: OrgSources,
    /// Reload when a config file changes. SIGHUP always reloads.
    #[serde(default = "yes")]
    pub watch: bool,
    /// The admin API on its own listener. Off unless this section is present.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// W3C trace context.
    #[serde(default)]
    pub tracing: TracingConfig,
    /// Where rate-limit counters and quotas live: in memory (default) or Redis, shared by
    /// every node of a cluster.
    #[serde(default)]
    pub state: StateConfig,
    /// Proxies (CIDRs) in front of the gateway whose `X-Forwarded-For` is believed: the client
    /// address is then the last one in that header that is not a trusted proxy. Default: none,
    /// the client is the TCP peer.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The default certificate, what unknown names get, and ACME settings.
    #[serde(default)]
    pub tls: GatewayTlsConfig,
    /// How request paths are normalized before routing.
    #[serde(default)]
    pub path_normalization: PathNormalization,
    /// The response cache's memory store, shared by every organization (see `cache:` on
    /// organizations and routes).
    #[serde(default)]
    pub cache: crate::cache::CacheStoreConfig,
    /// Take organizations from a cluster's control plane through Redis, beside this file's own,
    /// and report to it. Off unless this section is present.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// Trace context handling: a caller's `traceparent` is always continued with its own sampling
/// decision; traces the gateway starts are sampled at `sample_ratio`.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Share of new traces marked sampled (`traceparent` flags 01), from 0.0 to 1.0.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Export a span per sampled request (and one per upstream call) to an OpenTelemetry
    /// collector over OTLP/HTTP. Off when absent.
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            sample_ratio: default_sample_ratio(),
            otlp: None,
        }
    }
}

/// Where spans go: an OTLP/HTTP (protobuf) endpoint such as the collector's port 4318.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// `http://collector:4318` (then `/v1/traces` is added) or the full traces URL.
    pub endpoint: String,
    /// Extra request headers, e.g. an API key of a hosted collector.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Time allowed for one export call.
    #[serde(default = "default_otlp_timeout")]
    pub timeout: Dur,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Spans waiting for export; when the collector falls behind, further spans are dropped.
    #[serde(default = "default_otlp_queue")]
    pub queue: usize,
}

fn default_otlp_timeout() -> Dur {
    Dur::secs(10)
}

fn default_service_name() -> String {
    "cratopus".to_string()
}

fn default_otlp_queue() -> usize {
    2048
}

fn default_sample_ratio() -> f64 {
    1.0
}

/// The admin API: status, organizations, upstreams, reload and Prometheus metrics, each call
/// behind a bearer token.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port` of the admin listener; keep it on loopback or a private network.
    #[serde(default = "default_admin_bind")]
    pub bind: String,
    /// The bearer token every call must carry; `${CRATOPUS_ADMIN_TOKEN}` reads it from the
    /// environment. At least 16 characters.
    pub token: String,
}

fn default_admin_bind() -> String {
    "127.0.0.1:9901".into()
}

fn yes() -> bool {
    true
}
fn default_listeners() -> Vec<ListenerConfig> {
    vec![ListenerConfig {
        name: Some("http".into()),
        bind: "127.0.0.1:8080".into(),
        tls: false,
        redirect_http_to_https: false,
        https_port: None,
    }]
}
fn default_health_path() -> String {
    "/__health".into()
}
fn default_shutdown_timeout() -> Dur {
    Dur::secs(30)
}

/// An address the gateway accepts HTTP on.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Shown in logs (`listening name=http addr=…`).
    #[serde(default)]
    pub name: Option<String>,
    /// `host:port`; port 0 picks a free port (the chosen address is logged).
    pub bind: String,
    /// Serve HTTPS: the certificate is chosen by SNI among the organizations' certificates.
    #[serde(default)]
    pub tls: bool,
    /// Answer every request with a 308 to the same host and path over HTTPS, except ACME
    /// HTTP-01 challenges (`/.well-known/acme-challenge/`).
    #[serde(default)]
    pub redirect_http_to_https: bool,
    /// The port in the redirect's `Location`. Default: the port of the first `tls` listener
    /// (none written when it is 443).
    #[serde(default)]
    pub https_port: Option<u16>,
}

/// Protection against oversized and slow requests.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request head (request line and headers); larger gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: ByteSize,
    /// Most header fields in a request; more gets 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Time a client has to send a complete request head (slowloris guard); then 408. It also
    /// bounds how long an idle keep-alive connection stays open between requests.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Dur,
    /// An HTTP/2 connection with no stream open and nothing received for this long is closed
    /// (GOAWAY); a peer silent this long is pinged and dropped if it does not answer.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
    /// Largest request body on any route unless the route sets its own; larger gets 413.
    #[serde(default)]
    pub max_body_bytes: Option<ByteSize>,
    /// Longest a client may pause between two pieces of its request body (nginx's
    /// `client_body_timeout`); then 408 and the upstream request is aborted. `0s` turns it off.
    #[serde(default = "default_client_body_timeout")]
    pub client_body_timeout: Dur,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_body_bytes: None,
            client_body_timeout: default_client_body_timeout(),
        }
    }
}
fn default_max_header_bytes() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_max_headers() -> usize {
    200
}
fn default_header_read_timeout() -> Dur {
    Dur::secs(10)
}
fn default_client_body_timeout() -> Dur {
    Dur::secs(60)
}

/// How request paths are normalized before routing (and forwarded normalized), so that the
/// gateway routes on the path the upstream will read. Safe by default; see
/// `cratopus_core::normalize`. In gateway.yaml for every organization; an organization's own
/// section replaces it (keys it leaves out take their defaults).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathNormalization {
    /// Remove `.` and `..` segments (RFC 3986 §5.2.4; `..` above the root is refused with 400),
    /// decode percent-encoded unreserved characters and upper-case the hex of other escapes.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Merge runs of `/` into one.
    #[serde(default = "yes")]
    pub merge_slashes: bool,
    /// What an escaped slash (`%2F`, `%5C`, any case) or a bare `\` gets.
    #[serde(default)]
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathNormalization {
    fn default() -> Self {
        PathNormalization {
            normalize: true,
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::default(),
        }
    }
}

/// What an escaped slash in a path gets (Envoy's `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// 400: servers disagree on what it means, so no route can be chosen safely.
    #[default]
    Reject,
    /// Passed on as it is (upper-cased): routed as part of its segment. Only safe when every
    /// upstream also reads it as a character, never as a separator.
    Keep,
    /// Read as `/` and forwarded.
    UnescapeAndForward,
    /// Read as `/`, and the client is redirected (307) to the normalized path.
    UnescapeAndRedirect,
}

fn default_idle_timeout() -> Dur {
    Dur::secs(60)
}

/// The traffic log: one JSON line per request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficLogConfig {
    /// File to append to (relative to gateway.yaml; its directory is created); `-` writes to
    /// standard output.
    pub path: String,
    /// Rotate when the file grows past this size (`path.1`, `path.2`, …).
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    /// Rotated files kept.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Lines queued for the writer; when full, lines are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
}
fn default_keep() -> usize {
    5
}
fn default_queue() -> usize {
    65536
}

/// Where the organizations come from: a path or glob, or an inline organization.
#[derive(Debug, Clone)]
pub enum OrgSource {
    Path(Spanned<String>),
    Inline(Box<OrganizationConfig>),
}

/// One source or a list of them.
#[derive(Debug, Clone, Default)]
pub struct OrgSources(pub Vec<OrgSource>);

/// Reads one source: a string is a path or glob, a map an inline organization.
struct SourceVisitor;

impl<'de> Visitor<'de> for SourceVisitor {
    type Value = OrgSource;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a path or glob of organization files, or an inline organization")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<OrgSource, E> {
        let unknown = serde_saphyr::Location::UNKNOWN;
        Ok(OrgSource::Path(Spanned::new(v.to_string(), unknown, unknown)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OrgSource, A::Error> {
        OrganizationConfig::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(|o| OrgSource::Inline(Box::new(o)))
    }
}

impl<'de> Deserialize<'de> for OrgSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SourceVisitor)
    }
}

impl<'de> Deserialize<'de> for OrgSources {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrgSources;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path or glob, or a list of paths, globs and inline organizations")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OrgSources, E> {
                SourceVisitor.visit_str(v).map(|s| OrgSources(vec![s]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OrgSources, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<OrgSource>()? {
                    out.push(s);
                }
                Ok(OrgSources(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OrgSources, A::Error> {
                SourceVisitor.visit_map(map).map(|s| OrgSources(vec![s]))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for OrgSource {
    fn schema_name() -> Cow<'static, str> {
        "OrgSource".into()
    }
    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::OrgSource").into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let inline = generator.subschema_for::<OrganizationConfig>();
        json_schema!({
            "description": "A path or glob of organization files, or an inline organization.",
            "anyOf": [
                {
                    "type": "string",
                    "description": "A path or glob of organization files, relative to this file (`orgs/*.yaml`). A new file matching a glob is picked up by hot reload."
                },
                inline
            ]
        })
    }
}

impl JsonSchema for OrgSources {
    fn schema_name() -> Cow<'static, str> {
        "OrgSources".into()
    }
    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::OrgSources").into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = generator.subschema_for::<OrgSource>();
        json_schema!({
            "description": "Where organizations come from: a path or glob, an inline organization, or a list mixing both.",
            "anyOf": [
                one,
                { "type": "array", "items": one }
            ]
        })
    }
}

/// An organization: a tenant with its domains, upstreams and routes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationConfig {
    /// The organization's name, unique across the gateway.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Host names this organization answers: exact (`api.acme.test`) or `*.acme.test`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub domains: Vec<Spanned<String>>,
    /// The upstreams, by name; a route names one in `upstream`.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// The routes, matched by path and then by method.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Named policies; a route applies one by listing its name in `policies`. The routes that
    /// name a policy share its counters.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyConfig>,
    /// A rate limit over every route of the organization, with one set of counters.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// A quota over every route of the organization.
    #[serde(default)]
    pub quota: Option<QuotaConfig>,
    /// The organization's consumers: who calls its APIs, with their credentials.
    #[serde(default)]
    pub consumers: Vec<ConsumerConfig>,
    /// Authentication for every route (a route's own `auth` replaces it).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Authorization for every route (a route's own `authorize` replaces it).
    #[serde(default)]
    pub authorize: Option<AuthorizeConfig>,
    /// Client addresses allowed or refused on every route.
    #[serde(default)]
    pub ip: Option<IpRulesConfig>,
    /// CORS for every route (a route's own `cors` replaces it).
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// Certificates (files or ACME), HSTS and client certificates.
    #[serde(default)]
    pub tls: Option<OrgTlsConfig>,
    /// Path normalization for this organization, replacing gateway.yaml's.
    #[serde(default)]
    pub path_normalization: Option<PathNormalization>,
    /// Failed authentications per client address, over every route of the organization.
    #[serde(default)]
    pub auth_failures: Option<crate::auth_limits::AuthFailuresConfig>,
    /// Header and query modifiers of every route (a route's run after them).
    #[serde(default)]
    pub modify: Option<crate::modify::ModifyConfig>,
    /// Response compression (gzip, br, zstd) of every route (a route's own replaces it).
    #[serde(default)]
    pub compression: Option<crate::compress::CompressionConfig>,
    /// The response cache of every route (a route's own `cache` fields replace these).
    #[serde(default)]
    pub cache: Option<crate::cache::CacheConfig>,
}

/// A pool of targets with its balancing, health checking and timeouts.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://host:port` (port 80 if omitted), `https://host:port` (443) or `mirror://`, as
    /// strings or `{url, weight}`. Leave out with `discovery`.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// How a target is chosen for each request.
    #[serde(default)]
    pub balance: Balance,
    /// What `consistent_hash` hashes.
    #[serde(default)]
    pub hash_on: Option<HashOn>,
    /// Active health checks; without them every target is always healthy.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Timeouts towards the targets.
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
    /// The protocol spoken to the targets.
    #[serde(default)]
    pub protocol: Protocol,
    /// How often target host names are resolved again.
    #[serde(default = "default_dns_refresh")]
    pub dns_refresh: Dur,
    /// Send the client's Host header upstream instead of the target's `host:port`.
    #[serde(default)]
    pub preserve_host: bool,
    /// Idle keep-alive connections kept per target.
    #[serde(default = "default_max_idle")]
    pub max_idle_per_target: usize,
    /// A circuit breaker per target: after repeated failures the target gets no requests for a
    /// while, then a few probes decide whether it is back.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Passive health: targets that keep failing real requests are ejected for a growing time.
    #[serde(default)]
    pub outlier_detection: Option<OutlierConfig>,
    /// Retries of failed requests to another target, for every route of this upstream (a
    /// route's own `retry` replaces it).
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// At most this many requests in flight to the upstream; more get 503 or wait briefly.
    #[serde(default)]
    pub bulkhead: Option<BulkheadConfig>,
    /// TLS towards `https://` targets: verification, CA, SNI, client certificate.
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
    /// Targets from DNS SRV, etcd or the control plane's registry, instead of `targets`.
    #[serde(default)]
    pub discovery: Option<crate::discovery::DiscoveryConfig>,
    /// In a cluster: share target state and in-flight counts with the other nodes.
    #[serde(default)]
    pub shared_state: crate::discovery::SharedStateConfig,
}
fn default_dns_refresh() -> Dur {
    Dur::secs(30)
}
fn default_max_idle() -> usize {
    1024
}

/// A target: `http://host:port` or `mirror://`, with an optional weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub url: String,
    pub weight: u32,
}

impl<'de> Deserialize<'de> for TargetConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            url: String,
            #[serde(default = "one")]
            weight: u32,
        }
        fn one() -> u32 {
            1
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TargetConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a target URL such as http://10.0.0.1:8080, or {url, weight}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TargetConfig, E> {
                Ok(TargetConfig {
                    url: v.to_string(),
                    weight: 1,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TargetConfig, A::Error> {
                let f = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TargetConfig {
                    url: f.url,
                    weight: f.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// How an upstream picks a target.
impl JsonSchema for TargetConfig {
    fn schema_name() -> Cow<'static, str> {
        "TargetConfig".into()
    }
    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::TargetConfig").into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let url_doc = "`http://host:port` (port 80 if omitted) or `mirror://` (the built-in echo service). \
                       A host name is resolved with DNS and every address becomes a target.";
        json_schema!({
            "description": "A target: its URL as a string (weight 1), or `{url, weight}`.",
            "anyOf": [
                { "type": "string", "description": url_doc },
                {
                    "type": "object",
                    "properties": {
                        "url": { "type": "string", "description": url_doc },
                        "weight": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": u32::MAX,
                            "default": 1,
                            "description": "The target's share of requests relative to the other targets."
                        }
                    },
                    "required": ["url"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// How an upstream picks a target.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Smooth weighted round robin (nginx's algorithm).
    #[default]
    RoundRobin,
    /// The target with the fewest in-flight requests relative to its weight.
    LeastConnections,
    /// Two targets at random, the less loaded of them.
    PowerOfTwo,
    /// A ring of virtual nodes hashed from `hash_on`.
    ConsistentHash,
}

/// What `consistent_hash` hashes: `{header: X-User}`, `{cookie: session}` or `client_ip`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    /// The value of this request header; requests without it go to a random target.
    Header(String),
    /// The value of this cookie; requests without it go to a random target.
    Cookie(String),
    /// The client's IP address.
    ClientIp,
}

/// The protocol spoken to an upstream's targets.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge over cleartext.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`), for `https://` targets.
    H2,
}

/// Timeouts towards an upstream's targets.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTimeouts {
    /// TCP connect; past it the request gets 504.
    #[serde(default = "default_connect")]
    pub connect: Dur,
    /// From sending the request to the response head; past it 504. A route's `timeout`
    /// overrides it.
    #[serde(default = "default_response")]
    pub response: Dur,
    /// Idle pooled connections are closed after this long.
    #[serde(default = "default_idle")]
    pub idle: Dur,
    /// The longest pause between two reads of a response body once its head has come: a
    /// stream (Server-Sent Events, a long download) may last any time, but one that goes
    /// silent for this long is cut. `0s` turns it off. A route's `read_timeout` overrides it.
    #[serde(default = "default_read")]
    pub read: Dur,
}
impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts {
            connect: default_connect(),
            response: default_response(),
            idle: default_idle(),
            read: default_read(),
        }
    }
}
fn default_read() -> Dur {
    Dur::secs(60)
}
fn default_connect() -> Dur {
    Dur::secs(5)
}
fn default_response() -> Dur {
    Dur::secs(60)
}
fn default_idle() -> Dur {
    Dur::secs(60)
}

/// How a health check probes a target.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// A GET of `path` on a new connection.
    #[default]
    Http,
    /// A TCP connect.
    Tcp,
    /// The gRPC health-checking protocol (`grpc.health.v1.Health/Check`) over HTTP/2 (h2c,
    /// or h2 to `https://` targets); `SERVING` is healthy.
    Grpc,
}

/// Active health checking of every target of an upstream.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `http` (a GET on a new connection) or `tcp` (a connect).
    #[serde(default, rename = "type")]
    pub kind: HealthCheckKind,
    /// Path requested by `http` checks; Host is the target's `host:port`.
    #[serde(default = "default_hc_path")]
    pub path: String,
    /// Status an `http` check expects; by default any 2xx.
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// Time between checks of every target.
    #[serde(default = "default_hc_interval")]
    pub interval: Dur,
    /// A check that takes longer fails.
    #[serde(default = "default_hc_timeout")]
    pub timeout: Dur,
    /// Consecutive successes that bring a target back.
    #[serde(default = "default_two")]
    pub healthy_threshold: u32,
    /// Consecutive failures that take a target out.
    #[serde(default = "default_two")]
    pub unhealthy_threshold: u32,
    /// `http` checks also read the whole response body within `timeout`: a body cut short
    /// (shorter than its `Content-Length`, or a connection closed mid-body) fails the check.
    #[serde(default)]
    pub read_body: bool,
    /// The service a `grpc` check asks about; empty (the default) asks about the server as a
    /// whole.
    #[serde(default)]
    pub grpc_service: String,
}
fn default_hc_path() -> String {
    "/".into()
}
fn default_hc_interval() -> Dur {
    Dur::secs(5)
}
fn default_hc_timeout() -> Dur {
    Dur::secs(2)
}
fn default_two() -> u32 {
    2
}

/// A route: what it matches and where it goes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Shown in logs and metrics; default: the path pattern.
    #[serde(default)]
    pub name: Option<String>,
    /// Path pattern: literal segments, `{param}` for one segment, `{*rest}` for the rest.
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// Methods this route answers; empty means every method. `GET` answers `HEAD` too.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub methods: Vec<Spanned<String>>,
    /// The upstream requests go to: the name of an upstream of the same organization. A route
    /// has either this or a `split`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub upstream: Option<Spanned<String>>,
    /// Removed from the start of the path before forwarding.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub strip_prefix: Option<Spanned<String>>,
    /// Upstream path template, with the route's `{param}`s, e.g. `/v2/users/{id}`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub rewrite: Option<Spanned<String>>,
    /// Time to the upstream's response head on this route (overrides the upstream's).
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// The longest pause between two reads of the response body on this route (overrides the
    /// upstream's `timeouts.read`); `0s` turns it off.
    #[serde(default)]
    pub read_timeout: Option<Dur>,
    /// Largest request body on this route; larger gets 413.
    #[serde(default)]
    pub max_body_bytes: Option<ByteSize>,
    /// Named policies of the organization that apply to this route, in order.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub policies: Vec<Spanned<String>>,
    /// A rate limit of this route alone.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// A quota of this route alone.
    #[serde(default)]
    pub quota: Option<QuotaConfig>,
    /// Retries on this route; replaces the upstream's `retry`.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// At most this many requests in flight on this route.
    #[serde(default)]
    pub bulkhead: Option<BulkheadConfig>,
    /// Authentication on this route; replaces the organization's. `auth: {}` turns it off.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Authorization on this route; replaces the organization's.
    #[serde(default)]
    pub authorize: Option<AuthorizeConfig>,
    /// Client addresses allowed or refused on this route (after the organization's lists).
    #[serde(default)]
    pub ip: Option<IpRulesConfig>,
    /// CORS on this route; replaces the organization's.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// Request validation: required headers and query parameters, a JSON Schema for the body.
    #[serde(default)]
    pub validate: Option<ValidationConfig>,
    /// Zero-trust forwarding: only the listed headers and query parameters reach the upstream.
    #[serde(default)]
    pub forward: Option<ForwardConfig>,
    /// Shadow traffic: a share of the requests also copied to another upstream, its answers
    /// only measured.
    #[serde(default)]
    pub shadow: Option<crate::shadow::ShadowConfig>,
    /// Failed authentications per client address on this route alone.
    #[serde(default)]
    pub auth_failures: Option<crate::auth_limits::AuthFailuresConfig>,
    /// Shares of the route's requests to several upstreams (canary, blue/green, A/B) instead
    /// of one `upstream`.
    #[serde(default)]
    pub split: Option<crate::split::SplitConfig>,
    /// Header and query modifiers of this route, run after the organization's.
    #[serde(default)]
    pub modify: Option<crate::modify::ModifyConfig>,
    /// Conditions beyond path and method (headers, query, cookies, consumers, tiers), so that
    /// routes of one path and method can split its traffic.
    #[serde(default, rename = "match")]
    pub conditions: Option<crate::matching::MatchConfig>,
    /// WebSocket on this route: switched off, or an idle timeout, a message size and a message
    /// rate per socket.
    #[serde(default)]
    pub websocket: Option<crate::websocket::WebSocketConfig>,
    /// GraphQL guards: limits on the operations clients send, persisted queries.
    #[serde(default)]
    pub graphql: Option<crate::graphql::GraphqlConfig>,
    /// Translate gRPC-Web (`application/grpc-web`, `application/grpc-web-text`) from browsers
    /// into gRPC to the upstream, and its answers back.
    #[serde(default)]
    pub grpc_web: bool,
    /// Several backends called for each request, their answers shaped and merged into one
    /// (KrakenD's endpoint; see docs/composition.md). Replaces the streaming pass-through.
    #[serde(default)]
    pub compose: Option<crate::compose::ComposeEndpointConfig>,
    /// Response compression (gzip, br, zstd) on this route; replaces the organization's.
    #[serde(default)]
    pub compression: Option<crate::compress::CompressionConfig>,
    /// The response cache on this route (its fields replace the organization's).
    #[serde(default)]
    pub cache: Option<crate::cache::CacheConfig>,
    /// The request path's first segment names the service (`/users/123` → `users`) whose
    /// instances answer: `upstream` must be a discovery template (`{service}` in its source).
    #[serde(default)]
    pub service_from_path: bool,
}
