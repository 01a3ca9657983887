//! The serde types of an upstream's service discovery (`discovery:`) and of its share in the
//! cluster's target state (`shared_state:`). The runtime is `cratopus_upstream::discovery` and
//! `cratopus_upstream::shared_state`.
//!
//! An upstream takes its targets either from `targets` or from `discovery`, not both (as
//! Envoy's cluster types and APISIX's `discovery_type` do): a discovered upstream follows its
//! source and nothing else, so what it sends to is always what the source says.

use crate::units::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where an upstream's targets come from. Exactly one source.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// DNS SRV records: each record is a target (its host resolved to addresses), the lowest
    /// priority value only, weighted by the record's weight.
    #[serde(default)]
    pub dns_srv: Option<DnsSrvConfig>,
    /// etcd v3 keys under a prefix, read through etcd's HTTP/JSON gateway: each value is a target.
    #[serde(default)]
    pub etcd: Option<EtcdConfig>,
    /// The control plane's service registry (`cratopus control`): the instances of a service
    /// whose TTL has not run out.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
}

/// `discovery.dns_srv`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsSrvConfig {
    /// The SRV name, such as `_http._tcp.users.service.consul`.
    pub name: String,
    /// The DNS server to ask, `ip` or `ip:port` (port 53 if omitted). Default: the system's
    /// resolvers (/etc/resolv.conf).
    #[serde(default)]
    pub resolver: Option<String>,
    /// How often the records are read again.
    #[serde(default = "default_refresh")]
    pub refresh: Dur,
    /// The scheme of the targets: `http` (default) or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
}

/// `discovery.etcd`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// etcd client URLs (`http://127.0.0.1:2379`); tried in turn until one answers.
    pub endpoints: Vec<String>,
    /// Every key starting with this is a target of the upstream. Its value is a target URL
    /// (`http://10.0.0.5:8080`) or JSON `{"url": "...", "weight": 2}` or
    /// `{"host": "10.0.0.5", "port": 8080, "weight": 2}` (the form APISIX writes).
    pub prefix: String,
    /// How often the keys are read again.
    #[serde(default = "default_refresh")]
    pub refresh: Dur,
}

/// `discovery.registry`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The control plane's base URL, such as `http://control:7000`.
    pub url: String,
    /// A bearer token of the control plane (the operator's or the organization's);
    /// `${REGISTRY_TOKEN}` reads it from the environment.
    #[serde(default)]
    pub token: Option<String>,
    /// The service whose instances are the targets.
    pub service: String,
    /// How often the instances are read again.
    #[serde(default = "default_refresh")]
    pub refresh: Dur,
}

fn default_refresh() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_scheme() -> String {
    "http".into()
}

/// What a template's source names the service with.
pub const SERVICE: &str = "{service}";

/// Whether `s` may name a service taken from a request path: 1 to 63 of `A-Z a-z 0-9 - _ .`,
/// not starting with a dot (it becomes part of a DNS name, a key prefix or a URL path).
pub fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The shortest refresh interval accepted: a source is not polled in a busy loop.
pub const MIN_REFRESH: Duration = Duration::from_millis(100);

impl DiscoveryConfig {
    /// The refresh interval of the configured source.
    pub fn refresh(&self) -> Duration {
        match (&self.dns_srv, &self.etcd, &self.registry) {
            (Some(d), _, _) => d.refresh.0,
            (_, Some(e), _) => e.refresh.0,
            (_, _, Some(r)) => r.refresh.0,
            _ => default_refresh().0,
        }
        .max(MIN_REFRESH)
    }

    /// Whether this is a template for routes with `service_from_path`: `{service}` in the
    /// SRV name, the etcd prefix or the registry's service.
    pub fn is_template(&self) -> bool {
        let has = |s: &str| s.contains(SERVICE);
        self.dns_srv.as_ref().is_some_and(|d| has(&d.name))
            || self.etcd.as_ref().is_some_and(|e| has(&e.prefix))
            || self.registry.as_ref().is_some_and(|r| has(&r.service))
    }

    /// The template with `{service}` replaced by `service`.
    pub fn for_service(&self, service: &str) -> DiscoveryConfig {
        let mut d = self.clone();
        if let Some(x) = &mut d.dns_srv {
            x.name = x.name.replace(SERVICE, service);
        }
        if let Some(x) = &mut d.etcd {
            x.prefix = x.prefix.replace(SERVICE, service);
        }
        if let Some(x) = &mut d.registry {
            x.service = x.service.replace(SERVICE, service);
        }
        d
    }

    /// Whether the targets will be `https://` ones (only a `dns_srv` source can say so; the
    /// others name their scheme in each target URL).
    pub fn https(&self) -> bool {
        self.dns_srv.as_ref().is_some_and(|d| d.scheme == "https")
    }

    /// Values serde accepts but the runtime cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let n = [self.dns_srv.is_some(), self.etcd.is_some(), self.registry.is_some()]
            .iter()
            .filter(|s| **s)
            .count();
        if n != 1 {
            out.push(format!("give exactly one source (dns_srv, etcd or registry), not {n}"));
        }
        let refresh = |out: &mut Vec<String>, what: &str, d: &Dur| {
            if d.0 < MIN_REFRESH {
                out.push(format!("{what}: refresh must be at least 100ms, not {:?}", d.0));
            }
        };
        if let Some(d) = &self.dns_srv {
            if d.name.trim().is_empty() {
                out.push("dns_srv: name is empty".into());
            }
            if let Some(r) = &d.resolver
                && parse_resolver(r).is_none()
            {
                out.push(format!("dns_srv: resolver `{r}` is not an ip or ip:port"));
            }
            if d.scheme != "http" && d.scheme != "https" {
                out.push(format!("dns_srv: scheme must be http or https, not `{}`", d.scheme));
            }
            refresh(&mut out, "dns_srv", &d.refresh);
        }
        if let Some(e) = &self.etcd {
            if e.endpoints.is_empty() {
                out.push("etcd: endpoints is empty".into());
            }
            for u in &e.endpoints {
                if !is_http_url(u) {
                    out.push(format!("etcd: endpoints: `{u}` is not an http:// URL"));
                }
            }
            if e.prefix.is_empty() {
                out.push("etcd: prefix is empty (it would take every key of the store)".into());
            }
            refresh(&mut out, "etcd", &e.refresh);
        }
        if let Some(r) = &self.registry {
            if !is_http_url(&r.url) && !r.url.starts_with("https://") {
                out.push(format!("registry: url `{}` is not an http:// or https:// URL", r.url));
            }
            if !is_service_name(&r.service.replace(SERVICE, "x")) {
                out.push(format!("registry: service `{}` is not a service name", r.service));
            }
            refresh(&mut out, "registry", &r.refresh);
        }
        out
    }
}

/// `ip` or `ip:port` (port 53).
pub fn parse_resolver(s: &str) -> Option<std::net::SocketAddr> {
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        return Some(a);
    }
    let ip: std::net::IpAddr = s.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    Some(std::net::SocketAddr::new(ip, 53))
}

fn is_http_url(u: &str) -> bool {
    u.strip_prefix("http://").is_some_and(|rest| !rest.is_empty())
}

/// `shared_state:` of an upstream: what it shares with the other nodes of a cluster (only when
/// gateway.yaml has `cluster:`; both on by default).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedStateConfig {
    /// Announce targets this node finds down (health check, outlier ejection, open breaker) and
    /// up again, and act on the other nodes' announcements.
    #[serde(default = "yes")]
    pub targets: bool,
    /// Exchange in-flight counts every second, so that `least_connections` and `power_of_two`
    /// balance on the cluster's load rather than this node's alone.
    #[serde(default = "yes")]
    pub inflight: bool,
}

impl Default for SharedStateConfig {
    fn default() -> Self {
        SharedStateConfig {
            targets: true,
            inflight: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// A route's `service_from_path` and the templates it needs: such a route takes one
/// `upstream`, a template; a template serves only such routes (its `{service}` is never a
/// real name).
pub(crate) fn check_route(
    f: &std::path::Path,
    here: &str,
    what: &str,
    o: &crate::model::OrganizationConfig,
    r: &crate::model::RouteConfig,
    errors: &mut Vec<crate::ConfigError>,
) {
    let template = |name: &str| {
        o.upstreams
            .get(name)
            .and_then(|u| u.discovery.as_ref())
            .is_some_and(DiscoveryConfig::is_template)
    };
    let at = |key: &str, msg: String| crate::ConfigError::at_key(f, format!("{here}/{key}"), msg);
    if r.service_from_path {
        match &r.upstream {
            Some(u) if template(&u.value) => {}
            Some(u) if o.upstreams.contains_key(&u.value) => errors.push(at(
                "upstream",
                format!(
                    "{what} has service_from_path, but upstream `{}` is not a template: put `{SERVICE}` in its discovery source (dns_srv.name, etcd.prefix or registry.service)",
                    u.value
                ),
            )),
            Some(_) => {} // reported as an unknown upstream
            None => errors.push(at(
                "service_from_path",
                format!("{what} has service_from_path, which needs an `upstream` (a discovery template), not a split or a composition"),
            )),
        }
    } else {
        for u in r.upstream_names() {
            if template(&u.value) {
                errors.push(crate::ConfigError::at(
                    f,
                    &u.referenced,
                    format!(
                        "{what} names upstream `{}`, a per-service template (`{SERVICE}` in its discovery); only a route with `service_from_path: true` can use it",
                        u.value
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> DiscoveryConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn errors(org: &str) -> Vec<String> {
        let yaml = format!("listeners: [{{name: h, bind: '127.0.0.1:0'}}]\norganizations:\n  - {org}\n");
        match crate::load::load_str(std::path::Path::new("gw.yaml"), &yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn targets_or_discovery_and_templates_only_with_service_from_path() {
        let tpl = "upstreams: {t: {discovery: {registry: {url: 'http://c', service: '{service}'}}}}";
        let ok = format!("{{name: a, {tpl}, routes: [{{path: '/{{*rest}}', upstream: t, service_from_path: true}}]}}");
        assert_eq!(errors(&ok), Vec::<String>::new());
        let plain = format!("{{name: a, {tpl}, routes: [{{path: /, upstream: t}}]}}");
        let e = errors(&plain);
        assert!(e.len() == 1 && e[0].contains("a per-service template"), "{e:?}");
        let not_tpl = "{name: a, upstreams: {u: {targets: ['http://127.0.0.1:1']}}, routes: [{path: /, upstream: u, service_from_path: true}]}";
        let e = errors(not_tpl);
        assert!(e.len() == 1 && e[0].contains("is not a template"), "{e:?}");
        let both = "{name: a, upstreams: {u: {targets: ['http://127.0.0.1:1'], discovery: {registry: {url: 'http://c', service: s}}}}, routes: [{path: /, upstream: u}]}";
        let e = errors(both);
        assert!(e.len() == 1 && e[0].contains("both `targets` and `discovery`"), "{e:?}");
        let bad = "{name: a, upstreams: {u: {discovery: {etcd: {endpoints: [], prefix: /s/}}}}, routes: [{path: /, upstream: u}]}";
        let e = errors(bad);
        assert!(e.len() == 1 && e[0].contains("etcd: endpoints is empty"), "{e:?}");
    }

    #[test]
    fn one_source_with_sane_values() {
        let ok = parse("dns_srv: {name: _http._tcp.users.test, resolver: '127.0.0.1:5353', refresh: 2s}");
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        assert_eq!(ok.refresh(), Duration::from_secs(2));
        assert_eq!(parse_resolver("127.0.0.1"), Some("127.0.0.1:53".parse().unwrap()));
        let none = parse("{}");
        assert_eq!(
            none.problems(),
            ["give exactly one source (dns_srv, etcd or registry), not 0"]
        );
        let two = parse(
            "etcd: {endpoints: ['http://127.0.0.1:2379'], prefix: /s/}\nregistry: {url: 'http://c', service: users}",
        );
        assert_eq!(
            two.problems(),
            ["give exactly one source (dns_srv, etcd or registry), not 2"]
        );
        let bad = parse("etcd: {endpoints: ['grpc://x'], prefix: '', refresh: 10ms}");
        assert_eq!(
            bad.problems(),
            [
                "etcd: endpoints: `grpc://x` is not an http:// URL",
                "etcd: prefix is empty (it would take every key of the store)",
                "etcd: refresh must be at least 100ms, not 10ms",
            ]
        );
        let bad = parse("dns_srv: {name: x, resolver: nowhere, scheme: ftp}");
        assert_eq!(bad.problems().len(), 2, "{:?}", bad.problems());
        let bad = parse("registry: {url: 'http://c', service: 'a/b'}");
        assert_eq!(bad.problems(), ["registry: service `a/b` is not a service name"]);
    }
}
