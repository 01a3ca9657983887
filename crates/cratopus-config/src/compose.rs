//! A route's composition (KrakenD's endpoint with several backends): the types live in
//! `cratopus-compose`, whose parsers check them; this module places their problems at their
//! keys and checks what only the whole config knows — the route's path parameters, the
//! organization's upstreams, methods and durations.

use crate::error::ConfigError;
use crate::model::{OrganizationConfig, RouteConfig};
use crate::units::parse_duration;
use crate::validate::{hint, is_http_method};
pub use cratopus_compose::config::ComposeEndpointConfig;
use std::path::Path;

/// The names of a route pattern's parameters: `id` of `{id}`, `rest` of `{*rest}`.
pub fn path_params(pattern: &str) -> Vec<String> {
    pattern
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*').to_string())
        .collect()
}

/// The upstream backend `i` of a composition is called on: its own, or the route's.
pub fn backend_upstream<'a>(r: &'a RouteConfig, c: &'a ComposeEndpointConfig, i: usize) -> Option<&'a str> {
    c.backend[i]
        .upstream
        .as_deref()
        .or(r.upstream.as_ref().map(|u| u.value.as_str()))
}

/// The route's forwarding lists: its `forward`, or its composition's `input_headers` and
/// `input_query_strings` (KrakenD's names; the config check refuses both at once). A
/// composition that lists only query strings keeps every header (`*`), and one that lists
/// only headers passes no query, as KrakenD does.
pub fn forward_config(r: &RouteConfig) -> Option<std::borrow::Cow<'_, crate::http_policies::ForwardConfig>> {
    if let Some(f) = &r.forward {
        return Some(std::borrow::Cow::Borrowed(f));
    }
    let c = r.compose.as_ref()?;
    if c.input_headers.is_none() && c.input_query_strings.is_none() {
        return None;
    }
    Some(std::borrow::Cow::Owned(crate::http_policies::ForwardConfig {
        input_headers: c.input_headers.clone().unwrap_or_else(|| vec!["*".to_string()]),
        input_query_strings: c.input_query_strings.clone().unwrap_or_default(),
    }))
}

/// Every problem of route `r`'s `compose`, each at its key under `here/compose`.
pub(crate) fn check_route(
    f: &Path,
    here: &str,
    what: &str,
    o: &OrganizationConfig,
    r: &RouteConfig,
    c: &ComposeEndpointConfig,
    errors: &mut Vec<ConfigError>,
) {
    let at = |keys: &[&str]| {
        let mut p = format!("{here}/compose");
        for k in keys {
            p.push('/');
            p.push_str(&k.replace('~', "~0").replace('/', "~1"));
        }
        p
    };
    if r.split.is_some() {
        errors.push(ConfigError::at_key(
            f,
            at(&[]),
            format!("{what} has both `compose` and `split`: a composition names its upstreams in `compose.backend`"),
        ));
    }
    for p in c.problems(&path_params(&r.path.value)) {
        let keys: Vec<&str> = p.keys.iter().map(String::as_str).collect();
        errors.push(ConfigError::at_key(f, at(&keys), format!("{what}: compose: {p}")));
    }
    if r.forward.is_some() && (c.input_headers.is_some() || c.input_query_strings.is_some()) {
        errors.push(ConfigError::at_key(
            f,
            at(&[if c.input_headers.is_some() {
                "input_headers"
            } else {
                "input_query_strings"
            }]),
            format!("{what} has both `forward` and compose's input_headers/input_query_strings: keep one list"),
        ));
    }
    for (i, b) in c.backend.iter().enumerate() {
        let i_s = i.to_string();
        if let Some(m) = &b.martian {
            for (path, name) in m.header_names() {
                if let Some(why) = crate::modify::refused_header(&name) {
                    let mut keys = vec!["backend", i_s.as_str(), "martian"];
                    keys.extend(path.iter().map(String::as_str));
                    errors.push(ConfigError::at_key(
                        f,
                        at(&keys),
                        format!("{what}: compose: backend {i}: martian: {why}"),
                    ));
                }
            }
        }
        if let Some(every) = b.rate_limit.as_ref().and_then(|l| l.every.as_deref()) {
            match parse_duration(every) {
                Err(e) => errors.push(ConfigError::at_key(
                    f,
                    at(&["backend", &i_s, "rate_limit", "every"]),
                    format!("{what}: compose: backend {i}: rate_limit: {e}"),
                )),
                Ok(d) if d.is_zero() => errors.push(ConfigError::at_key(
                    f,
                    at(&["backend", &i_s, "rate_limit", "every"]),
                    format!("{what}: compose: backend {i}: rate_limit: every must be above 0"),
                )),
                Ok(_) => {}
            }
        }
        match backend_upstream(r, c, i) {
            None => errors.push(ConfigError::at_key(
                f,
                at(&["backend", &i_s]),
                format!("{what}: compose: backend {i} needs an `upstream` (or the route one)"),
            )),
            Some(u) if !o.upstreams.contains_key(u) => {
                let known: Vec<&str> = o.upstreams.keys().map(String::as_str).collect();
                let key = if b.upstream.is_some() {
                    "upstream"
                } else {
                    "url_pattern"
                };
                errors.push(ConfigError::at_key(
                    f,
                    at(&["backend", &i_s, key]),
                    format!(
                        "route `{}`: compose: backend {i} names upstream `{u}`, which organization `{}` does not define{}",
                        r.path.value,
                        o.name.value,
                        hint(u, &known)
                    ),
                ));
            }
            Some(_) => {}
        }
        if let Some(m) = &b.method
            && !is_http_method(m)
        {
            errors.push(ConfigError::at_key(
                f,
                at(&["backend", &i_s, "method"]),
                format!("{what}: compose: backend {i}: `{m}` is not an HTTP method"),
            ));
        }
        if let Some(t) = &b.timeout {
            match parse_duration(t) {
                Err(e) => errors.push(ConfigError::at_key(
                    f,
                    at(&["backend", &i_s, "timeout"]),
                    format!("{what}: compose: backend {i}: {e}"),
                )),
                Ok(d) if d.is_zero() => errors.push(ConfigError::at_key(
                    f,
                    at(&["backend", &i_s, "timeout"]),
                    format!("{what}: compose: backend {i}: timeout must be above 0"),
                )),
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::load::load_str;
    use std::path::Path;

    /// compose's `input_*` lists are the route's `forward` under KrakenD's names: a list of
    /// query strings alone keeps every header, a list of headers alone passes no query.
    #[test]
    fn input_lists_become_the_routes_forwarding() {
        let yaml = "\
organizations:
  - name: a
    upstreams:
      u: {targets: [\"http://127.0.0.1:1\"]}
    routes:
      - {path: /none, upstream: u, compose: {backend: [{url_pattern: /x}]}}
      - {path: /query, upstream: u, compose: {input_query_strings: [q], backend: [{url_pattern: /x}]}}
      - {path: /headers, upstream: u, compose: {input_headers: [Accept], backend: [{url_pattern: /x}]}}
      - {path: /forward, upstream: u, forward: {input_headers: [X-A]}, compose: {backend: [{url_pattern: /x}]}}
";
        let cfg = load_str(Path::new("gw.yaml"), yaml).unwrap();
        let routes = &cfg.orgs[0].config.routes;
        let f: Vec<_> = routes.iter().map(super::forward_config).collect();
        assert!(f[0].is_none());
        let q = f[1].as_ref().unwrap();
        assert_eq!(
            (q.input_headers.as_slice(), q.input_query_strings.as_slice()),
            (&["*".to_string()][..], &["q".to_string()][..])
        );
        let h = f[2].as_ref().unwrap();
        assert_eq!(h.input_headers, ["Accept"]);
        assert!(h.input_query_strings.is_empty());
        assert_eq!(f[3].as_ref().unwrap().input_headers, ["X-A"]);
    }

    #[test]
    fn concurrent_calls_are_bounded() {
        let yaml = "\
organizations:
  - name: a
    upstreams:
      u: {targets: [\"http://127.0.0.1:1\"]}
    routes:
      - path: /x
        upstream: u
        compose:
          concurrent_calls: 17
          backend: [{url_pattern: /x, concurrent_calls: 16}]
";
        let errs = load_str(Path::new("gw.yaml"), yaml).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, Some(9), "{errs:?}");
        assert!(errs[0].message.contains("concurrent_calls is at most 16"), "{errs:?}");
    }

    #[test]
    fn composition_problems_are_placed_at_their_lines() {
        let yaml = "\
organizations:
  - name: a
    upstreams:
      users: {targets: [\"http://127.0.0.1:1\"]}
    routes:
      - path: /ok/{id}
        compose:
          backend:
            - {upstream: users, url_pattern: \"/users/{id}\", group: user, timeout: 500ms}
            - {upstream: users, url_pattern: \"/posts?author={id}\", method: POST}
      - path: /bad/{id}
        compose:
          backend:
            - upstream: usres
              url_pattern: /users/{uid}
            - upstream: users
              url_pattern: /x
              timeout: soon
              method: \"GE T\"
              return_error_code: true
";
        let errs = load_str(Path::new("gw.yaml"), yaml).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 5, "{text:#?}");
        let has = |line: &str, what: &str| text.iter().any(|t| t.starts_with(line) && t.contains(what));
        assert!(has("gw.yaml:14:", "did you mean `users`"), "{text:#?}");
        assert!(has("gw.yaml:15:", "`{uid}` is not a parameter"), "{text:#?}");
        assert!(has("gw.yaml:18:", "invalid duration"), "{text:#?}");
        assert!(has("gw.yaml:19:", "not an HTTP method"), "{text:#?}");
        assert!(has("gw.yaml:20:", "only an endpoint with one backend"), "{text:#?}");
    }
}
