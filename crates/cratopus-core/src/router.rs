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

use crate::snapshot::Route;
use cratopus_config::{AuthConfig, AuthorizeConfig, IpRulesConfig, OrganizationConfig, RouteConfig};
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
}

/// The routes that share one path pattern, by method.
#[derive(Debug, Default)]
pub struct MethodTable {
    pub by_method: Vec<(Method, Arc<Route>)>,
    pub any: Option<Arc<Route>>,
    /// The `Allow` header for a 405.
    pub allow: Option<HeaderValue>,
    /// The access class ([`Route::access`]) every route here shares; `None` when they differ,
    /// and then no less specific pattern answers for a method this one lacks.
    pub access: Option<usize>,
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
    pub fn find<'a>(&'a self, method: &Method, path: &'a str) -> Match<'a> {
        let Ok(m) = self.tree.at(path) else {
            return Match::NotFound;
        };
        let table = &self.tables[*m.value];
        if let Some(r) = table.get(method) {
            return Match::Found(r, m.params);
        }
        // A less specific pattern may answer this method.
        let tree = match self.by_method.get(method) {
            Some(t) => t,
            None if *method == Method::HEAD => self.by_method.get(&Method::GET).unwrap_or(&self.any_method),
            None => &self.any_method,
        };
        // Only to a route with the same access rules (see the module doc).
        if let Ok(m) = tree.at(path)
            && let Some(r) = self.tables[*m.value].get(method)
            && table.access == Some(r.access)
        {
            return Match::Found(r, m.params);
        }
        match &table.allow {
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

    /// Builds the per-method trees once every route is in: `patterns` gives each table's pattern.
    /// Also notes each table's access class.
    pub(crate) fn finish(&mut self, patterns: &HashMap<String, usize>) {
        for t in &mut self.tables {
            let mut classes = t
                .by_method
                .iter()
                .map(|(_, r)| r.access)
                .chain(t.any.iter().map(|r| r.access));
            let first = classes.next();
            t.access = first.filter(|c| classes.all(|x| x == *c));
        }
        let mut methods: Vec<Method> = self
            .tables
            .iter()
            .flat_map(|t| t.by_method.iter().map(|(m, _)| m.clone()))
            .collect();
        methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        methods.dedup();
        if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
            methods.push(Method::HEAD);
        }
        for (pattern, &i) in patterns {
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
        }
    }
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
