//! Matching a request to a route: Host → organization ([`HostTable`]), then path and method
//! within the organization ([`OrgRouter`], a `matchit` radix tree).
//!
//! The most specific pattern wins (static segments over parameters over catch-alls), whatever
//! the order of the routes in the file, and it wins per method: when the most specific pattern
//! has no route for the request's method, the most specific pattern that has one answers
//! (`POST /users/me` and `GET /users/{id}`: `GET /users/me` is the second route's, as in
//! httprouter, gin and KrakenD). So no route can hide another.
//!
//! That fallback is taken only when it cannot weaken access: the route falling back must have
//! the same [`AccessRules`] as every route at the most specific pattern; otherwise the request
//! gets 405. With `/admin/{*rest}` for GET and POST behind an API key and an open `/{*rest}`, a
//! `DELETE /admin/x` would otherwise reach the open route without a key. (405 rather than
//! making the fallback opt-in: the safe answer needs no setting, and the documented case of
//! routes with the same rules keeps working.) The rules are compared once, at config load, as
//! a class number per route ([`Route::access`]) and per pattern ([`MethodTable::access`]).
//! `cratopus routes` shows where a fallback applies and where it is refused; `cratopus check`
//! warns about the refused ones.
//!
//! Beyond the path: routes with `match:` conditions ([`crate::matching`]) may share a pattern
//! and method. At a pattern they are tried most specific first (more conditions, then more
//! exact ones, then more regular expressions, then file order), before the route without
//! conditions, if any; the first whose conditions hold answers. When none holds, the request
//! goes on as if the pattern had no route for its method (the fallback above, else 404 — not
//! 405: the method is one the pattern answers). A pattern counts as a fallback for a method
//! only when it has a route without conditions for it, so the fallback always answers.
//! Tables without conditions (every table of a config without `match:`) skip all of this on
//! one test of an empty list.

use crate::matching::{Conditions, Head};
use crate::snapshot::Route;
use cratopus_config::{AuthConfig, AuthorizeConfig, IpRulesConfig, OrganizationConfig, RouteConfig};
use cratopus_policies::auth::Identity;
use http::{HeaderValue, Method};
use std::collections::HashMap;
use std::sync::Arc;

/// Host name → organization index. Exact names first, then the longest `*.suffix`, then the
/// default organization.
#[derive(Debug, Default)]
pub struct HostTable {
    exact: HashMap<Box<str>, usize>,
    /// ".acme.test" → org, for `*.acme.test`.
    wildcards: HashMap<Box<str>, usize>,
    default: Option<usize>,
}

impl HostTable {
    pub fn new(default: Option<usize>) -> HostTable {
        HostTable {
            default,
            ..HostTable::default()
        }
    }

    /// Adds `domain` (already lowercase; `*.x` for a wildcard).
    pub fn insert(&mut self, domain: &str, org: usize) {
        match domain.strip_prefix('*') {
            Some(suffix) => {
                self.wildcards.insert(suffix.into(), org);
            }
            None => {
                self.exact.insert(domain.into(), org);
            }
        }
    }

    /// The organization for a Host header value (port and case ignored).
    pub fn lookup(&self, host: &str) -> Option<usize> {
        let name = lower_case(strip_port(host));
        let name = name.strip_suffix('.').unwrap_or(&name);
        if let Some(&o) = self.exact.get(name) {
            return Some(o);
        }
        // Each dot starts a candidate suffix; the first one found is the longest.
        if !self.wildcards.is_empty() {
            for (i, _) in name.match_indices('.').filter(|(i, _)| *i > 0) {
                if let Some(&o) = self.wildcards.get(&name[i..]) {
                    return Some(o);
                }
            }
        }
        self.default
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Everything that decides who may use a route: the organization's and the route's IP lists,
/// authentication (the route's, else the organization's; `None` when the route is open),
/// authorization, and, when some consumer's API keys are good for named routes only, the
/// route's name. (The organization's client-certificate rule is the same for all its routes.)
/// Two routes with equal rules admit the same requests, so one may answer for the other.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccessRules<'a> {
    ip: [Option<&'a IpRulesConfig>; 2],
    auth: Option<&'a AuthConfig>,
    authorize: Option<&'a AuthorizeConfig>,
    name: Option<&'a str>,
}

impl<'a> AccessRules<'a> {
    /// The rules of `route` of `org`, as `compile` applies them.
    pub fn of(org: &'a OrganizationConfig, route: &'a RouteConfig) -> AccessRules<'a> {
        // `auth: {}` opens a route of an organization that authenticates.
        let auth = route
            .auth
            .as_ref()
            .or(org.auth.as_ref())
            .filter(|a| a.api_key.is_some() || a.jwt.is_some() || a.mtls.is_some());
        let scoped_keys = org
            .consumers
            .iter()
            .any(|c| c.keys.iter().any(|k| !k.routes.is_empty()));
        AccessRules {
            ip: [org.ip.as_ref(), route.ip.as_ref()],
            auth,
            authorize: route.authorize.as_ref().or(org.authorize.as_ref()),
            name: (auth.is_some() && scoped_keys).then(|| route.name.as_deref().unwrap_or(&route.path.value)),
        }
    }

    /// Whether both admit the same requests as far as authentication: the same IP lists, the
    /// same authentication (or none), and, where keys are scoped to routes, the same name. A
    /// request authenticated for one may then be handed to the other.
    pub fn same_until_authentication(&self, other: &AccessRules<'_>) -> bool {
        self.ip == other.ip && self.auth == other.auth && self.name == other.name
    }
}

/// The routes that share one path pattern, by method.
#[derive(Debug, Default)]
pub struct MethodTable {
    /// The routes without conditions, by method.
    pub by_method: Vec<(Method, Arc<Route>)>,
    /// The route without conditions for every method.
    pub any: Option<Arc<Route>>,
    /// The `Allow` header for a 405.
    pub allow: Option<HeaderValue>,
    /// The access class ([`Route::access`]) every route here shares; `None` when they differ,
    /// and then no less specific pattern answers for a method this one lacks.
    pub access: Option<usize>,
    /// The routes with `match:` conditions, per method (`None`: every method), in the order
    /// they are tried ([`candidate_order`]). Empty for most patterns.
    pub conditional: Vec<(Option<Method>, Arc<Route>)>,
}

/// The order of the conditional candidates of a pattern: the more specific conditions first,
/// then a route naming the method before one for every method; equal keys keep file order.
pub(crate) fn candidate_order(method: Option<&Method>, route: &Route) -> impl Ord + use<> {
    let spec = route.conditions.as_ref().map(|c| c.specificity).unwrap_or_default();
    (std::cmp::Reverse(spec), method.is_none())
}

/// Whether a route for `route_method` (`None`: every method) answers `m`. A GET route answers
/// HEAD.
fn answers(route_method: Option<&Method>, m: &Method) -> bool {
    match route_method {
        None => true,
        Some(rm) => rm == m || (*m == Method::HEAD && *rm == Method::GET),
    }
}

impl MethodTable {
    fn get(&self, m: &Method) -> Option<&Arc<Route>> {
        self.by_method
            .iter()
            .find(|(mm, _)| mm == m)
            .map(|(_, r)| r)
            .or(self.any.as_ref())
            .or_else(|| {
                // HEAD is answered by a GET route, as HTTP expects.
                if *m == Method::HEAD {
                    self.by_method.iter().find(|(mm, _)| *mm == Method::GET).map(|(_, r)| r)
                } else {
                    None
                }
            })
    }

    /// The first candidate for `m` whose conditions pass `ok`, else the route without
    /// conditions. The flag tells whether some conditional candidate answers `m` at all.
    fn pick(&self, m: &Method, ok: &impl Fn(&Conditions) -> bool) -> (Option<&Arc<Route>>, bool) {
        let mut tried = false;
        for (rm, r) in &self.conditional {
            if answers(rm.as_ref(), m) {
                tried = true;
                if r.conditions.as_deref().is_none_or(ok) {
                    return (Some(r), true);
                }
            }
        }
        (self.get(m), tried)
    }

    /// Every route of `m` in the order they are tried (for compile-time checks).
    fn candidates<'t>(&'t self, m: &'t Method) -> impl Iterator<Item = &'t Arc<Route>> + 't {
        self.conditional
            .iter()
            .filter(move |(rm, _)| answers(rm.as_ref(), m))
            .map(|(_, r)| r)
            .chain(self.get(m))
    }

    /// Every route here.
    fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.by_method
            .iter()
            .map(|(_, r)| r)
            .chain(self.any.iter())
            .chain(self.conditional.iter().map(|(_, r)| r))
    }
}

/// A host name in lower case, as names are matched (Host and SNI may come in any case);
/// borrowed when it already is, which is nearly always.
pub(crate) fn lower_case(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase().into()
    } else {
        name.into()
    }
}

/// The router of one organization.
#[derive(Debug, Default)]
pub struct OrgRouter {
    pub(crate) tree: matchit::Router<usize>,
    pub(crate) tables: Vec<MethodTable>,
    /// For a method the most specific pattern does not answer: per method, a tree of only the
    /// patterns that answer it (routes for every method included).
    by_method: HashMap<Method, matchit::Router<usize>>,
    /// The patterns with a route for every method, for methods no route names.
    any_method: matchit::Router<usize>,
}

/// The outcome of matching a path and method.
pub enum Match<'a> {
    Found(&'a Arc<Route>, matchit::Params<'a, 'a>),
    NotFound,
    /// With the `Allow` header: every method some route answers for this path.
    MethodNotAllowed(HeaderValue),
}

impl OrgRouter {
    /// The route for a request of which only method and path are known: conditions are judged
    /// as for a request without headers and query (benchmarks, tools).
    pub fn find<'a>(&'a self, method: &Method, path: &'a str) -> Match<'a> {
        self.route(method, path, &|c: &Conditions| {
            c.holds(&Head::new(empty_headers(), None)) && !c.needs_identity()
        })
    }

    /// The route for a request: the first candidate whose header, query and cookie conditions
    /// hold. When it has consumer or tier conditions ([`Conditions::needs_identity`]), those wait
    /// for authentication with its `auth`; then [`OrgRouter::find_admitted`] decides.
    pub fn find_for<'a>(&'a self, method: &Method, path: &'a str, head: &Head<'_>) -> Match<'a> {
        self.route(method, path, &|c: &Conditions| c.holds(head))
    }

    /// After authentication: the first candidate whose conditions all hold, consumer and tier
    /// included. Compile made sure that every candidate it may choose authenticates as the one
    /// [`OrgRouter::find_for`] gave did, so the identity stands.
    pub fn find_admitted<'a>(
        &'a self,
        method: &Method,
        path: &'a str,
        head: &Head<'_>,
        identity: Option<&Identity>,
    ) -> Match<'a> {
        self.route(method, path, &|c: &Conditions| c.holds(head) && c.admits(identity))
    }

    fn route<'a>(&'a self, method: &Method, path: &'a str, ok: &impl Fn(&Conditions) -> bool) -> Match<'a> {
        let Ok(m) = self.tree.at(path) else {
            return Match::NotFound;
        };
        let table = &self.tables[*m.value];
        let tried = if table.conditional.is_empty() {
            if let Some(r) = table.get(method) {
                return Match::Found(r, m.params);
            }
            false
        } else {
            match table.pick(method, ok) {
                (Some(r), _) => return Match::Found(r, m.params),
                (None, tried) => tried,
            }
        };
        // A less specific pattern may answer this method.
        let tree = match self.by_method.get(method) {
            Some(t) => t,
            None if *method == Method::HEAD => self.by_method.get(&Method::GET).unwrap_or(&self.any_method),
            None => &self.any_method,
        };
        // Only to a route with the same access rules (see the module doc).
        if let Ok(m) = tree.at(path)
            && let (Some(r), _) = self.tables[*m.value].pick(method, ok)
            && table.access == Some(r.access)
        {
            return Match::Found(r, m.params);
        }
        match &table.allow {
            // The pattern answers this method, only not this request.
            _ if tried => Match::NotFound,
            Some(allow) => Match::MethodNotAllowed(self.allow(path, table.access, allow)),
            None => Match::NotFound,
        }
    }

    /// `Allow` for a 405 at `path`: the most specific pattern's methods and those less specific
    /// patterns answer there with the same access rules (made per 405, which is rare).
    fn allow(&self, path: &str, access: Option<usize>, own: &HeaderValue) -> HeaderValue {
        let mut names: Vec<&str> = own
            .to_str()
            .unwrap_or("")
            .split(", ")
            .filter(|s| !s.is_empty())
            .collect();
        let own_count = names.len();
        for (m, tree) in &self.by_method {
            if !names.contains(&m.as_str())
                && let Ok(found) = tree.at(path)
                && self.tables[*found.value]
                    .get(m)
                    .is_some_and(|r| Some(r.access) == access)
            {
                names.push(m.as_str());
            }
        }
        if names.len() == own_count {
            return own.clone();
        }
        names.sort_unstable();
        HeaderValue::from_str(&names.join(", ")).unwrap_or_else(|_| own.clone())
    }

    /// Builds the per-method trees once every route is in: `patterns` gives each table's pattern,
    /// `access` the organization's access classes ([`Route::access`] indexes it). Also notes
    /// each table's access class and `Allow` header. Returns what is wrong with the routes
    /// chosen after authentication, as (line of the route at fault, message).
    pub(crate) fn finish(&mut self, patterns: &HashMap<String, usize>, access: &[AccessRules]) -> Vec<(u64, String)> {
        for t in &mut self.tables {
            let access = {
                let mut classes = t.routes().map(|r| r.access);
                let first = classes.next();
                first.filter(|c| classes.all(|x| x == *c))
            };
            t.access = access;
            if t.any.is_none() && !t.conditional.iter().any(|(m, _)| m.is_none()) {
                let mut names: Vec<&str> = t
                    .by_method
                    .iter()
                    .map(|(m, _)| m.as_str())
                    .chain(t.conditional.iter().filter_map(|(m, _)| m.as_ref().map(Method::as_str)))
                    .collect();
                if names.contains(&"GET") && !names.contains(&"HEAD") {
                    names.push("HEAD");
                }
                let mut seen = Vec::new();
                names.retain(|n| {
                    !seen.contains(n) && {
                        seen.push(*n);
                        true
                    }
                });
                t.allow = HeaderValue::from_str(&names.join(", ")).ok();
            }
        }
        let mut methods: Vec<Method> = self
            .tables
            .iter()
            .flat_map(|t| {
                t.by_method
                    .iter()
                    .map(|(m, _)| m.clone())
                    .chain(t.conditional.iter().filter_map(|(m, _)| m.clone()))
            })
            .collect();
        methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        methods.dedup();
        if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
            methods.push(Method::HEAD);
        }
        let mut problems = Vec::new();
        let mut ordered: Vec<(&String, usize)> = patterns.iter().map(|(p, i)| (p, *i)).collect();
        ordered.sort_unstable_by_key(|(_, i)| *i);
        for (pattern, i) in ordered {
            let t = &self.tables[i];
            // A subset of patterns that fit in one tree fits in another: inserts cannot fail.
            for m in &methods {
                if t.get(m).is_some() {
                    let _ = self.by_method.entry(m.clone()).or_default().insert(pattern.as_str(), i);
                }
            }
            if t.any.is_some() {
                let _ = self.any_method.insert(pattern.as_str(), i);
            }
            if !t.conditional.is_empty() {
                identity_problems(t, pattern, &methods, access, &mut problems);
            }
        }
        problems
    }
}

/// The routes a request may be given after authentication must admit it as the first
/// candidate with consumer or tier conditions did: from that candidate on, every candidate of
/// its pattern and method shares its authentication config and IP lists (the routing phase
/// ran those of the first; see [`AccessRules::same_until_authentication`]).
fn identity_problems(
    t: &MethodTable,
    pattern: &str,
    methods: &[Method],
    access: &[AccessRules],
    problems: &mut Vec<(u64, String)>,
) {
    // A method no route names stands for those: only routes for every method answer it.
    let unnamed = Method::from_bytes(b"CRATOPUS-UNNAMED").ok();
    for m in methods.iter().chain(unnamed.as_ref()) {
        let mut first: Option<&Arc<Route>> = None;
        for r in t.candidates(m) {
            let Some(f) = first else {
                if r.conditions.as_ref().is_some_and(|c| c.needs_identity()) {
                    first = Some(r);
                }
                continue;
            };
            let same = match (access.get(f.access), access.get(r.access)) {
                (Some(a), Some(b)) => a.same_until_authentication(b),
                _ => true,
            };
            if !same && !problems.iter().any(|(l, _)| *l == r.line) {
                problems.push((
                    r.line,
                    format!(
                        "route `{}` answers path `{pattern}` after route `{}` (line {}), which matches on consumers or tiers: routes chosen after authentication must share one authentication config (`auth`) and the same `ip` lists, and these differ",
                        r.name, f.name, f.line
                    ),
                ));
            }
        }
    }
}

/// A header map without headers, for [`OrgRouter::find`].
fn empty_headers() -> &'static http::HeaderMap {
    static EMPTY: std::sync::OnceLock<http::HeaderMap> = std::sync::OnceLock::new();
    EMPTY.get_or_init(http::HeaderMap::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let mut t = HostTable::new(Some(9));
        t.insert("api.acme.test", 1);
        t.insert("*.acme.test", 2);
        t.insert("*.eu.acme.test", 3);
        assert_eq!(t.lookup("api.acme.test"), Some(1));
        assert_eq!(t.lookup("API.Acme.Test:8080"), Some(1));
        assert_eq!(t.lookup("www.acme.test"), Some(2));
        assert_eq!(t.lookup("a.eu.acme.test"), Some(3));
        assert_eq!(t.lookup("acme.test"), Some(9));
        assert_eq!(t.lookup("[::1]:80"), Some(9));
        assert_eq!(t.lookup("api.acme.test."), Some(1));
    }
}

#[cfg(test)]
mod matching_tests {
    //! Routes of one path and method told apart by `match:` conditions.

    use super::*;
    use crate::snapshot::{Snapshot, compile};
    use cratopus_policies::auth::Consumer;
    use http::HeaderMap;
    use std::path::Path;

    async fn snap(routes: &str) -> Snapshot {
        try_snap(routes).await.unwrap_or_else(|e| panic!("{routes}\n{e}"))
    }

    async fn try_snap(routes: &str) -> Result<Snapshot, String> {
        let yaml = format!(
            "organizations:\n  - name: a\n    consumers:\n      - {{id: alice, tier: gold, keys: [\"sha256:{k1}\"]}}\n      - {{id: bob, tier: free, keys: [\"sha256:{k2}\"]}}\n    upstreams:\n      u: {{targets: [\"mirror://\"]}}\n    routes:\n{routes}",
            k1 = "1".repeat(64),
            k2 = "2".repeat(64),
        );
        let loaded = cratopus_config::load_str(Path::new("gw.yaml"), &yaml).map_err(|e| e.to_string())?;
        cratopus_config::validate::validate(&loaded).map_err(|e| e.to_string())?;
        compile(loaded, None, 1).await.map_err(|e| e.to_string())
    }

    /// The name of the route `method path` with `headers` and `query` reaches, or `404`/`405`.
    fn route_of(s: &Snapshot, method: Method, path: &str, headers: &[(&str, &str)], query: Option<&str>) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let org = s.org_for_host("any").expect("one organization");
        match org.router.find_for(&method, path, &Head::new(&h, query)) {
            Match::Found(r, _) => r.name.to_string(),
            Match::NotFound => "404".into(),
            Match::MethodNotAllowed(allow) => format!("405 {}", allow.to_str().unwrap()),
        }
    }

    #[tokio::test]
    async fn header_query_cookie_regex_and_absent_split_one_path() {
        let s = snap(
            "      - {name: v2, path: /items, upstream: u, match: {headers: {X-Api-Version: \"2\"}}}
      - {name: beta, path: /items, upstream: u, match: {query: {beta: \"1\"}}}
      - {name: canary, path: /items, upstream: u, match: {cookies: {canary: \"yes\"}}}
      - {name: curl, path: /items, upstream: u, match: {headers: {User-Agent: {regex: \"curl/[0-9.]+\"}}}}
      - {name: nolegacy, path: /items, methods: [POST], upstream: u, match: {headers: {X-Legacy: {present: false}}}}
      - {name: plain, path: /items, upstream: u}
",
        )
        .await;
        let get = |h: &[(&str, &str)], q: Option<&str>| route_of(&s, Method::GET, "/items", h, q);
        assert_eq!(get(&[], None), "plain");
        assert_eq!(get(&[("x-api-version", "2")], None), "v2");
        assert_eq!(get(&[("X-Api-Version", "3")], None), "plain");
        // Several values of one header: one that matches is enough.
        assert_eq!(get(&[("X-Api-Version", "1"), ("X-Api-Version", "2")], None), "v2");
        assert_eq!(get(&[], Some("a=b&beta=1")), "beta");
        assert_eq!(get(&[], Some("beta=10")), "plain");
        assert_eq!(get(&[], Some("%62eta=1")), "beta", "names are compared decoded");
        assert_eq!(get(&[("Cookie", "a=1; canary=yes")], None), "canary");
        assert_eq!(get(&[("Cookie", "canary=\"yes\"")], None), "canary");
        assert_eq!(get(&[("Cookie", "canary=no")], None), "plain");
        assert_eq!(get(&[("User-Agent", "curl/8.5.0")], None), "curl");
        // Anchored: the whole value must match.
        assert_eq!(get(&[("User-Agent", "not curl/8.5.0")], None), "plain");
        assert_eq!(route_of(&s, Method::POST, "/items", &[], None), "nolegacy");
        assert_eq!(
            route_of(&s, Method::POST, "/items", &[("X-Legacy", "1")], None),
            "plain"
        );
        // HEAD is answered as GET.
        assert_eq!(
            route_of(&s, Method::HEAD, "/items", &[("X-Api-Version", "2")], None),
            "v2"
        );
    }

    #[tokio::test]
    async fn more_conditions_then_exact_then_regex_then_present_then_file_order() {
        let s = snap(
            "      - {name: present, path: /o, upstream: u, match: {headers: {A: {present: true}}}}
      - {name: regex, path: /o, upstream: u, match: {headers: {A: {regex: \"[0-9]\"}}}}
      - {name: exact, path: /o, upstream: u, match: {headers: {A: \"1\"}}}
      - {name: two, path: /o, upstream: u, match: {headers: {A: {present: true}, B: {present: true}}}}
      - {name: first, path: /t, upstream: u, match: {headers: {A: \"1\"}}}
      - {name: second, path: /t, upstream: u, match: {query: {b: \"1\"}}}
",
        )
        .await;
        let o = |h: &[(&str, &str)]| route_of(&s, Method::GET, "/o", h, None);
        assert_eq!(o(&[("A", "1"), ("B", "x")]), "two");
        assert_eq!(o(&[("A", "1")]), "exact");
        assert_eq!(o(&[("A", "2")]), "regex");
        assert_eq!(o(&[("A", "x")]), "present");
        assert_eq!(route_of(&s, Method::GET, "/t", &[("A", "1")], Some("b=1")), "first");
        assert_eq!(route_of(&s, Method::GET, "/t", &[], Some("b=1")), "second");
    }

    #[tokio::test]
    async fn nothing_holds_is_404_or_a_less_specific_pattern() {
        let s = snap(
            "      - {name: only, path: /only, methods: [GET], upstream: u, match: {headers: {A: \"1\"}}}
      - {name: beta-users, path: /api/users, upstream: u, match: {headers: {X-Beta: \"1\"}}}
      - {name: api, path: \"/api/{*rest}\", upstream: u}
",
        )
        .await;
        assert_eq!(route_of(&s, Method::GET, "/only", &[("A", "1")], None), "only");
        // The method is one the path answers, only not for this request: 404, not 405.
        assert_eq!(route_of(&s, Method::GET, "/only", &[], None), "404");
        assert_eq!(route_of(&s, Method::POST, "/only", &[], None), "405 GET, HEAD");
        assert_eq!(
            route_of(&s, Method::GET, "/api/users", &[("X-Beta", "1")], None),
            "beta-users"
        );
        assert_eq!(route_of(&s, Method::GET, "/api/users", &[], None), "api");
    }

    #[tokio::test]
    async fn a_less_specific_pattern_tries_its_own_conditions_first() {
        let s = snap(
            "      - {name: v2-users, path: /api/users, upstream: u, match: {headers: {X-Api-Version: \"2\"}}}
      - {name: beta-api, path: \"/api/{*rest}\", upstream: u, match: {headers: {X-Beta: \"1\"}}}
      - {name: api, path: \"/api/{*rest}\", upstream: u}
",
        )
        .await;
        assert_eq!(
            route_of(&s, Method::GET, "/api/users", &[("X-Beta", "1")], None),
            "beta-api"
        );
        assert_eq!(route_of(&s, Method::GET, "/api", &[("X-Beta", "1")], None), "beta-api");
        assert_eq!(route_of(&s, Method::GET, "/api/x", &[], None), "api");
    }

    #[tokio::test]
    async fn identical_conditions_conflict_with_their_line() {
        let e = try_snap(
            "      - {name: a, path: /x, upstream: u, match: {headers: {A: \"1\"}}}
      - {name: b, path: /x, methods: [GET], upstream: u, match: {headers: {a: \"1\"}}}
      - {name: c, path: /x, methods: [GET], upstream: u, match: {headers: {a: \"2\"}}}
",
        )
        .await
        .err()
        .expect("identical conditions conflict");
        assert!(
            e.contains("gw.yaml:10:") && e.contains("route `b` conflicts with route `a` (line 9)"),
            "{e}"
        );
        assert!(e.contains("same `match` conditions"), "{e}");
        assert!(!e.contains("route `c`"), "{e}");
    }

    fn identity(id: &str, tier: &str) -> Identity {
        Identity {
            consumer: Some(Arc::new(Consumer {
                id: id.into(),
                header: None,
                tier: Some(tier.into()),
                scopes: Vec::new(),
                roles: Vec::new(),
            })),
            claims: None,
        }
    }

    #[tokio::test]
    async fn consumers_and_tiers_are_decided_after_authentication() {
        let s = snap(
            "      - {name: alice, path: /d, upstream: u, auth: {api_key: {}}, match: {consumers: [alice]}}
      - {name: gold, path: /d, upstream: u, auth: {api_key: {}}, match: {tiers: [gold, platinum]}}
      - {name: all, path: /d, upstream: u, auth: {api_key: {}}}
",
        )
        .await;
        let org = s.org_for_host("any").unwrap();
        let h = HeaderMap::new();
        let head = Head::new(&h, None);
        let Match::Found(first, _) = org.router.find_for(&Method::GET, "/d", &head) else {
            panic!("a first candidate")
        };
        assert_eq!(&*first.name, "alice");
        assert!(first.conditions.as_ref().is_some_and(|c| c.needs_identity()));
        let after = |id: Option<Identity>| match org.router.find_admitted(&Method::GET, "/d", &head, id.as_ref()) {
            Match::Found(r, _) => r.name.to_string(),
            _ => "none".into(),
        };
        assert_eq!(after(Some(identity("alice", "free"))), "alice");
        assert_eq!(after(Some(identity("carol", "gold"))), "gold");
        assert_eq!(after(Some(identity("bob", "free"))), "all");
        // Without identity conditions at hand, the plain `find` never picks them.
        assert!(matches!(org.router.find(&Method::GET, "/d"), Match::Found(r, _) if &*r.name == "all"));
    }

    #[tokio::test]
    async fn routes_chosen_after_authentication_share_its_config() {
        let e = try_snap(
            "      - {name: alice, path: /d, upstream: u, auth: {api_key: {}}, match: {consumers: [alice]}}
      - {name: open, path: /d, upstream: u, auth: {}}
",
        )
        .await
        .err()
        .expect("different auth after a consumer condition");
        assert!(
            e.contains("gw.yaml:10:") && e.contains("route `open` answers path `/d` after route `alice` (line 9)"),
            "{e}"
        );
        // Before it, in the order of candidates, any route may differ: it is decided first.
        snap(
            "      - {name: public, path: /d, upstream: u, auth: {}, match: {headers: {X-Public: \"1\"}, query: {p: \"1\"}}}
      - {name: alice, path: /d, upstream: u, auth: {api_key: {}}, match: {consumers: [alice]}}
      - {name: all, path: /d, upstream: u, auth: {api_key: {}}}
",
        )
        .await;
        let e = try_snap("      - {name: alice, path: /d, upstream: u, match: {consumers: [alice]}}\n")
            .await
            .err()
            .expect("consumers without auth");
        assert!(e.contains("gw.yaml:9:") && e.contains("no `auth`"), "{e}");
        let e =
            try_snap("      - {name: x, path: /d, upstream: u, auth: {api_key: {}}, match: {consumers: [alicia]}}\n")
                .await
                .err()
                .expect("unknown consumer");
        assert!(e.contains("`alicia` is not a consumer") && e.contains("alice"), "{e}");
    }
}
