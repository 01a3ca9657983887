//! Warnings: things that load and run but are probably not what the author meant.
//! `cratopus check` prints them; `--strict` makes them fail the check.

use crate::error::ConfigError;
use crate::load::LoadedConfig;
use crate::shape::escape;
use crate::validate::{TargetUrl, parse_target, split_host_port};
use std::collections::HashSet;
use std::net::ToSocketAddrs;

/// Every warning for `cfg`, placed in its file. Resolving target names does DNS lookups
/// (blocking).
pub fn lint(cfg: &LoadedConfig) -> Vec<ConfigError> {
    let mut warnings = Vec::new();
    if let Some(a) = &cfg.gateway.admin
        && let Some((host, _)) = split_host_port(&a.bind)
        && !is_loopback(host)
    {
        warnings.push(ConfigError::at_key(
            &cfg.file,
            "/admin/bind",
            format!(
                "admin.bind `{}` is reachable from beyond this machine: the admin API can reload the config and disable routes; bind it to 127.0.0.1 (or [::1]) and reach it through a tunnel",
                a.bind
            ),
        ));
    }
    let has_tls_listener = cfg.gateway.listeners.iter().any(|l| l.tls);
    let has_plain_listener = cfg.gateway.listeners.iter().any(|l| !l.tls);
    let default = cfg.gateway.default_organization.as_ref().map(|d| d.value.as_str());
    let single_open = cfg.orgs.len() == 1 && cfg.orgs[0].config.domains.is_empty();
    for org in &cfg.orgs {
        let f = org.file.as_path();
        let base = org.pointer.as_str();
        let o = &org.config;
        let name = o.name.value.as_str();
        if o.domains.is_empty() && default != Some(name) && !single_open {
            warnings.push(ConfigError::at(
                f,
                &o.name.referenced,
                format!(
                    "organization `{name}` has no domains and is not the default_organization: no request can reach it"
                ),
            ));
        }
        if let Some(t) = &o.tls {
            if !has_tls_listener {
                warnings.push(ConfigError::at(
                    f,
                    &o.name.referenced,
                    format!(
                        "organization `{name}` has `tls` settings but no listener has `tls: true`: they are not used"
                    ),
                ));
            }
            if let Some(a) = &t.acme
                && !has_plain_listener
            {
                warnings.push(ConfigError::at(
                    f,
                    &a.email.referenced,
                    "tls.acme: no plain HTTP listener answers HTTP-01 challenges (port 80 must reach one)",
                ));
            }
        }
        let used: HashSet<&str> = o
            .routes
            .iter()
            .flat_map(|r| {
                r.upstream_names()
                    .map(|u| u.value.as_str())
                    .chain(r.shadow.as_ref().map(|s| s.upstream.value.as_str()))
                    // A composition's backends name their own upstreams.
                    .chain(
                        r.compose
                            .iter()
                            .flat_map(|c| c.backend.iter().filter_map(|b| b.upstream.as_deref())),
                    )
            })
            .collect();
        for (i, r) in o.routes.iter().enumerate() {
            let http1 = |u: &crate::Spanned<String>| {
                o.upstreams
                    .get(&u.value)
                    .is_some_and(|up| up.protocol == crate::Protocol::Http1)
            };
            if r.grpc_web && r.upstream_names().any(http1) {
                warnings.push(ConfigError::at_key(
                    f,
                    format!("{base}/routes/{i}/grpc_web"),
                    "grpc_web: the route's upstream speaks HTTP/1.1, and gRPC servers need HTTP/2: set its `protocol: h2c` (or `h2`)".to_string(),
                ));
            }
        }
        for (uname, u) in &o.upstreams {
            if !used.contains(uname.as_str()) {
                warnings.push(ConfigError::at_key(
                    f,
                    format!("{base}/upstreams/{}", escape(uname)),
                    format!("upstream `{uname}` of organization `{name}` is used by no route"),
                ));
            }
            if u.tls.as_ref().is_some_and(|t| !t.verify) {
                warnings.push(ConfigError::at_key(
                    f,
                    format!("{base}/upstreams/{}/tls/verify", escape(uname)),
                    format!("upstream `{uname}`: tls.verify is false: its targets' certificates are not checked"),
                ));
            }
            for (i, t) in u.targets.iter().enumerate() {
                if let Ok(TargetUrl::Http { host, .. }) = parse_target(&t.url)
                    && host.parse::<std::net::IpAddr>().is_err()
                    && (host, 80).to_socket_addrs().is_err()
                {
                    warnings.push(ConfigError::at_key(
                        f,
                        format!("{base}/upstreams/{}/targets/{i}", escape(uname)),
                        format!("upstream `{uname}`: target host `{host}` does not resolve (yet); its route answers 503 until it does"),
                    ));
                }
            }
        }
        warnings.extend(crate::auth_limits::unknown_tiers(f, base, o));
        for r in &o.routes {
            if let Some(p) = &r.strip_prefix {
                let prefix = p.value.trim_end_matches('/');
                let literal = r.path.value.split('{').next().unwrap_or("");
                if !prefix.is_empty()
                    && !literal.starts_with(prefix)
                    && !prefix.starts_with(literal.trim_end_matches('/'))
                {
                    warnings.push(ConfigError::at(
                        f,
                        &p.referenced,
                        format!(
                            "strip_prefix `{}` is not a prefix of the route's path `{}`: it never applies",
                            p.value, r.path.value
                        ),
                    ));
                }
            }
        }
    }
    for org in &cfg.orgs {
        match_overlaps(org.file.as_path(), &org.config, &mut warnings);
    }
    cfg.sources.place(&mut warnings);
    warnings
}

/// Routes of one path and method whose `match` blocks can both hold for one request while
/// neither is more specific ([`crate::matching::Specificity`] and the method list tie): file
/// order decides between them, which is rarely what the author thought about. (Identical
/// blocks are a conflict, which compile reports.)
fn match_overlaps(f: &std::path::Path, org: &crate::model::OrganizationConfig, warnings: &mut Vec<ConfigError>) {
    let routes = &org.routes;
    // A consumer list and a tier list exclude each other when no listed consumer has a listed
    // tier.
    let tier_of = |id: &str| {
        org.consumers
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.tier.as_deref())
    };
    let consumer_meets_tier = |a: &crate::matching::MatchConfig, b: &crate::matching::MatchConfig| {
        a.consumers.is_empty()
            || b.tiers.is_empty()
            || a.consumers
                .iter()
                .any(|c| tier_of(c).is_some_and(|t| b.tiers.iter().any(|x| x == t)))
    };
    let methods = |r: &crate::model::RouteConfig| -> Vec<String> {
        r.methods.iter().map(|m| m.value.to_ascii_uppercase()).collect()
    };
    for (j, b) in routes.iter().enumerate() {
        let Some(mb) = b.conditions.as_ref().filter(|m| !m.is_empty()) else {
            continue;
        };
        for a in &routes[..j] {
            let Some(ma) = a.conditions.as_ref().filter(|m| !m.is_empty()) else {
                continue;
            };
            let (xa, xb) = (methods(a), methods(b));
            let shared: Vec<&String> = xa.iter().filter(|m| xb.contains(m)).collect();
            let tie = xa.is_empty() == xb.is_empty() && (xa.is_empty() || !shared.is_empty());
            if a.path.value != b.path.value
                || !tie
                || ma.specificity() != mb.specificity()
                || ma.same_as(mb)
                || !ma.can_both_hold(mb)
                || !consumer_meets_tier(ma, mb)
                || !consumer_meets_tier(mb, ma)
            {
                continue;
            }
            let name = |r: &crate::model::RouteConfig| r.name.clone().unwrap_or_else(|| r.path.value.clone());
            let method = if shared.is_empty() {
                "every method".to_string()
            } else {
                shared.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
            };
            warnings.push(ConfigError::at(
                f,
                &b.path.referenced,
                format!(
                    "routes `{}` ({}:{}) and `{}` ({}:{}) both answer path `{}` for {method}, a request can meet both `match` blocks, and neither is more specific: the first in the file takes it; add a condition to the one that should win, or make them exclusive",
                    name(a),
                    f.display(),
                    a.path.referenced.line(),
                    name(b),
                    f.display(),
                    b.path.referenced.line(),
                    b.path.value,
                ),
            ));
        }
    }
}

/// Whether a bind host is this machine only: `localhost` or a loopback address. `0.0.0.0`,
/// `::`, private and public addresses and other names are not.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;
    use std::path::Path;

    #[test]
    fn warns_about_unreachable_orgs_unused_upstreams_and_dead_prefixes() {
        let yaml = "\
default_organization: a
organizations:
  - name: a
    upstreams:
      u: {targets: [\"http://127.0.0.1:1\"]}
      spare: {targets: [\"http://no-such-host.invalid:80\"]}
    routes:
      - path: /api/{*rest}
        upstream: u
        strip_prefix: /v1
  - name: b
    upstreams:
      u: {targets: [\"mirror://\"]}
    routes:
      - {path: /x, upstream: u}
";
        let cfg = load_str(Path::new("gw.yaml"), yaml).unwrap();
        let w: Vec<String> = lint(&cfg).iter().map(ToString::to_string).collect();
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(
            w.iter()
                .any(|m| m.contains("`spare`") && m.contains("used by no route")),
            "{w:#?}"
        );
        assert!(
            w.iter()
                .any(|m| m.contains("no-such-host.invalid") && m.contains("does not resolve")),
            "{w:#?}"
        );
        assert!(
            w.iter()
                .any(|m| m.starts_with("gw.yaml:10:") && m.contains("never applies")),
            "{w:#?}"
        );
        assert!(
            w.iter()
                .any(|m| m.starts_with("gw.yaml:11:") && m.contains("`b` has no domains")),
            "{w:#?}"
        );
    }

    #[test]
    fn warns_about_match_blocks_it_cannot_order() {
        let yaml = "\
organizations:
  - name: a
    upstreams:
      u: {targets: [\"mirror://\"]}
    routes:
      - {name: h, path: /x, upstream: u, match: {headers: {A: \"1\"}}}
      - {name: q, path: /x, upstream: u, match: {query: {b: \"1\"}}}
      - {name: hq, path: /x, upstream: u, match: {headers: {A: \"1\"}, query: {b: \"1\"}}}
      - {name: h2, path: /x, upstream: u, match: {headers: {A: \"2\"}}}
      - {name: get, path: /x, methods: [GET], upstream: u, match: {query: {c: \"1\"}}}
      - {name: post, path: /x, methods: [POST], upstream: u, match: {query: {d: \"1\"}}}
      - {name: y, path: /y, upstream: u, match: {query: {b: \"1\"}}}
";
        let cfg = load_str(Path::new("gw.yaml"), yaml).unwrap();
        let w: Vec<String> = lint(&cfg).iter().map(ToString::to_string).collect();
        // `h`/`q` tie and overlap; `h2` excludes `h` but ties with `q`; `hq` is more specific;
        // `get` names a method; `get` and `post` share none; `/y` is another path.
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(
            w[0].starts_with("gw.yaml:7:") && w[0].contains("`h` (gw.yaml:6) and `q` (gw.yaml:7)"),
            "{w:#?}"
        );
        assert!(
            w[1].starts_with("gw.yaml:9:") && w[1].contains("`q` (gw.yaml:7) and `h2` (gw.yaml:9)"),
            "{w:#?}"
        );
    }
}
