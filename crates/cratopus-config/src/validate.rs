//! Checks that serde cannot make: names unique, references resolve, values in range.
//! Route patterns are checked where they are compiled (`cratopus-core`), with the same errors.

use crate::error::{ConfigError, ConfigErrors};
use crate::load::LoadedConfig;
use crate::model::{Balance, HealthCheckConfig, OrganizationConfig, Protocol, UpstreamConfig};
use crate::policies::{QuotaConfig, RateLimitConfig, StateScope};
use crate::tls::{OrgTlsConfig, UnknownSni, acme_directory_url};
use std::collections::HashMap;
use std::path::Path;

/// Every problem in `cfg`, all at once.
pub fn validate(cfg: &LoadedConfig) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let gw = &cfg.gateway;
    let file = cfg.file.as_path();

    if gw.listeners.is_empty() {
        errors.push(ConfigError::new(
            file,
            "`listeners` is empty: the gateway would not accept anything",
        ));
    }
    for l in &gw.listeners {
        if l.bind.parse::<std::net::SocketAddr>().is_err() && split_host_port(&l.bind).is_none() {
            errors.push(ConfigError::new(
                file,
                format!("listener bind `{}` is not host:port", l.bind),
            ));
        }
    }
    if !gw.health_path.starts_with('/') {
        errors.push(ConfigError::new(
            file,
            format!("health_path `{}` must start with `/`", gw.health_path),
        ));
    }
    if let Some(a) = &gw.admin {
        if a.token.len() < 16 {
            errors.push(ConfigError::new(file, "admin.token must be at least 16 characters"));
        }
        if split_host_port(&a.bind).is_none() {
            errors.push(ConfigError::new(
                file,
                format!("admin bind `{}` is not host:port", a.bind),
            ));
        }
    }
    if !(0.0..=1.0).contains(&gw.tracing.sample_ratio) {
        errors.push(ConfigError::new(
            file,
            "tracing.sample_ratio must be between 0.0 and 1.0",
        ));
    }
    if let Some(o) = &gw.tracing.otlp {
        let ok = o
            .endpoint
            .parse::<http::Uri>()
            .is_ok_and(|u| u.scheme_str() == Some("http") && u.host().is_some());
        if !ok {
            errors.push(ConfigError::new(
                file,
                format!(
                    "tracing.otlp.endpoint `{}` is not an http:// URL (OTLP/HTTP, e.g. http://127.0.0.1:4318)",
                    o.endpoint
                ),
            ));
        }
        if o.queue == 0 {
            errors.push(ConfigError::new(file, "tracing.otlp.queue must be at least 1"));
        }
    }
    if let Some(r) = &gw.state.redis {
        if r.urls.is_empty() {
            errors.push(ConfigError::new(file, "state.redis.urls is empty"));
        }
        for u in &r.urls {
            if !u.starts_with("redis://") {
                errors.push(ConfigError::new(
                    file,
                    format!("state.redis: `{u}` is not a redis:// URL (TLS to Redis is not supported yet)"),
                ));
            }
        }
        if r.timeout.0.is_zero() {
            errors.push(ConfigError::new(file, "state.redis.timeout must be above 0"));
        }
    }
    if gw.workers == Some(0) {
        errors.push(ConfigError::new(file, "`workers` must be at least 1"));
    }
    if let Some(t) = &gw.traffic_log
        && t.queue == 0
    {
        errors.push(ConfigError::new(file, "traffic_log.queue must be at least 1"));
    }

    check_gateway_tls(cfg, &mut errors);

    let mut org_names: HashMap<&str, &Path> = HashMap::new();
    let mut domains: HashMap<String, &str> = HashMap::new();
    for org in &cfg.orgs {
        let f = org.file.as_path();
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
            if u.targets.is_empty() {
                errors.push(ConfigError::new(f, format!("upstream `{uname}` has no targets")));
            }
            for t in &u.targets {
                if let Err(why) = parse_target(&t.url) {
                    errors.push(ConfigError::new(f, format!("upstream `{uname}`: {why}")));
                }
                if t.weight == 0 {
                    errors.push(ConfigError::new(
                        f,
                        format!("upstream `{uname}`: target `{}` has weight 0; remove it instead", t.url),
                    ));
                }
            }
            if u.balance == Balance::ConsistentHash && u.hash_on.is_none() {
                errors.push(ConfigError::new(
                    f,
                    format!("upstream `{uname}` balances by consistent_hash but has no `hash_on` (header, cookie or client_ip)"),
                ));
            }
            if let Some(hc) = &u.health_check {
                check_health(f, uname, hc, &mut errors);
            }
            check_upstream_tls(f, uname, u, &mut errors);
            let problems = [
                ("circuit_breaker", u.circuit_breaker.as_ref().map(|c| c.problems())),
                ("outlier_detection", u.outlier_detection.as_ref().map(|c| c.problems())),
                ("retry", u.retry.as_ref().map(|c| c.problems())),
                ("bulkhead", u.bulkhead.as_ref().map(|c| c.problems())),
            ];
            for (what, list) in problems {
                for p in list.unwrap_or_default() {
                    errors.push(ConfigError::new(f, format!("upstream `{uname}`: {what}: {p}")));
                }
            }
        }
        if let Some(tls) = &o.tls {
            check_org_tls(f, o, tls, &mut errors);
        }
        let client_auth = o.tls.as_ref().is_some_and(|t| t.client_auth.is_some());
        if !client_auth && o.auth.as_ref().is_some_and(|a| a.mtls.is_some()) {
            errors.push(ConfigError::at(
                f,
                &o.name.referenced,
                format!("organization `{name}`: auth.mtls needs tls.client_auth, which asks clients for certificates"),
            ));
        }
        for r in o
            .routes
            .iter()
            .filter(|r| r.auth.as_ref().is_some_and(|a| a.mtls.is_some()))
        {
            if !client_auth {
                errors.push(ConfigError::at(
                    f,
                    &r.path.referenced,
                    format!(
                        "route `{}`: auth.mtls needs the organization's tls.client_auth, which asks clients for certificates",
                        r.path.value
                    ),
                ));
            }
        }
        let cluster = gw.state.redis.is_some();
        for (pname, p) in &o.policies {
            if p.rate_limit.is_none() && p.quota.is_none() {
                errors.push(ConfigError::new(
                    f,
                    format!("policy `{pname}` is empty: give it a `rate_limit` or a `quota`"),
                ));
            }
            check_policy(
                f,
                None,
                &format!("policy `{pname}`"),
                p.rate_limit.as_ref(),
                p.quota.as_ref(),
                cluster,
                &mut errors,
            );
        }
        check_policy(
            f,
            Some(&o.name.referenced),
            &format!("organization `{name}`"),
            o.rate_limit.as_ref(),
            o.quota.as_ref(),
            cluster,
            &mut errors,
        );
        for p in o.cors.as_ref().map(|c| c.problems()).unwrap_or_default() {
            errors.push(ConfigError::at(
                f,
                &o.name.referenced,
                format!("organization `{name}`: cors: {p}"),
            ));
        }
        for r in &o.routes {
            let what = format!("route `{}`", r.path.value);
            let problems = [
                ("retry", r.retry.as_ref().map(|c| c.problems())),
                ("bulkhead", r.bulkhead.as_ref().map(|c| c.problems())),
                ("cors", r.cors.as_ref().map(|c| c.problems())),
                ("validate", r.validate.as_ref().map(|c| c.problems())),
                ("forward", r.forward.as_ref().map(|c| c.problems())),
            ];
            for (kind, list) in problems {
                for p in list.unwrap_or_default() {
                    errors.push(ConfigError::at(f, &r.path.referenced, format!("{what}: {kind}: {p}")));
                }
            }
            check_policy(
                f,
                Some(&r.path.referenced),
                &what,
                r.rate_limit.as_ref(),
                r.quota.as_ref(),
                cluster,
                &mut errors,
            );
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
            if !o.upstreams.contains_key(&r.upstream.value) {
                let known: Vec<&str> = o.upstreams.keys().map(String::as_str).collect();
                errors.push(ConfigError::at(
                    f,
                    &r.upstream.referenced,
                    format!(
                        "route `{}` names upstream `{}`, which organization `{name}` does not define{}",
                        r.path.value,
                        r.upstream.value,
                        hint(&r.upstream.value, &known)
                    ),
                ));
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
    if let Some(d) = &gw.default_organization
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
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

fn check_gateway_tls(cfg: &LoadedConfig, errors: &mut Vec<ConfigError>) {
    let file = cfg.file.as_path();
    let gw = &cfg.gateway;
    for l in &gw.listeners {
        if l.tls && l.redirect_http_to_https {
            errors.push(ConfigError::new(
                file,
                format!(
                    "listener `{}` has both `tls` and `redirect_http_to_https`; redirect on the plain HTTP listener",
                    l.bind
                ),
            ));
        }
    }
    if gw.tls.unknown_sni == Some(UnknownSni::DefaultCertificate) && gw.tls.default_certificate.is_none() {
        errors.push(ConfigError::new(
            file,
            "tls.unknown_sni is `default_certificate` but there is no tls.default_certificate",
        ));
    }
    let acme = &gw.tls.acme;
    if acme_directory_url(&acme.directory).is_none() {
        errors.push(ConfigError::new(
            file,
            format!(
                "tls.acme.directory `{}` must be `letsencrypt`, `letsencrypt-staging` or an https:// URL",
                acme.directory
            ),
        ));
    }
    if acme.retry_base.0.is_zero() || acme.retry_max.0 < acme.retry_base.0 {
        errors.push(ConfigError::new(
            file,
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

fn check_org_tls(f: &Path, o: &OrganizationConfig, tls: &OrgTlsConfig, errors: &mut Vec<ConfigError>) {
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
        errors.push(ConfigError::at(
            f,
            &o.name.referenced,
            "tls.hsts.preload needs include_subdomains and a max_age of at least 365d",
        ));
    }
    if let Some(c) = &tls.client_auth
        && http::HeaderName::from_bytes(c.header.as_bytes()).is_err()
    {
        errors.push(ConfigError::at(
            f,
            &c.ca.referenced,
            format!("tls.client_auth.header `{}` is not a header name", c.header),
        ));
    }
}

fn check_upstream_tls(f: &Path, uname: &str, u: &UpstreamConfig, errors: &mut Vec<ConfigError>) {
    let schemes: Vec<bool> = u
        .targets
        .iter()
        .filter_map(|t| match parse_target(&t.url) {
            Ok(TargetUrl::Http { tls, .. }) => Some(tls),
            _ => None,
        })
        .collect();
    let https = schemes.iter().any(|t| *t);
    if https && schemes.iter().any(|t| !*t) {
        errors.push(ConfigError::new(
            f,
            format!("upstream `{uname}` mixes http:// and https:// targets; use one upstream for each"),
        ));
    }
    if u.tls.is_some() && !https {
        errors.push(ConfigError::new(
            f,
            format!("upstream `{uname}` has `tls` but no https:// target"),
        ));
    }
    match u.protocol {
        Protocol::H2 if !https => errors.push(ConfigError::new(
            f,
            format!("upstream `{uname}`: protocol `h2` is HTTP/2 over TLS and needs https:// targets (h2c is the cleartext one)"),
        )),
        Protocol::H2c if https => errors.push(ConfigError::new(
            f,
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
        errors.push(ConfigError::new(
            f,
            format!("upstream `{uname}`: tls.server_name `{n}` is not a host name or address"),
        ));
    }
}

fn check_health(f: &Path, uname: &str, hc: &HealthCheckConfig, errors: &mut Vec<ConfigError>) {
    if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
        errors.push(ConfigError::new(
            f,
            format!("upstream `{uname}`: health check thresholds must be at least 1"),
        ));
    }
    if hc.interval.0.is_zero() || hc.timeout.0.is_zero() {
        errors.push(ConfigError::new(
            f,
            format!("upstream `{uname}`: health check interval and timeout must be above 0"),
        ));
    }
    if !hc.path.starts_with('/') {
        errors.push(ConfigError::new(
            f,
            format!("upstream `{uname}`: health check path must start with `/`"),
        ));
    }
    if let Some(s) = hc.expect_status
        && !(100..=599).contains(&s)
    {
        errors.push(ConfigError::new(
            f,
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

/// Values of a rate limit and a quota that serde cannot check.
fn check_policy(
    f: &Path,
    at: Option<&serde_saphyr::Location>,
    what: &str,
    rate: Option<&RateLimitConfig>,
    quota: Option<&QuotaConfig>,
    cluster: bool,
    errors: &mut Vec<ConfigError>,
) {
    let needs_redis = |scope: Option<StateScope>| scope == Some(StateScope::Cluster) && !cluster;
    let mut errors_here = Vec::new();
    let errors_out = errors;
    let errors = &mut errors_here;
    if let Some(r) = rate {
        if r.limits.is_empty() {
            errors.push(ConfigError::new(f, format!("{what}: rate_limit has no `limits`")));
        }
        for l in &r.limits {
            if l.rate == 0 || l.burst == Some(0) {
                errors.push(ConfigError::new(
                    f,
                    format!("{what}: a limit's `rate` and `burst` must be at least 1"),
                ));
            }
            if l.per.0.is_zero() {
                errors.push(ConfigError::new(f, format!("{what}: a limit's `per` must be above 0")));
            }
        }
        if needs_redis(r.state) {
            errors.push(ConfigError::new(
                f,
                format!("{what}: rate_limit has `state: cluster` but the gateway has no `state.redis`"),
            ));
        }
    }
    if let Some(q) = quota {
        if q.limit == 0 {
            errors.push(ConfigError::new(f, format!("{what}: quota `limit` must be at least 1")));
        }
        if needs_redis(q.state) {
            errors.push(ConfigError::new(
                f,
                format!("{what}: quota has `state: cluster` but the gateway has no `state.redis`"),
            ));
        }
    }
    errors_out.extend(errors_here.into_iter().map(|e| match at {
        Some(loc) => ConfigError::at(f, loc, e.message),
        None => e,
    }));
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
