//! Checks that serde cannot make: names unique, references resolve, values in range.
//! Route patterns are checked where they are compiled (`cratopus-core`), with the same errors.
//!
//! Every problem names the value at fault by its key path (`/upstreams/api/targets/1/weight`),
//! which [`crate::locate`] turns into its line and column; a value left at its default is
//! reported at its section.
//!
//! Numbers that size memory (threads, queues, buffers, schedule and ring entries) have an upper
//! bound as well as a lower one ([`bounds`]): a typo such as `workers: 99999999` must fail
//! `check`, not exhaust the machine when the gateway starts.

use crate::access::AuthConfig;
use crate::auth_limits::AuthFailuresConfig;
use crate::error::{ConfigError, ConfigErrors};
use crate::load::LoadedConfig;
use crate::model::{Balance, HealthCheckConfig, HealthCheckKind, OrganizationConfig, Protocol, UpstreamConfig};
use crate::policies::{QuotaConfig, RateKey, RateLimitConfig, StateScope};
use crate::tls::{OrgTlsConfig, UnknownSni, acme_directory_url};
use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;

/// The allowed ranges of the numbers that size an allocation.
pub mod bounds {
    /// Runtime worker threads (each has its own stack and queues).
    pub const WORKERS: (usize, usize) = (1, 1024);
    /// Header fields of a request: the parser reserves a slot for each.
    pub const MAX_HEADERS: (usize, usize) = (1, 1000);
    /// A request head; a connection buffers up to twice this.
    pub const MAX_HEADER_BYTES: (u64, u64) = (1 << 10, 1 << 20);
    /// Spans waiting for export and traffic-log lines waiting for the writer.
    pub const QUEUE: (usize, usize) = (1, 1 << 20);
    /// Rotated traffic-log files kept.
    pub const KEEP: (usize, usize) = (0, 1000);
    /// A target's weight: the round-robin schedule has an entry per unit of weight, the
    /// consistent-hash ring 160 points.
    pub const WEIGHT: (u32, u32) = (1, 1000);
    /// Idle keep-alive connections kept per target.
    pub const MAX_IDLE: (usize, usize) = (0, 100_000);
    /// Requests in flight through a bulkhead, and waiting in its queue.
    pub const BULKHEAD: (u32, u32) = (1, 1_000_000);
    /// A request body held in memory (for retries, for validation against a schema).
    pub const BODY_BUFFER: (u64, u64) = (0, 64 << 20);
    /// Health-check thresholds.
    pub const THRESHOLD: (u32, u32) = (1, 1000);
}

/// Every problem in `cfg`, all at once, each placed in its file.
pub fn validate(cfg: &LoadedConfig) -> Result<(), ConfigErrors> {
    let mut errors = problems(cfg, true);
    cfg.sources.place(&mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// `base` followed by `keys`, each escaped as a JSON Pointer segment.
fn ptr(base: &str, keys: &[&str]) -> String {
    let mut p = base.to_string();
    for k in keys {
        p.push('/');
        p.push_str(&crate::shape::escape(k));
    }
    p
}

/// An error unless `lo <= value <= hi`, naming the key and the range.
fn in_range<T: PartialOrd + Display>(
    errors: &mut Vec<ConfigError>,
    f: &Path,
    pointer: String,
    what: &str,
    value: T,
    (lo, hi): (T, T),
) {
    if value < lo || value > hi {
        errors.push(ConfigError::at_key(
            f,
            pointer,
            format!("{what} is {value}; it must be between {lo} and {hi}"),
        ));
    }
}

/// [`in_range`] for sizes, written with their units.
fn size_in_range(
    errors: &mut Vec<ConfigError>,
    f: &Path,
    pointer: String,
    what: &str,
    value: u64,
    (lo, hi): (u64, u64),
) {
    in_range(errors, f, pointer, what, Size(value), (Size(lo), Size(hi)));
}

/// A size in bytes, shown as the config writes it: `65536` → `64KiB`.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
struct Size(u64);

impl Display for Size {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n >= 1 << shift && n.is_multiple_of(1 << shift) {
                return write!(out, "{}{unit}", n >> shift);
            }
        }
        write!(out, "{n}")
    }
}

/// Problems given as sentences starting with their key (`attempts must be …`, `queue:
/// max_waiting must be …`), each at that key under `section`.
fn section_problems(errors: &mut Vec<ConfigError>, f: &Path, section: &str, prefix: &str, list: Vec<String>) {
    for p in list {
        let mut keys: Vec<&str> = Vec::new();
        let mut rest = p.as_str();
        while let Some((k, tail)) = rest.split_once(": ")
            && is_key(k)
        {
            keys.push(k);
            rest = tail;
        }
        if let Some(first) = rest.split([' ', ':']).next()
            && is_key(first)
        {
            keys.push(first);
        }
        errors.push(ConfigError::at_key(f, ptr(section, &keys), format!("{prefix}{p}")));
    }
}

fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A CIDR (`10.0.0.0/8`) or a single address, as `IpRules` and `trusted_proxies` read them.
fn check_cidr(s: &str) -> Result<(), String> {
    let (ip, prefix) = match s.trim().split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s.trim(), None),
    };
    let addr: std::net::IpAddr = ip.parse().map_err(|_| format!("`{s}` is not an IP address or CIDR"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix {
        Some(p) if p.parse::<u8>().ok().is_none_or(|p| p > max) => {
            Err(format!("`{s}`: the prefix length must be 0 to {max}"))
        }
        _ => Ok(()),
    }
}

fn check_cidrs(errors: &mut Vec<ConfigError>, f: &Path, pointer: &str, what: &str, list: &[String]) {
    for (i, c) in list.iter().enumerate() {
        if let Err(e) = check_cidr(c) {
            errors.push(ConfigError::at_key(
                f,
                ptr(pointer, &[&i.to_string()]),
                format!("{what}: {e}"),
            ));
        }
    }
}

/// Every problem in `cfg`, unplaced. `complete` is false when some organization file did not
/// load: the checks that need all of them (a default organization that exists, at least one
/// organization) are left out, so that they do not report what the missing file defines.
pub(crate) fn problems(cfg: &LoadedConfig, complete: bool) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let gw = &cfg.gateway;
    let file = cfg.file.as_path();
    let at = |pointer: &str, msg: String| ConfigError::at_key(file, pointer, msg);

    section_problems(&mut errors, file, "/cache", "cache: ", gw.cache.problems());
    if gw.listeners.is_empty() {
        errors.push(at(
            "/listeners",
            "`listeners` is empty: the gateway would not accept anything".into(),
        ));
    }
    for (i, l) in gw.listeners.iter().enumerate() {
        let here = ptr("/listeners", &[&i.to_string()]);
        if l.bind.parse::<std::net::SocketAddr>().is_err() && split_host_port(&l.bind).is_none() {
            errors.push(at(
                &ptr(&here, &["bind"]),
                format!("listener bind `{}` is not host:port", l.bind),
            ));
        }
        if let Some(p) = l.https_port {
            in_range(
                &mut errors,
                file,
                ptr(&here, &["https_port"]),
                "https_port",
                p,
                (1, u16::MAX),
            );
        }
    }
    // A cluster node's organizations come from its control plane, which may have none yet (or
    // none left): not an error there.
    if complete && cfg.orgs.is_empty() && gw.cluster.is_none() {
        errors.push(at(
            "/organizations",
            "no organization: every request would be answered 404; name organization files or write one under `organizations`".into(),
        ));
    }
    if !gw.health_path.starts_with('/') {
        errors.push(at(
            "/health_path",
            format!("health_path `{}` must start with `/`", gw.health_path),
        ));
    }
    if let Some(a) = &gw.admin {
        if a.token.len() < 16 {
            errors.push(at("/admin/token", "admin.token must be at least 16 characters".into()));
        }
        if split_host_port(&a.bind).is_none() {
            errors.push(at("/admin/bind", format!("admin bind `{}` is not host:port", a.bind)));
        }
    }
    if !(0.0..=1.0).contains(&gw.tracing.sample_ratio) {
        errors.push(at(
            "/tracing/sample_ratio",
            "tracing.sample_ratio must be between 0.0 and 1.0".into(),
        ));
    }
    if let Some(o) = &gw.tracing.otlp {
        let ok = o
            .endpoint
            .parse::<http::Uri>()
            .is_ok_and(|u| u.scheme_str() == Some("http") && u.host().is_some());
        if !ok {
            errors.push(at(
                "/tracing/otlp/endpoint",
                format!(
                    "tracing.otlp.endpoint `{}` is not an http:// URL (OTLP/HTTP, e.g. http://127.0.0.1:4318)",
                    o.endpoint
                ),
            ));
        }
        in_range(
            &mut errors,
            file,
            "/tracing/otlp/queue".into(),
            "tracing.otlp.queue",
            o.queue,
            bounds::QUEUE,
        );
    }
    let redis_sections = [("/state/redis", "state.redis", gw.state.redis.as_ref())]
        .into_iter()
        .chain([("/cluster/redis", "cluster.redis", gw.cluster.as_ref().map(|c| &c.redis))]);
    for (key, name, redis) in redis_sections {
        let Some(r) = redis else { continue };
        if r.urls.is_empty() {
            errors.push(at(&format!("{key}/urls"), format!("{name}.urls is empty")));
        }
        for (i, u) in r.urls.iter().enumerate() {
            if !u.starts_with("redis://") {
                errors.push(at(
                    &ptr(&format!("{key}/urls"), &[&i.to_string()]),
                    format!("{name}: `{u}` is not a redis:// URL (TLS to Redis is not supported yet)"),
                ));
            }
        }
        if r.timeout.0.is_zero() {
            errors.push(at(&format!("{key}/timeout"), format!("{name}.timeout must be above 0")));
        }
    }
    if let Some(c) = &gw.cluster {
        if c.node.as_deref().is_some_and(|n| n.trim().is_empty()) {
            errors.push(at(
                "/cluster/node",
                "cluster.node is empty; leave it out to use the host name".into(),
            ));
        }
        if c.heartbeat.0.is_zero() {
            errors.push(at("/cluster/heartbeat", "cluster.heartbeat must be above 0".into()));
        }
    }
    if let Some(w) = gw.workers {
        in_range(&mut errors, file, "/workers".into(), "`workers`", w, bounds::WORKERS);
    }
    let l = &gw.limits;
    in_range(
        &mut errors,
        file,
        "/limits/max_headers".into(),
        "limits.max_headers",
        l.max_headers,
        bounds::MAX_HEADERS,
    );
    size_in_range(
        &mut errors,
        file,
        "/limits/max_header_bytes".into(),
        "limits.max_header_bytes",
        l.max_header_bytes.0,
        bounds::MAX_HEADER_BYTES,
    );
    if let Some(t) = &gw.traffic_log {
        in_range(
            &mut errors,
            file,
            "/traffic_log/queue".into(),
            "traffic_log.queue",
            t.queue,
            bounds::QUEUE,
        );
        in_range(
            &mut errors,
            file,
            "/traffic_log/keep".into(),
            "traffic_log.keep",
            t.keep,
            bounds::KEEP,
        );
    }
    check_cidrs(
        &mut errors,
        file,
        "/trusted_proxies",
        "trusted_proxies",
        &gw.trusted_proxies,
    );

    check_gateway_tls(cfg, &mut errors);

    let mut org_names: HashMap<&str, &Path> = HashMap::new();
    let mut domains: HashMap<String, &str> = HashMap::new();
    for org in &cfg.orgs {
        let f = org.file.as_path();
        let base = org.pointer.as_str();
        let at = |keys: &[&str], msg: String| ConfigError::at_key(f, ptr(base, keys), msg);
        let o = &org.config;
        let name = o.name.value.as_str();
        if name.is_empty() {
            errors.push(ConfigError::at(f, &o.name.referenced, "organization name is empty"));
        } else if let Some(prev) = org_names.insert(name, f) {
            errors.push(ConfigError::at(
                f,
                &o.name.referenced,
                format!("organization `{name}` is also defined in {}", prev.display()),
            ));
        }
        for d in &o.domains {
            let domain = d.value.to_ascii_lowercase();
            if let Err(why) = check_domain(&domain) {
                errors.push(ConfigError::at(f, &d.referenced, why));
            } else if let Some(prev) = domains.insert(domain.clone(), name) {
                errors.push(ConfigError::at(
                    f,
                    &d.referenced,
                    format!("domain `{domain}` is already claimed by organization `{prev}`"),
                ));
            }
        }
        for (uname, u) in &o.upstreams {
            let here = ptr(base, &["upstreams", uname]);
            match (&u.discovery, u.targets.is_empty()) {
                (None, true) => errors.push(at(
                    &["upstreams", uname, "targets"],
                    format!("upstream `{uname}` has no targets"),
                )),
                (Some(_), false) => errors.push(at(
                    &["upstreams", uname, "targets"],
                    format!("upstream `{uname}` has both `targets` and `discovery`; give one of them"),
                )),
                (Some(d), true) => section_problems(
                    &mut errors,
                    f,
                    &ptr(&here, &["discovery"]),
                    &format!("upstream `{uname}`: discovery: "),
                    d.problems(),
                ),
                (None, false) => {}
            }
            for (i, t) in u.targets.iter().enumerate() {
                let target = ptr(&here, &["targets", &i.to_string()]);
                if let Err(why) = parse_target(&t.url) {
                    errors.push(ConfigError::at_key(
                        f,
                        ptr(&target, &["url"]),
                        format!("upstream `{uname}`: {why}"),
                    ));
                }
                in_range(
                    &mut errors,
                    f,
                    ptr(&target, &["weight"]),
                    &format!("upstream `{uname}`: the weight of target `{}`", t.url),
                    t.weight,
                    bounds::WEIGHT,
                );
            }
            in_range(
                &mut errors,
                f,
                ptr(&here, &["max_idle_per_target"]),
                &format!("upstream `{uname}`: max_idle_per_target"),
                u.max_idle_per_target,
                bounds::MAX_IDLE,
            );
            if u.balance == Balance::ConsistentHash && u.hash_on.is_none() {
                errors.push(at(
                    &["upstreams", uname, "balance"],
                    format!("upstream `{uname}` balances by consistent_hash but has no `hash_on` (header, cookie or client_ip)"),
                ));
            }
            if let Some(hc) = &u.health_check {
                check_health(f, &ptr(&here, &["health_check"]), uname, hc, &mut errors);
                if hc.kind == HealthCheckKind::Grpc && u.protocol == Protocol::Http1 {
                    errors.push(at(
                        &["upstreams", uname, "health_check", "type"],
                        format!("upstream `{uname}`: a grpc health check needs HTTP/2 to the targets; set `protocol: h2c` (or `h2` for https:// targets)"),
                    ));
                }
            }
            check_upstream_tls(f, &here, uname, u, &mut errors);
            let problems = [
                ("circuit_breaker", u.circuit_breaker.as_ref().map(|c| c.problems())),
                ("outlier_detection", u.outlier_detection.as_ref().map(|c| c.problems())),
                ("retry", u.retry.as_ref().map(|c| c.problems())),
                ("bulkhead", u.bulkhead.as_ref().map(|c| c.problems())),
            ];
            for (what, list) in problems {
                section_problems(
                    &mut errors,
                    f,
                    &ptr(&here, &[what]),
                    &format!("upstream `{uname}`: {what}: "),
                    list.unwrap_or_default(),
                );
            }
            let what = format!("upstream `{uname}`");
            check_buffers(
                f,
                &here,
                &what,
                u.retry.as_ref(),
                u.bulkhead.as_ref(),
                None,
                &mut errors,
            );
        }
        if let Some(tls) = &o.tls {
            check_org_tls(f, base, o, tls, &mut errors);
        }
        let client_auth = o.tls.as_ref().is_some_and(|t| t.client_auth.is_some());
        if !client_auth && o.auth.as_ref().is_some_and(|a| a.mtls.is_some()) {
            errors.push(at(
                &["auth", "mtls"],
                format!("organization `{name}`: auth.mtls needs tls.client_auth, which asks clients for certificates"),
            ));
        }
        if let Some(ip) = &o.ip {
            check_cidrs(&mut errors, f, &ptr(base, &["ip", "allow"]), "ip", &ip.allow);
            check_cidrs(&mut errors, f, &ptr(base, &["ip", "deny"]), "ip", &ip.deny);
        }
        let cluster = gw.state.redis.is_some();
        for (pname, p) in &o.policies {
            if p.rate_limit.is_none() && p.quota.is_none() {
                errors.push(at(
                    &["policies", pname],
                    format!("policy `{pname}` is empty: give it a `rate_limit` or a `quota`"),
                ));
            }
            check_policy(
                f,
                &ptr(base, &["policies", pname]),
                &format!("policy `{pname}`"),
                p.rate_limit.as_ref(),
                p.quota.as_ref(),
                cluster,
                &mut errors,
            );
        }
        check_policy(
            f,
            base,
            &format!("organization `{name}`"),
            o.rate_limit.as_ref(),
            o.quota.as_ref(),
            cluster,
            &mut errors,
        );
        if let Some(a) = &o.auth_failures {
            let any_auth = authenticates(o.auth.as_ref()) || o.routes.iter().any(|r| authenticates(r.auth.as_ref()));
            check_auth_failures(
                f,
                base,
                &format!("organization `{name}`"),
                a,
                any_auth,
                cluster,
                &mut errors,
            );
        }
        section_problems(
            &mut errors,
            f,
            &ptr(base, &["cors"]),
            &format!("organization `{name}`: cors: "),
            o.cors.as_ref().map(|c| c.problems()).unwrap_or_default(),
        );
        section_problems(
            &mut errors,
            f,
            &ptr(base, &["cache"]),
            &format!("organization `{name}`: cache: "),
            o.cache.as_ref().map(|c| c.problems()).unwrap_or_default(),
        );
        crate::modify::check_org(f, base, o, &mut errors);
        crate::compress::check_org(f, base, o, &mut errors);
        for (ri, r) in o.routes.iter().enumerate() {
            let here = ptr(base, &["routes", &ri.to_string()]);
            let what = format!("route `{}`", r.path.value);
            if r.auth.as_ref().is_some_and(|a| a.mtls.is_some()) && !client_auth {
                errors.push(ConfigError::at_key(
                    f,
                    ptr(&here, &["auth", "mtls"]),
                    format!("{what}: auth.mtls needs the organization's tls.client_auth, which asks clients for certificates"),
                ));
            }
            let problems = [
                ("retry", r.retry.as_ref().map(|c| c.problems())),
                ("bulkhead", r.bulkhead.as_ref().map(|c| c.problems())),
                ("cors", r.cors.as_ref().map(|c| c.problems())),
                ("validate", r.validate.as_ref().map(|c| c.problems())),
                ("forward", r.forward.as_ref().map(|c| c.problems())),
                ("websocket", r.websocket.as_ref().map(|c| c.problems())),
                ("graphql", r.graphql.as_ref().map(|c| c.problems())),
                ("cache", r.cache.as_ref().map(|c| c.problems())),
            ];
            // The key path and prefix are built only for a section with problems: most routes
            // have few sections and no problems (10,000 routes would build 160,000 strings).
            for (kind, list) in problems {
                if let Some(list) = list.filter(|l| !l.is_empty()) {
                    section_problems(&mut errors, f, &ptr(&here, &[kind]), &format!("{what}: {kind}: "), list);
                }
            }
            check_buffers(
                f,
                &here,
                &what,
                r.retry.as_ref(),
                r.bulkhead.as_ref(),
                r.validate.as_ref(),
                &mut errors,
            );
            if let Some(ip) = &r.ip {
                check_cidrs(
                    &mut errors,
                    f,
                    &ptr(&here, &["ip", "allow"]),
                    &format!("{what}: ip"),
                    &ip.allow,
                );
                check_cidrs(
                    &mut errors,
                    f,
                    &ptr(&here, &["ip", "deny"]),
                    &format!("{what}: ip"),
                    &ip.deny,
                );
            }
            check_policy(
                f,
                &here,
                &what,
                r.rate_limit.as_ref(),
                r.quota.as_ref(),
                cluster,
                &mut errors,
            );
            if let Some(a) = &r.auth_failures {
                let auth = authenticates(r.auth.as_ref().or(o.auth.as_ref()));
                check_auth_failures(f, &here, &what, a, auth, cluster, &mut errors);
            }
            if let Some(m) = &r.conditions {
                for (keys, p) in m.problems() {
                    let mut at = vec!["match"];
                    at.extend(keys.iter().map(String::as_str));
                    errors.push(ConfigError::at_key(f, ptr(&here, &at), format!("{what}: match: {p}")));
                }
                check_match_consumers(f, &here, &what, o, m, &mut errors);
            }
            for p in &r.policies {
                if !o.policies.contains_key(&p.value) {
                    let known: Vec<&str> = o.policies.keys().map(String::as_str).collect();
                    errors.push(ConfigError::at(
                        f,
                        &p.referenced,
                        format!(
                            "{what} names policy `{}`, which organization `{name}` does not define{}",
                            p.value,
                            hint(&p.value, &known)
                        ),
                    ));
                }
            }
            check_route_target(f, &here, &what, r, &mut errors);
            if let Some(c) = &r.compose {
                crate::compose::check_route(f, &here, &what, o, r, c, &mut errors);
            }
            crate::discovery::check_route(f, &here, &what, o, r, &mut errors);
            for u in r.upstream_names() {
                if !o.upstreams.contains_key(&u.value) {
                    let known: Vec<&str> = o.upstreams.keys().map(String::as_str).collect();
                    errors.push(ConfigError::at(
                        f,
                        &u.referenced,
                        format!(
                            "route `{}` names upstream `{}`, which organization `{name}` does not define{}",
                            r.path.value,
                            u.value,
                            hint(&u.value, &known)
                        ),
                    ));
                }
            }
            if let Some(sh) = &r.shadow {
                if !o.upstreams.contains_key(&sh.upstream.value) {
                    let known: Vec<&str> = o.upstreams.keys().map(String::as_str).collect();
                    errors.push(ConfigError::at(
                        f,
                        &sh.upstream.referenced,
                        format!(
                            "route `{}`: shadow names upstream `{}`, which organization `{name}` does not define{}",
                            r.path.value,
                            sh.upstream.value,
                            hint(&sh.upstream.value, &known)
                        ),
                    ));
                }
                for p in sh.problems() {
                    errors.push(ConfigError::at(
                        f,
                        &sh.upstream.referenced,
                        format!("route `{}`: shadow: {p}", r.path.value),
                    ));
                }
            }
            for m in &r.methods {
                if !is_http_method(&m.value) {
                    errors.push(ConfigError::at(
                        f,
                        &m.referenced,
                        format!("`{}` is not an HTTP method", m.value),
                    ));
                }
            }
            if let Some(p) = &r.strip_prefix
                && !p.value.starts_with('/')
            {
                errors.push(ConfigError::at(f, &p.referenced, "strip_prefix must start with `/`"));
            }
            if let Some(p) = &r.rewrite
                && !p.value.starts_with('/')
            {
                errors.push(ConfigError::at(f, &p.referenced, "rewrite must start with `/`"));
            }
        }
    }
    if complete
        && let Some(d) = &gw.default_organization
        && !org_names.contains_key(d.value.as_str())
    {
        let known: Vec<&str> = org_names.keys().copied().collect();
        errors.push(ConfigError::at(
            file,
            &d.referenced,
            format!(
                "default_organization `{}` is not defined{}",
                d.value,
                hint(&d.value, &known)
            ),
        ));
    }
    errors
}

/// A route sends its requests to one `upstream` or through a `split`, never both, never
/// neither; a split's own problems are placed at their keys.
fn check_route_target(f: &Path, here: &str, what: &str, r: &crate::model::RouteConfig, errors: &mut Vec<ConfigError>) {
    match (&r.upstream, &r.split) {
        // A composition names its upstreams per backend.
        (None, None) if r.compose.is_some() => {}
        (None, None) => errors.push(ConfigError::at(
            f,
            &r.path.referenced,
            format!("{what} needs an `upstream` (or a `split` over several)"),
        )),
        (Some(u), Some(_)) => errors.push(ConfigError::at(
            f,
            &u.referenced,
            format!("{what} has both `upstream` and `split`: a split names its upstreams in `split.backends`"),
        )),
        _ => {}
    }
    let Some(split) = &r.split else {
        return;
    };
    for (key, message) in split.problems() {
        errors.push(ConfigError::at_key(
            f,
            format!("{}{key}", ptr(here, &["split"])),
            format!("{what}: {message}"),
        ));
    }
}

/// A route's `match.consumers` must name consumers of its organization.
fn check_match_consumers(
    f: &Path,
    here: &str,
    what: &str,
    o: &OrganizationConfig,
    m: &crate::matching::MatchConfig,
    errors: &mut Vec<ConfigError>,
) {
    for (i, id) in m.consumers.iter().enumerate() {
        if !o.consumers.iter().any(|c| c.id == *id) {
            let known: Vec<&str> = o.consumers.iter().map(|c| c.id.as_str()).collect();
            errors.push(ConfigError::at_key(
                f,
                ptr(here, &["match", "consumers", &i.to_string()]),
                format!(
                    "{what}: match: consumers: `{id}` is not a consumer of organization `{}`{}",
                    o.name.value,
                    hint(id, &known)
                ),
            ));
        }
    }
}

/// The bodies and queues a route or an upstream holds in memory: a retry's buffered body, a
/// bulkhead's requests, a validated body.
fn check_buffers(
    f: &Path,
    here: &str,
    what: &str,
    retry: Option<&crate::resilience::RetryConfig>,
    bulkhead: Option<&crate::resilience::BulkheadConfig>,
    validate: Option<&crate::http_policies::ValidationConfig>,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(r) = retry {
        let p = ptr(here, &["retry", "buffer_body"]);
        size_in_range(
            errors,
            f,
            p,
            &format!("{what}: retry.buffer_body"),
            r.buffer_body.0,
            bounds::BODY_BUFFER,
        );
    }
    if let Some(b) = bulkhead {
        if b.max_inflight > 0 {
            let p = ptr(here, &["bulkhead", "max_inflight"]);
            in_range(
                errors,
                f,
                p,
                &format!("{what}: bulkhead.max_inflight"),
                b.max_inflight,
                bounds::BULKHEAD,
            );
        }
        if let Some(q) = b.queue.as_ref().filter(|q| q.max_waiting > 0) {
            let p = ptr(here, &["bulkhead", "queue", "max_waiting"]);
            let name = format!("{what}: bulkhead.queue.max_waiting");
            in_range(errors, f, p, &name, q.max_waiting, bounds::BULKHEAD);
        }
    }
    if let Some(size) = validate.and_then(|v| v.max_body_bytes).filter(|s| s.0 > 0) {
        let p = ptr(here, &["validate", "max_body_bytes"]);
        size_in_range(
            errors,
            f,
            p,
            &format!("{what}: validate.max_body_bytes"),
            size.0,
            bounds::BODY_BUFFER,
        );
    }
}

fn check_gateway_tls(cfg: &LoadedConfig, errors: &mut Vec<ConfigError>) {
    let file = cfg.file.as_path();
    let gw = &cfg.gateway;
    for (i, l) in gw.listeners.iter().enumerate() {
        if l.tls && l.redirect_http_to_https {
            errors.push(ConfigError::at_key(
                file,
                ptr("/listeners", &[&i.to_string(), "redirect_http_to_https"]),
                format!(
                    "listener `{}` has both `tls` and `redirect_http_to_https`; redirect on the plain HTTP listener",
                    l.bind
                ),
            ));
        }
    }
    if gw.tls.unknown_sni == Some(UnknownSni::DefaultCertificate) && gw.tls.default_certificate.is_none() {
        errors.push(ConfigError::at_key(
            file,
            "/tls/unknown_sni",
            "tls.unknown_sni is `default_certificate` but there is no tls.default_certificate",
        ));
    }
    let acme = &gw.tls.acme;
    if acme_directory_url(&acme.directory).is_none() {
        errors.push(ConfigError::at_key(
            file,
            "/tls/acme/directory",
            format!(
                "tls.acme.directory `{}` must be `letsencrypt`, `letsencrypt-staging` or an https:// URL",
                acme.directory
            ),
        ));
    }
    if acme.retry_base.0.is_zero() || acme.retry_max.0 < acme.retry_base.0 {
        errors.push(ConfigError::at_key(
            file,
            "/tls/acme/retry_base",
            "tls.acme.retry_base must be above 0 and at most retry_max",
        ));
    }
    if gw.limits.header_read_timeout.0.is_zero() || gw.limits.idle_timeout.0.is_zero() {
        errors.push(ConfigError::new(
            file,
            "limits.header_read_timeout and limits.idle_timeout must be above 0",
        ));
    }
}

/// Whether `name` (exact or `*.x`) is one of the organization's domains or under one of its
/// wildcards.
fn covered_by(name: &str, domains: &[String]) -> bool {
    domains.iter().any(|d| {
        d == name
            || d.strip_prefix('*')
                .is_some_and(|suffix| name.len() > suffix.len() && name.ends_with(suffix) && !name.starts_with('.'))
    })
}

fn check_org_tls(f: &Path, base: &str, o: &OrganizationConfig, tls: &OrgTlsConfig, errors: &mut Vec<ConfigError>) {
    let domains: Vec<String> = o.domains.iter().map(|d| d.value.to_ascii_lowercase()).collect();
    match (&tls.cert, &tls.key) {
        (Some(c), None) => errors.push(ConfigError::at(f, &c.referenced, "tls.cert needs a tls.key")),
        (None, Some(k)) => errors.push(ConfigError::at(f, &k.referenced, "tls.key needs a tls.cert")),
        _ => {}
    }
    for c in &tls.certificates {
        for d in &c.domains {
            let name = d.value.to_ascii_lowercase();
            if !covered_by(&name, &domains) {
                errors.push(ConfigError::at(
                    f,
                    &d.referenced,
                    format!(
                        "certificate domain `{}` is not a domain of organization `{}` (nor under one of its wildcards)",
                        d.value, o.name.value
                    ),
                ));
            }
        }
    }
    if let Some(a) = &tls.acme {
        if !a.email.value.contains('@') {
            errors.push(ConfigError::at(
                f,
                &a.email.referenced,
                format!("tls.acme.email `{}` is not an email address", a.email.value),
            ));
        }
        for d in &a.domains {
            let name = d.value.to_ascii_lowercase();
            if name.starts_with("*.") {
                errors.push(ConfigError::at(
                    f,
                    &d.referenced,
                    format!("`{}`: HTTP-01 cannot prove a wildcard name; list exact names", d.value),
                ));
            } else if !covered_by(&name, &domains) {
                errors.push(ConfigError::at(
                    f,
                    &d.referenced,
                    format!(
                        "tls.acme domain `{}` is not a domain of organization `{}`",
                        d.value, o.name.value
                    ),
                ));
            }
        }
        if a.domains.is_empty() && !domains.iter().any(|d| !d.starts_with("*.")) {
            errors.push(ConfigError::at(
                f,
                &a.email.referenced,
                "tls.acme: the organization has no exact domain to get a certificate for; list names in tls.acme.domains",
            ));
        }
    }
    if let Some(h) = &tls.hsts
        && h.preload
        && (!h.include_subdomains || h.max_age.0.as_secs() < 365 * 86400)
    {
        errors.push(ConfigError::at_key(
            f,
            ptr(base, &["tls", "hsts", "preload"]),
            "tls.hsts.preload needs include_subdomains and a max_age of at least 365d",
        ));
    }
    if let Some(c) = &tls.client_auth
        && http::HeaderName::from_bytes(c.header.as_bytes()).is_err()
    {
        errors.push(ConfigError::at_key(
            f,
            ptr(base, &["tls", "client_auth", "header"]),
            format!("tls.client_auth.header `{}` is not a header name", c.header),
        ));
    }
}

fn check_upstream_tls(f: &Path, here: &str, uname: &str, u: &UpstreamConfig, errors: &mut Vec<ConfigError>) {
    let schemes: Vec<bool> = u
        .targets
        .iter()
        .filter_map(|t| match parse_target(&t.url) {
            Ok(TargetUrl::Http { tls, .. }) => Some(tls),
            _ => None,
        })
        .collect();
    let https = schemes.iter().any(|t| *t) || u.discovery.as_ref().is_some_and(|d| d.https());
    if https && schemes.iter().any(|t| !*t) {
        errors.push(ConfigError::at_key(
            f,
            ptr(here, &["targets"]),
            format!("upstream `{uname}` mixes http:// and https:// targets; use one upstream for each"),
        ));
    }
    if u.tls.is_some() && !https {
        errors.push(ConfigError::at_key(
            f,
            ptr(here, &["tls"]),
            format!("upstream `{uname}` has `tls` but no https:// target"),
        ));
    }
    match u.protocol {
        Protocol::H2 if !https => errors.push(ConfigError::at_key(
            f,
            ptr(here, &["protocol"]),
            format!("upstream `{uname}`: protocol `h2` is HTTP/2 over TLS and needs https:// targets (h2c is the cleartext one)"),
        )),
        Protocol::H2c if https => errors.push(ConfigError::at_key(
            f,
            ptr(here, &["protocol"]),
            format!("upstream `{uname}`: protocol `h2c` is cleartext; use `h2` for https:// targets"),
        )),
        _ => {}
    }
    if let Some(t) = &u.tls
        && let Some(n) = &t.server_name
        && (n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':'))
    {
        errors.push(ConfigError::at_key(
            f,
            ptr(here, &["tls", "server_name"]),
            format!("upstream `{uname}`: tls.server_name `{n}` is not a host name or address"),
        ));
    }
}

fn check_health(f: &Path, here: &str, uname: &str, hc: &HealthCheckConfig, errors: &mut Vec<ConfigError>) {
    let at = |key: &str, msg: String| ConfigError::at_key(f, ptr(here, &[key]), msg);
    for (key, value) in [
        ("healthy_threshold", hc.healthy_threshold),
        ("unhealthy_threshold", hc.unhealthy_threshold),
    ] {
        let what = format!("upstream `{uname}`: health_check.{key}");
        in_range(errors, f, ptr(here, &[key]), &what, value, bounds::THRESHOLD);
    }
    for (key, value) in [("interval", hc.interval), ("timeout", hc.timeout)] {
        if value.0.is_zero() {
            errors.push(at(
                key,
                format!("upstream `{uname}`: health check {key} must be above 0"),
            ));
        }
    }
    if !hc.path.starts_with('/') {
        errors.push(at(
            "path",
            format!("upstream `{uname}`: health check path must start with `/`"),
        ));
    }
    if let Some(s) = hc.expect_status
        && !(100..=599).contains(&s)
    {
        errors.push(at(
            "expect_status",
            format!("upstream `{uname}`: expect_status {s} is not an HTTP status"),
        ));
    }
}

/// `host:port` split for names that are not socket addresses (`localhost:8080`).
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// A parsed target URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetUrl<'a> {
    Mirror,
    /// `host` without brackets; `authority` as written (`host:port`, `[::1]:80`, `backend`);
    /// `tls` for `https://`.
    Http {
        host: &'a str,
        port: u16,
        authority: &'a str,
        tls: bool,
    },
}

/// Reads a target URL: `mirror://`, or `http://host[:port]` (port 80 by default) or
/// `https://host[:port]` (443) with no path. The one parser of target URLs, for validation,
/// lints and the upstream pools.
pub fn parse_target(url: &str) -> Result<TargetUrl<'_>, String> {
    if url == "mirror://" || url == "mirror" {
        return Ok(TargetUrl::Mirror);
    }
    let (rest, tls, default_port) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false, 80),
        (_, Some(rest)) => (rest, true, 443),
        _ => {
            return Err(format!(
                "target `{url}` must start with http:// or https://, or be mirror://"
            ));
        }
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!("target `{url}` must be http(s)://host:port without a path"));
    }
    let (host, port) = if !authority.contains(':') || authority.ends_with(']') {
        (authority, default_port)
    } else {
        split_host_port(authority).ok_or_else(|| format!("target `{url}` has an invalid port"))?
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(TargetUrl::Http {
        host,
        port,
        authority,
        tls,
    })
}

fn check_domain(d: &str) -> Result<(), String> {
    let name = d.strip_prefix("*.").unwrap_or(d);
    if name.is_empty() || name.contains('*') || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(format!(
            "`{d}` is not a domain: use a name such as api.example.com or *.example.com"
        ));
    }
    Ok(())
}

/// Method tokens per RFC 9110: visible ASCII without separators.
pub fn is_http_method(m: &str) -> bool {
    !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Values of a rate limit and a quota that serde cannot check; `here` is the key path of the
/// section holding `rate_limit` and `quota` (an organization, a policy, a route).
fn check_policy(
    f: &Path,
    here: &str,
    what: &str,
    rate: Option<&RateLimitConfig>,
    quota: Option<&QuotaConfig>,
    cluster: bool,
    errors: &mut Vec<ConfigError>,
) {
    let needs_redis = |scope: Option<StateScope>| scope == Some(StateScope::Cluster) && !cluster;
    let at = |keys: &[&str], msg: String| ConfigError::at_key(f, ptr(here, keys), msg);
    if let Some(r) = rate {
        if r.limits.is_empty() && r.tiers.is_empty() {
            errors.push(at(
                &["rate_limit", "limits"],
                format!("{what}: rate_limit has no `limits`"),
            ));
        }
        // The default stack, then each tier's (a tier written `10/s` has no list: a pointer
        // into it is placed at the tier, the deepest node the file has).
        let mut stacks = vec![(ptr(here, &["rate_limit", "limits"]), &r.limits)];
        for (tier, t) in &r.tiers {
            let p = ptr(here, &["rate_limit", "tiers", tier]);
            if t.0.is_empty() {
                errors.push(ConfigError::at_key(
                    f,
                    p.clone(),
                    format!("{what}: rate_limit tier `{tier}` has no limits"),
                ));
            }
            stacks.push((p, &t.0));
        }
        for (base, limits) in stacks {
            for (i, l) in limits.iter().enumerate() {
                let i = i.to_string();
                let mut bad =
                    |field: &str, msg: String| errors.push(ConfigError::at_key(f, ptr(&base, &[&i, field]), msg));
                if l.rate == 0 {
                    bad("rate", format!("{what}: a limit's `rate` must be at least 1"));
                }
                if l.burst == Some(0) {
                    bad("burst", format!("{what}: a limit's `burst` must be at least 1"));
                }
                if l.per.0.is_zero() {
                    bad("per", format!("{what}: a limit's `per` must be above 0"));
                }
            }
        }
        if r.before_auth {
            if matches!(r.key, RateKey::Consumer | RateKey::Claim(_)) {
                errors.push(at(
                    &["rate_limit", "key"],
                    format!(
                        "{what}: a rate_limit with `before_auth` runs before the request is authenticated, so it cannot be keyed by the consumer or a claim: use `client_ip`, `route` or `header:<name>`"
                    ),
                ));
            }
            if !r.tiers.is_empty() {
                errors.push(at(
                    &["rate_limit", "tiers"],
                    format!(
                        "{what}: a rate_limit with `before_auth` cannot have `tiers`: the consumer's tier is known only after authentication"
                    ),
                ));
            }
        }
        if needs_redis(r.state) {
            errors.push(at(
                &["rate_limit", "state"],
                format!("{what}: rate_limit has `state: cluster` but the gateway has no `state.redis`"),
            ));
        }
    }
    if let Some(q) = quota {
        if q.limit == 0 {
            errors.push(at(
                &["quota", "limit"],
                format!("{what}: quota `limit` must be at least 1"),
            ));
        }
        if needs_redis(q.state) {
            errors.push(at(
                &["quota", "state"],
                format!("{what}: quota has `state: cluster` but the gateway has no `state.redis`"),
            ));
        }
    }
}

/// Whether an `auth` section asks for credentials (`auth: {}` does not).
fn authenticates(auth: Option<&AuthConfig>) -> bool {
    auth.is_some_and(|a| a.api_key.is_some() || a.jwt.is_some() || a.mtls.is_some())
}

/// `auth_failures` of an organization or a route; `here` is the key path of that section and
/// `authenticated` whether any request under it is authenticated (else nothing can fail).
fn check_auth_failures(
    f: &Path,
    here: &str,
    what: &str,
    a: &AuthFailuresConfig,
    authenticated: bool,
    cluster: bool,
    errors: &mut Vec<ConfigError>,
) {
    let at = |keys: &[&str], msg: String| ConfigError::at_key(f, ptr(here, keys), msg);
    if a.limit == 0 {
        errors.push(at(
            &["auth_failures", "limit"],
            format!("{what}: auth_failures `limit` must be at least 1"),
        ));
    }
    if a.window.0.is_zero() {
        errors.push(at(
            &["auth_failures", "window"],
            format!("{what}: auth_failures `window` must be above 0"),
        ));
    }
    if a.block_for.is_some_and(|b| b.0.is_zero()) {
        errors.push(at(
            &["auth_failures", "block_for"],
            format!("{what}: auth_failures `block_for` must be above 0 (or left out)"),
        ));
    }
    if a.state == Some(StateScope::Cluster) && !cluster {
        errors.push(at(
            &["auth_failures", "state"],
            format!("{what}: auth_failures has `state: cluster` but the gateway has no `state.redis`"),
        ));
    }
    if !authenticated {
        errors.push(at(
            &["auth_failures"],
            format!("{what}: auth_failures counts failed authentications, but no request here is authenticated: give it an `auth`"),
        ));
    }
}

/// `, did you mean `x`?` for the closest known name, if any is close.
pub fn hint(got: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(got, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| format!(", did you mean `{k}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    #[test]
    fn hints() {
        assert_eq!(hint("usres", &["users", "orders"]), ", did you mean `users`?");
        assert_eq!(hint("zzz", &["users"]), "");
    }

    #[test]
    fn targets() {
        assert!(parse_target("http://127.0.0.1:8080").is_ok());
        assert!(parse_target("http://backend").is_ok());
        assert!(parse_target("mirror://").is_ok());
        assert!(parse_target("ftp://x").is_err());
        assert!(parse_target("http://x:99999").is_err());
        assert!(parse_target("http://x:80/path").is_err());
        assert_eq!(
            parse_target("http://[::1]:82/"),
            Ok(TargetUrl::Http {
                host: "::1",
                port: 82,
                authority: "[::1]:82",
                tls: false
            })
        );
        assert_eq!(
            parse_target("http://backend"),
            Ok(TargetUrl::Http {
                host: "backend",
                port: 80,
                authority: "backend",
                tls: false
            })
        );
        assert_eq!(
            parse_target("https://api.example.com"),
            Ok(TargetUrl::Http {
                host: "api.example.com",
                port: 443,
                authority: "api.example.com",
                tls: true
            })
        );
    }

    #[test]
    fn all_errors_with_lines() {
        let yaml = "\
default_organization: nope
organizations:
  - name: a
    domains: [a.test]
    upstreams:
      users:
        targets: [\"http://127.0.0.1:1\"]
    routes:
      - path: /x
        upstream: usres
  - name: b
    domains: [a.test]
";
        let errs = load_str(Path::new("gw.yaml"), yaml).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{text:#?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("gw.yaml:10:") && t.contains("did you mean `users`")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("gw.yaml:12:") && t.contains("already claimed")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("gw.yaml:1:") && t.contains("default_organization")),
            "{text:#?}"
        );
    }

    #[test]
    fn split_routes_are_checked_with_lines() {
        let yaml = "\
organizations:
  - name: a
    upstreams:
      stable: {targets: [\"http://127.0.0.1:1\"]}
      canary: {targets: [\"http://127.0.0.1:2\"]}
    routes:
      - path: /ok
        split:
          backends: [{upstream: stable, weight: 99}, {upstream: canary, weight: 1, canary: true}]
          rollback: {max_error_rate: 0.05}
      - path: /both
        upstream: stable
        split: {backends: [{upstream: stable, weight: 1}, {upstream: canary, weight: 1}]}
      - path: /neither
      - path: /bad
        split:
          backends:
            - {upstream: stable, weight: 1}
            - {upstream: canry, weight: 1}
          override: {header: X-Canary}
";
        let errs = load_str(Path::new("gw.yaml"), yaml).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 4, "{text:#?}");
        let has = |line: &str, what: &str| text.iter().any(|t| t.starts_with(line) && t.contains(what));
        assert!(has("gw.yaml:12:", "both `upstream` and `split`"), "{text:#?}");
        assert!(has("gw.yaml:14:", "needs an `upstream`"), "{text:#?}");
        assert!(has("gw.yaml:19:", "did you mean `canary`"), "{text:#?}");
        assert!(has("gw.yaml:20:", "mark one arm with `canary: true`"), "{text:#?}");
    }

    #[test]
    fn unknown_key_is_located() {
        let yaml = "listeners:\n  - bind: 127.0.0.1:0\n    timout: 5s\n";
        let errs = load_str(Path::new("gw.yaml"), yaml).unwrap_err().0;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(3), "{}", errs[0]);
        assert!(errs[0].message.contains("timout"), "{}", errs[0]);
    }

    #[test]
    fn embedded_default_loads() {
        let cfg = load_str(Path::new("<embedded>"), crate::EMBEDDED_DEFAULT).unwrap();
        assert_eq!(cfg.orgs.len(), 1);
        assert_eq!(cfg.gateway.listeners[0].bind, "127.0.0.1:8080");
    }
}
