//! Service discovery: where a `discovery:` upstream's targets come from. A [`Source`] answers
//! the current list of targets ([`Found`]); the pool polls it every `refresh`
//! ([`crate::pool::UpstreamPool::start`]) and swaps in a new target set when the list changed,
//! keeping the `Target` (health, breaker, outlier state, in-flight count) of every address that
//! stays, as a DNS refresh does.
//!
//! A source that fails (unreachable, an answer that does not parse) leaves the last known
//! targets in place: an outage of etcd or of the control plane must not take the upstream down
//! with it. The pool logs the first failure and the recovery, and counts failures.
//!
//! - **DNS SRV** (hickory-resolver, so that a chosen server can be asked): the records of the
//!   lowest priority value, as RFC 2782 says (higher values are backups a client falls back to
//!   only when those fail, which health checks here do instead); each record's host resolved to
//!   its addresses; a record's weight is the target's weight (0 counts as 1).
//! - **etcd v3** through its HTTP/JSON gateway (`POST /v3/kv/range` with the prefix as a range,
//!   keys and values base64): no gRPC stack and no `protoc` at build time, and it works with
//!   every etcd since 3.4. Polled every `refresh`: a watch would be quicker to notice a change
//!   but needs a long-lived stream per upstream; the refresh bounds the delay either way.
//! - **registry**: `GET {url}/api/v1/registry/services/{service}` of the control plane, with a
//!   bearer token; only instances whose TTL has not run out are listed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use cratopus_config::DiscoveryConfig;
use cratopus_config::validate::{TargetUrl, parse_target};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::IpAddr;
use std::time::Duration;

/// The longest one read of a source may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from etcd or the registry.
const MAX_ANSWER: usize = 4 << 20;

/// One discovered target: an address, the `host:port` sent as Host (and the TLS server name),
/// and a weight.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub ip: IpAddr,
    pub port: u16,
    pub authority: String,
    pub weight: u32,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A configured discovery source.
pub enum Source {
    DnsSrv {
        resolver: Box<TokioResolver>,
        name: String,
    },
    Etcd {
        client: HttpClient,
        endpoints: Vec<String>,
        prefix: String,
    },
    Registry {
        client: HttpClient,
        url: String,
        token: Option<String>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::DnsSrv { name, .. } => write!(f, "dns_srv {name}"),
            Source::Etcd { prefix, .. } => write!(f, "etcd {prefix}"),
            Source::Registry { url, .. } => write!(f, "registry {url}"),
        }
    }
}

impl Source {
    /// Prepares the source; connects nothing.
    pub fn new(cfg: &DiscoveryConfig) -> Result<Source, String> {
        if let Some(d) = &cfg.dns_srv {
            let mut opts = ResolverOpts::default();
            // Each refresh must see the records as they are now; the refresh interval is the
            // cache.
            opts.cache_size = 0;
            opts.timeout = Duration::from_secs(2);
            let builder = match d.resolver.as_deref() {
                Some(r) => {
                    let addr = cratopus_config::discovery::parse_resolver(r)
                        .ok_or_else(|| format!("resolver `{r}` is not an ip or ip:port"))?;
                    let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                    TokioResolver::builder_with_config(
                        ResolverConfig::from_parts(None, vec![], group),
                        TokioConnectionProvider::default(),
                    )
                }
                None => TokioResolver::builder_tokio().map_err(|e| format!("system resolver: {e}"))?,
            };
            let mut name = d.name.clone();
            if !name.ends_with('.') {
                // A fully qualified name: no search domains tried first.
                name.push('.');
            }
            return Ok(Source::DnsSrv {
                resolver: Box::new(builder.with_options(opts).build()),
                name,
            });
        }
        let client = || -> Result<HttpClient, String> {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .map_err(|e| format!("TLS roots: {e}"))?
                .https_or_http()
                .enable_http1()
                .build();
            Ok(Client::builder(TokioExecutor::new()).build(https))
        };
        if let Some(e) = &cfg.etcd {
            return Ok(Source::Etcd {
                client: client()?,
                endpoints: e
                    .endpoints
                    .iter()
                    .map(|u| u.trim_end_matches('/').to_string())
                    .collect(),
                prefix: e.prefix.clone(),
            });
        }
        if let Some(r) = &cfg.registry {
            return Ok(Source::Registry {
                client: client()?,
                url: format!("{}/api/v1/registry/services/{}", r.url.trim_end_matches('/'), r.service),
                token: r.token.clone(),
            });
        }
        Err("no discovery source".into())
    }

    /// The targets now, sorted (so that two answers compare equal when they list the same).
    pub async fn fetch(&self) -> Result<Vec<Found>, String> {
        let mut found = match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_unsorted()).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("no answer within {FETCH_TIMEOUT:?}")),
        };
        found.sort();
        found.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
        Ok(found)
    }

    async fn fetch_unsorted(&self) -> Result<Vec<Found>, String> {
        match self {
            Source::DnsSrv { resolver, name } => srv(resolver, name).await,
            Source::Etcd {
                client,
                endpoints,
                prefix,
            } => {
                let mut last = String::from("no endpoint");
                for e in endpoints {
                    match etcd_range(client, e, prefix).await {
                        Ok(body) => return parse_etcd(&body),
                        Err(err) => last = format!("{e}: {err}"),
                    }
                }
                Err(last)
            }
            Source::Registry { client, url, token } => {
                let mut req = http::Request::get(url.as_str());
                if let Some(t) = token {
                    req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
                }
                let req = req.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
                let body = send(client, req).await?;
                parse_registry(&body)
            }
        }
    }
}

async fn srv(resolver: &TokioResolver, name: &str) -> Result<Vec<Found>, String> {
    let records = match resolver.srv_lookup(name).await {
        Ok(r) => r,
        // The server says there are none (NXDOMAIN, or no SRV record at the name): every
        // instance is gone, an answer like any other. A server that does not answer is a
        // failure, which keeps the last targets.
        Err(e) if says_none(&e) => return Ok(Vec::new()),
        Err(e) => return Err(format!("SRV {name}: {e}")),
    };
    let records: Vec<_> = records.iter().cloned().collect();
    let Some(best) = records.iter().map(|r| r.priority()).min() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.priority() == best) {
        let host = r.target().to_utf8();
        let host = host.trim_end_matches('.');
        let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => resolver
                .lookup_ip(r.target().clone())
                .await
                .map_err(|e| format!("{host}: {e}"))?
                .iter()
                .collect(),
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{}", r.port())
        } else {
            format!("{host}:{}", r.port())
        };
        for ip in ips {
            out.push(Found {
                ip,
                port: r.port(),
                authority: authority.clone(),
                weight: u32::from(r.weight()).max(1),
            });
        }
    }
    Ok(out)
}

/// NXDOMAIN, or NOERROR without the record: the name has no SRV record. (SERVFAIL, REFUSED
/// and timeouts are failures.)
fn says_none(e: &hickory_resolver::ResolveError) -> bool {
    use hickory_resolver::proto::ProtoErrorKind;
    use hickory_resolver::proto::op::ResponseCode;
    e.proto().is_some_and(|p| {
        matches!(
            p.kind(),
            ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                ..
            }
        )
    })
}

async fn etcd_range(client: &HttpClient, endpoint: &str, prefix: &str) -> Result<Bytes, String> {
    let body = serde_json::json!({
        "key": B64.encode(prefix),
        "range_end": B64.encode(prefix_end(prefix.as_bytes())),
    });
    let req = http::Request::post(format!("{endpoint}/v3/kv/range"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    send(client, req).await
}

/// The end of the range of keys starting with `prefix`: the prefix with its last byte below
/// 0xff incremented (etcd's own `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

async fn send(client: &HttpClient, req: http::Request<Full<Bytes>>) -> Result<Bytes, String> {
    let res = client.request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = res.status();
    let body = http_body_util::Limited::new(res.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("status {status}: {text}"));
    }
    Ok(body)
}

/// etcd's range answer: `{"kvs": [{"key": b64, "value": b64}, ...]}` (`kvs` left out when
/// there are none). A value that is not a target is skipped with a warning: one bad key must
/// not empty the upstream.
pub fn parse_etcd(body: &[u8]) -> Result<Vec<Found>, String> {
    #[derive(serde::Deserialize)]
    struct Range {
        #[serde(default)]
        kvs: Vec<Kv>,
    }
    #[derive(serde::Deserialize)]
    struct Kv {
        key: String,
        #[serde(default)]
        value: String,
    }
    let range: Range = serde_json::from_slice(body).map_err(|e| format!("etcd answer: {e}"))?;
    let mut out = Vec::new();
    for kv in range.kvs {
        let key = B64.decode(&kv.key).map(|k| String::from_utf8_lossy(&k).into_owned());
        let value = B64
            .decode(&kv.value)
            .map_err(|e| e.to_string())
            .and_then(|v| String::from_utf8(v).map_err(|_| "not UTF-8".to_string()));
        match value.and_then(|v| etcd_value(&v)) {
            Ok(f) => out.push(f),
            Err(e) => tracing::warn!(key = ?key.unwrap_or_default(), error = %e, "etcd key is not a target, skipped"),
        }
    }
    Ok(out)
}

/// A target URL, or JSON `{"url", "weight"}` or `{"host", "port", "weight"}`.
fn etcd_value(v: &str) -> Result<Found, String> {
    #[derive(serde::Deserialize)]
    struct Json {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        host: Option<String>,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        weight: Option<u32>,
    }
    let v = v.trim();
    if !v.starts_with('{') {
        return found(v, 1);
    }
    let j: Json = serde_json::from_str(v).map_err(|e| e.to_string())?;
    let weight = j.weight.unwrap_or(1);
    match (j.url, j.host, j.port) {
        (Some(u), _, _) => found(&u, weight),
        (None, Some(h), Some(p)) => found(&format!("http://{h}:{p}"), weight),
        _ => Err("needs `url`, or `host` and `port`".into()),
    }
}

/// The control plane's `{"service", "instances": [{"id", "url", "expires_at"}]}`.
pub fn parse_registry(body: &[u8]) -> Result<Vec<Found>, String> {
    #[derive(serde::Deserialize)]
    struct Service {
        instances: Vec<Instance>,
    }
    #[derive(serde::Deserialize)]
    struct Instance {
        #[serde(default)]
        id: String,
        url: String,
        #[serde(default)]
        weight: Option<u32>,
    }
    let s: Service = serde_json::from_slice(body).map_err(|e| format!("registry answer: {e}"))?;
    let mut out = Vec::new();
    for i in s.instances {
        match found(&i.url, i.weight.unwrap_or(1)) {
            Ok(f) => out.push(f),
            Err(e) => tracing::warn!(instance = %i.id, error = %e, "registry instance is not a target, skipped"),
        }
    }
    Ok(out)
}

/// An `http://ip:port` target. A host name is refused (the registry and etcd are where
/// addresses are kept; resolving names from them is DNS's job), and so is `https://` (the
/// upstream's TLS settings are made for a dns_srv source's scheme only).
fn found(url: &str, weight: u32) -> Result<Found, String> {
    match parse_target(url)? {
        TargetUrl::Http {
            host,
            port,
            tls: false,
            authority,
            ..
        } => {
            let ip: IpAddr = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("`{url}` names a host, not an address"))?;
            Ok(Found {
                ip,
                port,
                authority: authority.to_string(),
                weight: weight.max(1),
            })
        }
        TargetUrl::Http { tls: true, .. } => Err(format!("`{url}`: https targets come only from dns_srv")),
        TargetUrl::Mirror => Err(format!("`{url}` is not an http:// target")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_answers_parse() {
        let body = br#"{"service":"users","instances":[
            {"id":"a","url":"http://127.0.0.1:8081","expires_at":"2026-12-07T06:00:00Z"},
            {"id":"b","url":"http://[::1]:8082","expires_at":"2026-12-07T06:00:00Z"},
            {"id":"c","url":"http://users.internal:80","expires_at":"2026-12-07T06:00:00Z"}
        ]}"#;
        let f = parse_registry(body).unwrap();
        assert_eq!(f.len(), 2, "the host name is skipped: {f:?}");
        assert_eq!(f[0].ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(f[0].port, 8081);
        assert_eq!(f[0].authority, "127.0.0.1:8081");
        assert_eq!(f[1].port, 8082);
        assert!(
            parse_registry(br#"{"service":"users","instances":[]}"#)
                .unwrap()
                .is_empty()
        );
        assert!(parse_registry(b"<html>").is_err());
    }

    #[test]
    fn etcd_answers_parse() {
        let kv = |k: &str, v: &str| serde_json::json!({"key": B64.encode(k), "value": B64.encode(v)});
        let body = serde_json::json!({"kvs": [
            kv("/s/users/a", "http://127.0.0.1:8081"),
            kv("/s/users/b", r#"{"url": "http://127.0.0.1:8082", "weight": 3}"#),
            kv("/s/users/c", r#"{"host": "127.0.0.1", "port": 8083}"#),
            kv("/s/users/d", "not a target"),
        ]});
        let f = parse_etcd(body.to_string().as_bytes()).unwrap();
        let ports: Vec<(u16, u32)> = f.iter().map(|f| (f.port, f.weight)).collect();
        assert_eq!(ports, [(8081, 1), (8082, 3), (8083, 1)]);
        assert!(parse_etcd(br#"{"header":{}}"#).unwrap().is_empty());
    }

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end(b"/s/users/"), b"/s/users0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), [0]);
    }
}
