//! `cratopus routes -c gateway.yaml [--json]`: the routing tree of a config.
//!
//! The tree is built from the loaded config (not from a compiled snapshot, so no upstream is
//! resolved or contacted) and includes the implicit routes the gateway adds: a pattern
//! `/x/{*rest}` also answers `/x` and `/x/` for the methods no other route answers there (see
//! `compile` in `cratopus-core`). Patterns are not checked here; `cratopus check` does that.
//!
//! The output is stable: organizations in the order they are loaded (sources in file order, the
//! files of a glob sorted by name), paths sorted segment by segment (a trailing slash first, then
//! literal segments by byte order, then `{param}` segments, then `{*catch-all}` segments), and
//! at one path the explicit routes in file order before the implicit ones.
//!
//! Text (one tree per organization):
//!
//! ```text
//! organization shop  hosts: api.shop.test
//! └─ /v1
//!    └─ /orders
//!       └─ GET, POST → route orders → upstream orders (least_connections): http://10.0.0.1:80  [strip_prefix /v1]
//! ```
//!
//! JSON (`--json`): one object; keys are never renamed or removed (new ones may be added):
//!
//! ```text
//! {"organizations": [{
//!    "name": string, "default": bool, "domains": [string],
//!    "routes": [{"path": string, "methods": [string] (["*"]: any method), "name": string,
//!                "upstream": string|null, "implicit": bool, "strip_prefix": string|null,
//!                "rewrite": string|null, "timeout_ms": integer|null,
//!                "split": [{"name": string, "upstream": string, "weight": integer,
//!                           "canary": bool}]|null,
//!                "match": null|{"headers": {name: test}, "query": {name: test},
//!                               "cookies": {name: test}, "consumers": [string], "tiers": [string]}}],
//!    "upstreams": [{"name": string, "balance": string, "targets": [{"url": string, "weight": integer}]}]
//! }]}
//! ```
//!
//! A `test` is `{"exact": string}`, `{"regex": string}` or `{"present": bool}`. `routes` are in
//! the order of the text tree; `upstreams` are sorted by name; `timeout_ms` is
//! the route's own `timeout` (null: the upstream's `timeouts.response` applies); `upstream` is
//! null and `split` lists the arms (weights as configured) for a route with a `split`; `default` is
//! true for the organization that answers hosts no organization claims.
//!
//! Method fallbacks (see `cratopus_core::router`): at a path, a method that no route there
//! answers may go to a less specific pattern's route, but only when that route has the same
//! access rules; otherwise it gets 405. Both are shown at the path they concern (text:
//! `PUT ⇢ route user at /users/{id}` or `PUT, * ⇢ 405: route open at /{*rest} has other access
//! rules`, where `*` stands for the methods no route names), and in the JSON as
//! `"fallbacks": [{"path", "methods", "route", "route_path", "applies": bool}]` per
//! organization. They are found at a sample path of each pattern (`{x}` → `x1`, `{*x}` →
//! `a/b`); `cratopus check` warns about each refused one ([`fallback_warnings`]).

use cratopus_config::{
    Balance, ConfigError, HashOn, LoadedConfig, MatchConfig, OrganizationConfig, RouteConfig, UpstreamConfig,
};
use cratopus_core::router::AccessRules;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Loads `config` and prints its routing tree (as JSON with `json`). Exits 1 on config errors.
pub fn run(config: &Path, json: bool) -> ExitCode {
    let cfg = match cratopus_config::load_file(config) {
        Ok(c) => c,
        Err(e) => {
            let problems: Vec<_> =
                e.0.into_iter()
                    .map(|e| (cratopus_config::report::Severity::Error, e))
                    .collect();
            eprint!("{}", cratopus_config::report::render(&problems));
            return ExitCode::FAILURE;
        }
    };
    let text = render(&cfg, json);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // `cratopus routes … | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the routes: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The routing tree of `cfg` as text, or as JSON with `json`; ends with a newline.
pub fn render(cfg: &LoadedConfig, json: bool) -> String {
    let orgs = org_views(cfg);
    if json { render_json(&orgs) } else { render_text(&orgs) }
}

/// A route as it is answered at one path: an explicit route of the config, or an implicit one.
struct RouteView<'a> {
    path: String,
    /// Upper case, without duplicates; empty: every method (for an implicit route: every method
    /// no other route at this path answers).
    methods: Vec<String>,
    name: &'a str,
    /// The route's upstream; `None` for a route with a `split`.
    upstream: Option<&'a str>,
    implicit: bool,
    strip_prefix: Option<&'a str>,
    rewrite: Option<&'a str>,
    timeout: Option<Duration>,
    /// Who may use it, to tell where a method fallback is allowed.
    access: AccessRules<'a>,
    /// The route as written (an implicit route: the route it comes from).
    config: &'a RouteConfig,
    /// Its `match:` conditions, when it has any.
    conditions: Option<&'a MatchConfig>,
}

/// Where the router's method fallback applies at a path, or is refused: `methods` at `path`,
/// which no route there answers, go to route `to` (at a less specific pattern), or, when
/// `applies` is false, get 405 because that route has other access rules.
struct Fallback {
    path: String,
    /// Upper case, sorted; `*` for every method no route of the organization names.
    methods: Vec<String>,
    /// Index into the organization's routes.
    to: usize,
    applies: bool,
}

/// One path segment of the tree and what hangs below it.
#[derive(Default)]
struct Node {
    /// Indexes into the organization's routes, in file order (explicit before implicit).
    routes: Vec<usize>,
    /// Indexes into the organization's fallbacks.
    fallbacks: Vec<usize>,
    /// Keyed by (kind, segment) so that siblings sort: trailing slash, literals, params, catch-alls.
    children: BTreeMap<(u8, String), Node>,
}

struct OrgView<'a> {
    org: &'a OrganizationConfig,
    default: bool,
    routes: Vec<RouteView<'a>>,
    fallbacks: Vec<Fallback>,
    tree: Node,
}

impl OrgView<'_> {
    /// The routes in the order of the tree (depth first).
    fn ordered(&self) -> Vec<&RouteView<'_>> {
        fn walk(node: &Node, out: &mut Vec<usize>) {
            out.extend(&node.routes);
            for child in node.children.values() {
                walk(child, out);
            }
        }
        let mut order = Vec::new();
        walk(&self.tree, &mut order);
        order.into_iter().map(|i| &self.routes[i]).collect()
    }
}

fn org_views(cfg: &LoadedConfig) -> Vec<OrgView<'_>> {
    // As `compile` decides: the named default, else a single organization without domains.
    let default = cfg
        .gateway
        .default_organization
        .as_ref()
        .and_then(|d| cfg.orgs.iter().position(|o| o.config.name.value == d.value))
        .or_else(|| (cfg.orgs.len() == 1 && cfg.orgs[0].config.domains.is_empty()).then_some(0));
    cfg.orgs
        .iter()
        .enumerate()
        .map(|(i, loaded)| {
            let org = &loaded.config;
            let routes = route_views(org);
            let fallbacks = fallbacks(&routes);
            let mut tree = Node::default();
            for (ri, r) in routes.iter().enumerate() {
                node_of(&mut tree, &r.path).routes.push(ri);
            }
            for (fi, f) in fallbacks.iter().enumerate() {
                node_of(&mut tree, &f.path).fallbacks.push(fi);
            }
            OrgView {
                org,
                default: default == Some(i),
                routes,
                fallbacks,
                tree,
            }
        })
        .collect()
}

/// The node of `path` in `tree`, made if needed.
fn node_of<'t>(tree: &'t mut Node, path: &str) -> &'t mut Node {
    let mut node = tree;
    for seg in segments(path) {
        node = node.children.entry(segment_key(seg)).or_default();
    }
    node
}

/// A request path that `pattern` matches: `{x}` → `x1`, `{*x}` → `a/b`.
fn sample_path(pattern: &str) -> String {
    let segs: Vec<String> = segments(pattern)
        .map(|s| match segment_key(s).0 {
            3 => "a/b".to_string(),
            2 => "x1".to_string(),
            _ => s.to_string(),
        })
        .collect();
    format!("/{}", segs.join("/"))
}

/// Whether `r` answers `method` (`*`: a method no route names) at its path, as the router
/// decides (a route answering GET answers HEAD).
fn answers(r: &RouteView<'_>, method: &str) -> bool {
    r.methods.is_empty()
        || r.methods
            .iter()
            .any(|m| m == method || (method == "HEAD" && m == "GET"))
}

/// The method fallbacks of an organization's routes, by path in route order, then by method.
/// For each path and each method no route there answers, the router's choice at a sample path
/// of the pattern: the most specific pattern answering that method.
fn fallbacks(routes: &[RouteView<'_>]) -> Vec<Fallback> {
    let mut methods: Vec<&str> = routes
        .iter()
        .flat_map(|r| r.methods.iter().map(String::as_str))
        .collect();
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    methods.sort_unstable();
    methods.dedup();
    if routes.iter().any(|r| r.methods.is_empty()) {
        methods.push("*");
    }
    let mut paths: Vec<&str> = Vec::new();
    for r in routes {
        if !paths.contains(&r.path.as_str()) {
            paths.push(&r.path);
        }
    }
    // Insert errors are patterns that conflict: `check` reports them; they are left out here.
    let mut all = matchit::Router::new();
    for p in &paths {
        let _ = all.insert(*p, *p);
    }
    let mut out: Vec<Fallback> = Vec::new();
    for m in methods {
        let mut tree = matchit::Router::new();
        // As in the router: only a route without conditions makes its pattern a fallback (it
        // always answers), and a path whose routes for `m` all have conditions falls back when
        // none holds.
        for (i, r) in routes.iter().enumerate() {
            if r.conditions.is_none() && answers(r, m) {
                let _ = tree.insert(r.path.as_str(), i);
            }
        }
        for p in &paths {
            let here: Vec<&RouteView<'_>> = routes.iter().filter(|r| r.path == *p).collect();
            let sample = sample_path(p);
            // The sample must be routed to `p` itself, or it says nothing about `p`.
            if here.iter().any(|r| r.conditions.is_none() && answers(r, m))
                || all.at(&sample).map(|f| *f.value) != Ok(*p)
            {
                continue;
            }
            let Ok(found) = tree.at(&sample) else {
                continue;
            };
            let to = *found.value;
            let applies = here.iter().all(|r| r.access == routes[to].access);
            match out
                .iter_mut()
                .find(|f| f.path == *p && f.to == to && f.applies == applies)
            {
                Some(f) => f.methods.push(m.to_string()),
                None => out.push(Fallback {
                    path: p.to_string(),
                    methods: vec![m.to_string()],
                    to,
                    applies,
                }),
            }
        }
    }
    out.sort_by_key(|f| paths.iter().position(|p| *p == f.path));
    out
}

/// A warning for each refused method fallback, at the route it protects: those requests get
/// 405 (before, they reached a less specific pattern's route with other access rules).
pub fn fallback_warnings(cfg: &LoadedConfig) -> Vec<ConfigError> {
    let mut warnings = Vec::new();
    for (view, loaded) in org_views(cfg).iter().zip(&cfg.orgs) {
        // One warning per route as written: its implicit paths (`/x`, `/x/`) say the same.
        let mut said: Vec<(*const RouteConfig, usize, &[String])> = Vec::new();
        for f in view.fallbacks.iter().filter(|f| !f.applies) {
            let Some(at) = view.routes.iter().find(|r| r.path == f.path) else {
                continue;
            };
            let to = &view.routes[f.to];
            let key = (std::ptr::from_ref(at.config), f.to, f.methods.as_slice());
            if said.contains(&key) {
                continue;
            }
            said.push(key);
            // Routes with `match` there answer some of those requests; the rest get 404.
            let conditional = view
                .routes
                .iter()
                .any(|r| r.path == f.path && r.conditions.is_some() && f.methods.iter().any(|m| answers(r, m)));
            let (status, answered) = if conditional {
                (
                    "404 when no route's `match` there holds",
                    "no route without `match` there answers them",
                )
            } else {
                ("405", "no route there answers them")
            };
            warnings.push(ConfigError::at(
                &loaded.file,
                &at.config.path.referenced,
                format!(
                    "at `{}`, {} get {status}: {answered}, and route `{}` (`{}`), which would, has other access rules (ip, auth or authorize)",
                    f.path,
                    method_list(&f.methods),
                    to.name,
                    to.path
                ),
            ));
        }
    }
    warnings
}

/// `PUT, DELETE, *` → `PUT, DELETE and methods no route names`.
fn method_list(methods: &[String]) -> String {
    let named: Vec<&str> = methods.iter().map(String::as_str).filter(|m| *m != "*").collect();
    match (named.is_empty(), methods.iter().any(|m| m == "*")) {
        (true, _) => "methods no route of the organization names".to_string(),
        (false, true) => format!("{} and methods no route names", named.join(", ")),
        (false, false) => named.join(", "),
    }
}

/// The segments of a path: `/` → [""], `/a/b/` → ["a", "b", ""].
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

fn segment_key(seg: &str) -> (u8, String) {
    let kind = if seg.is_empty() {
        0
    } else if seg.starts_with("{*") {
        3
    } else if seg.contains('{') {
        2
    } else {
        1
    };
    (kind, seg.to_string())
}

/// Methods at one path, to tell which methods an implicit route still gets.
#[derive(Default)]
struct Taken {
    /// A route without conditions answers every method.
    any: bool,
    /// Methods a route without conditions answers.
    methods: Vec<String>,
    /// The same for explicit routes, with conditions or not: an implicit route with
    /// conditions comes after them (one without is still the fallback of those with).
    explicit_any: bool,
    explicit_methods: Vec<String>,
}

/// The routes of `org`: the explicit ones in file order, then the implicit ones `compile` adds
/// (`/x/{*rest}` → `/x` and `/x/`), each with only the methods nobody else answers there.
fn route_views(org: &OrganizationConfig) -> Vec<RouteView<'_>> {
    let mut out = Vec::new();
    let mut taken: HashMap<String, Taken> = HashMap::new();
    let mut implicit = Vec::new();
    for r in &org.routes {
        let pattern = r.path.value.as_str();
        let mut methods: Vec<String> = Vec::new();
        for m in &r.methods {
            let m = m.value.to_ascii_uppercase();
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
        let t = taken.entry(pattern.to_string()).or_default();
        let conditions = r.conditions.as_ref().filter(|m| !m.is_empty());
        if methods.is_empty() {
            t.any |= conditions.is_none();
            t.explicit_any = true;
        } else {
            if conditions.is_none() {
                t.methods.extend(methods.iter().cloned());
            }
            t.explicit_methods.extend(methods.iter().cloned());
        }
        let view = RouteView {
            path: pattern.to_string(),
            methods,
            name: r.name.as_deref().unwrap_or(pattern),
            upstream: r.upstream.as_ref().map(|u| u.value.as_str()),
            implicit: false,
            strip_prefix: r.strip_prefix.as_ref().map(|s| s.value.as_str()),
            rewrite: r.rewrite.as_ref().map(|s| s.value.as_str()),
            timeout: r.timeout.map(|d| d.0),
            access: AccessRules::of(org, r),
            config: r,
            conditions,
        };
        // The same test as `compile`: a catch-all as the last segment.
        if let Some(i) = pattern.rfind("/{*")
            && pattern.ends_with('}')
            && !pattern[i + 3..].contains('/')
        {
            let base = &pattern[..i];
            if !base.is_empty() {
                implicit.push((base.to_string(), out.len()));
            }
            implicit.push((format!("{base}/"), out.len()));
        }
        out.push(view);
    }
    for (path, of) in implicit {
        let t = taken.entry(path.clone()).or_default();
        let src = &out[of];
        if src.conditions.is_some() {
            // As `compile` adds it: for the methods no explicit route of the path answers.
            if t.explicit_any || (src.methods.is_empty() && !t.explicit_methods.is_empty()) {
                continue;
            }
            let methods: Vec<String> = src
                .methods
                .iter()
                .filter(|m| !t.explicit_methods.contains(m))
                .cloned()
                .collect();
            if !src.methods.is_empty() && methods.is_empty() {
                continue;
            }
            out.push(RouteView {
                path,
                methods,
                implicit: true,
                ..*src
            });
            continue;
        }
        if t.any {
            continue;
        }
        let methods = if src.methods.is_empty() {
            t.any = true;
            Vec::new()
        } else {
            let free: Vec<String> = src.methods.iter().filter(|m| !t.methods.contains(m)).cloned().collect();
            if free.is_empty() {
                continue;
            }
            t.methods.extend(free.iter().cloned());
            free
        };
        out.push(RouteView {
            path,
            methods,
            implicit: true,
            ..*src
        });
    }
    out
}

fn render_text(orgs: &[OrgView<'_>]) -> String {
    if orgs.is_empty() {
        return "no organizations: every request is answered 404 unknown_host\n".into();
    }
    let any_domains = orgs.iter().any(|o| !o.org.domains.is_empty());
    let mut out = String::new();
    for (i, o) in orgs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut hosts: Vec<&str> = o.org.domains.iter().map(|d| d.value.as_str()).collect();
        if o.default {
            hosts.push(if any_domains {
                "unknown hosts (default)"
            } else {
                "every host (default)"
            });
        }
        let hosts = if hosts.is_empty() {
            "none (no domains and not the default organization)".to_string()
        } else {
            hosts.join(", ")
        };
        let _ = writeln!(out, "organization {}  hosts: {hosts}", o.org.name.value);
        if o.routes.is_empty() {
            out.push_str("└─ (no routes)\n");
        } else {
            draw(&o.tree, o, "", &mut out);
        }
    }
    out
}

/// Writes the routes and child segments of `node`, `tree` style, each line after `prefix`.
fn draw(node: &Node, o: &OrgView<'_>, prefix: &str, out: &mut String) {
    let own = node.routes.len() + node.fallbacks.len();
    let total = own + node.children.len();
    let branch = |i: usize| if i + 1 == total { "└─ " } else { "├─ " };
    for (i, &r) in node.routes.iter().enumerate() {
        let _ = writeln!(out, "{prefix}{}{}", branch(i), route_line(&o.routes[r], o.org));
    }
    for (j, &f) in node.fallbacks.iter().enumerate() {
        let i = node.routes.len() + j;
        let _ = writeln!(
            out,
            "{prefix}{}{}",
            branch(i),
            fallback_line(&o.fallbacks[f], &o.routes)
        );
    }
    for (j, ((_, seg), child)) in node.children.iter().enumerate() {
        let i = own + j;
        let _ = writeln!(out, "{prefix}{}/{seg}", branch(i));
        let more = if i + 1 == total { "   " } else { "│  " };
        draw(child, o, &format!("{prefix}{more}"), out);
    }
}

/// `PUT ⇢ route user at /users/{id}`, or `PUT, * ⇢ 405: route open at /{*rest} has other access rules`.
fn fallback_line(f: &Fallback, routes: &[RouteView<'_>]) -> String {
    let to = &routes[f.to];
    let methods = f.methods.join(", ");
    if f.applies {
        format!("{methods} ⇢ route {} at {}", to.name, to.path)
    } else {
        format!(
            "{methods} ⇢ 405: route {} at {} has other access rules",
            to.name, to.path
        )
    }
}

/// `GET, POST → route orders → upstream orders (round_robin): http://a:80, http://b:80 (weight 2)  [timeout 5s]`
fn route_line(r: &RouteView<'_>, org: &OrganizationConfig) -> String {
    let methods = if r.methods.is_empty() {
        "*".to_string()
    } else {
        r.methods.join(", ")
    };
    let mut line = format!("{methods} → route {}", r.name);
    if let Some(split) = &r.config.split {
        let arms: Vec<String> = split
            .backends
            .iter()
            .map(|b| {
                let canary = if b.canary { " (canary)" } else { "" };
                match &b.name {
                    Some(n) => format!("{n} = upstream {} weight {}{canary}", b.upstream.value, b.weight),
                    None => format!("upstream {} weight {}{canary}", b.upstream.value, b.weight),
                }
            })
            .collect();
        let _ = write!(line, " → split: {}", arms.join(", "));
    }
    if let Some(c) = &r.config.compose {
        // A composition calls its backends, not the route's upstream (only their default).
        let calls: Vec<String> = (0..c.backend.len())
            .map(|i| {
                let b = &c.backend[i];
                let upstream = cratopus_config::compose::backend_upstream(r.config, c, i).unwrap_or("?");
                format!("{} {upstream} {}", b.method.as_deref().unwrap_or("GET"), b.url_pattern)
            })
            .collect();
        let how = if c.sequential { "in sequence" } else { "concurrently" };
        let _ = write!(line, " → compose {how}: {}", calls.join(", "));
    }
    let upstream = r.upstream.unwrap_or_default();
    let composed = r.config.compose.is_some();
    if r.upstream.is_some() && !composed {
        let _ = write!(line, " → upstream {upstream}");
    }
    match org.upstreams.get(upstream) {
        _ if r.upstream.is_none() || composed => {}
        Some(u) => {
            let targets: Vec<String> = u
                .targets
                .iter()
                .map(|t| match t.weight {
                    1 => t.url.clone(),
                    w => format!("{} (weight {w})", t.url),
                })
                .collect();
            let _ = write!(line, " ({}): {}", balance_text(u), targets.join(", "));
        }
        None => line.push_str(" (not defined)"),
    }
    let mut extras = Vec::new();
    if let Some(p) = r.strip_prefix {
        extras.push(format!("strip_prefix {p}"));
    }
    if let Some(p) = r.rewrite {
        extras.push(format!("rewrite {p}"));
    }
    if let Some(t) = r.timeout {
        extras.push(format!("timeout {}", duration_text(t)));
    }
    if !extras.is_empty() {
        let _ = write!(line, "  [{}]", extras.join(", "));
    }
    if let Some(m) = r.conditions {
        let _ = write!(line, "  [match {}]", m.describe());
    }
    if r.implicit {
        line.push_str("  (implicit)");
    }
    line
}

fn balance_name(b: Balance) -> &'static str {
    match b {
        Balance::RoundRobin => "round_robin",
        Balance::LeastConnections => "least_connections",
        Balance::PowerOfTwo => "power_of_two",
        Balance::ConsistentHash => "consistent_hash",
    }
}

fn balance_text(u: &UpstreamConfig) -> String {
    let name = balance_name(u.balance);
    match (u.balance, &u.hash_on) {
        (Balance::ConsistentHash, Some(HashOn::Header(h))) => format!("{name} on header {h}"),
        (Balance::ConsistentHash, Some(HashOn::Cookie(c))) => format!("{name} on cookie {c}"),
        (Balance::ConsistentHash, Some(HashOn::ClientIp)) => format!("{name} on client_ip"),
        _ => name.to_string(),
    }
}

/// `5s`, `1500ms`.
fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn render_json(orgs: &[OrgView<'_>]) -> String {
    let orgs: Vec<Value> = orgs
        .iter()
        .map(|o| {
            let routes: Vec<Value> = o
                .ordered()
                .into_iter()
                .map(|r| {
                    let methods: Vec<&str> = if r.methods.is_empty() {
                        vec!["*"]
                    } else {
                        r.methods.iter().map(String::as_str).collect()
                    };
                    json!({
                        "path": r.path,
                        "methods": methods,
                        "name": r.name,
                        "upstream": r.upstream,
                        "split": r.config.split.as_ref().map(|s| s.backends.iter().map(|b| json!({
                            "name": b.arm_name(), "upstream": b.upstream.value, "weight": b.weight, "canary": b.canary,
                        })).collect::<Vec<_>>()),
                        "implicit": r.implicit,
                        "strip_prefix": r.strip_prefix,
                        "rewrite": r.rewrite,
                        "timeout_ms": r.timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                        "match": r.conditions.map(MatchConfig::to_json),
                    })
                })
                .collect();
            let upstreams: Vec<Value> = o
                .org
                .upstreams
                .iter()
                .map(|(name, u)| {
                    let targets: Vec<Value> = u
                        .targets
                        .iter()
                        .map(|t| json!({"url": t.url, "weight": t.weight}))
                        .collect();
                    json!({"name": name, "balance": balance_name(u.balance), "targets": targets})
                })
                .collect();
            let domains: Vec<&str> = o.org.domains.iter().map(|d| d.value.as_str()).collect();
            let fallbacks: Vec<Value> = o
                .fallbacks
                .iter()
                .map(|f| {
                    let to = &o.routes[f.to];
                    json!({"path": f.path, "methods": f.methods, "route": to.name, "route_path": to.path,
                           "applies": f.applies})
                })
                .collect();
            json!({
                "name": o.org.name.value,
                "default": o.default,
                "domains": domains,
                "routes": routes,
                "upstreams": upstreams,
                "fallbacks": fallbacks,
            })
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&json!({ "organizations": orgs })).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
default_organization: fallback
organizations:
  - name: shop
    domains: [api.shop.test, \"*.shop.test\"]
    upstreams:
      users:
        targets:
          - {url: \"http://127.0.0.1:9001\", weight: 2}
          - http://127.0.0.1:9002
        balance: least_connections
      files:
        targets: [\"mirror://\"]
        balance: consistent_hash
        hash_on: {header: X-User}
    routes:
      - {name: user, path: \"/api/users/{id}\", methods: [GET, PUT, DELETE], upstream: users, rewrite: \"/v2/users/{id}\"}
      - {name: list-users, path: /api/users, methods: [GET], upstream: users}
      - {name: create-user, path: /api/users, methods: [post], upstream: users, timeout: 1500ms}
      - {name: user-posts, path: \"/api/users/{id}/posts\", upstream: users}
      - {path: /api/health, upstream: users, timeout: 2s}
      - {name: files, path: \"/files/{*path}\", upstream: files, strip_prefix: /files}
      - {name: delete-files, path: /files, methods: [DELETE], upstream: files}
  - name: fallback
    upstreams:
      mirror:
        targets: [\"mirror://\"]
    routes:
      - path: \"/{*rest}\"
        upstream: mirror
";

    fn load(yaml: &str) -> LoadedConfig {
        cratopus_config::load_str(Path::new("gw.yaml"), yaml).expect("loads")
    }

    #[test]
    fn text_tree() {
        let got = render(&load(YAML), false);
        let want = r"organization shop  hosts: api.shop.test, *.shop.test
├─ /api
│  ├─ /health
│  │  └─ * → route /api/health → upstream users (least_connections): http://127.0.0.1:9001 (weight 2), http://127.0.0.1:9002  [timeout 2s]
│  └─ /users
│     ├─ GET → route list-users → upstream users (least_connections): http://127.0.0.1:9001 (weight 2), http://127.0.0.1:9002
│     ├─ POST → route create-user → upstream users (least_connections): http://127.0.0.1:9001 (weight 2), http://127.0.0.1:9002  [timeout 1500ms]
│     └─ /{id}
│        ├─ GET, PUT, DELETE → route user → upstream users (least_connections): http://127.0.0.1:9001 (weight 2), http://127.0.0.1:9002  [rewrite /v2/users/{id}]
│        └─ /posts
│           └─ * → route user-posts → upstream users (least_connections): http://127.0.0.1:9001 (weight 2), http://127.0.0.1:9002
└─ /files
   ├─ DELETE → route delete-files → upstream files (consistent_hash on header X-User): mirror://
   ├─ * → route files → upstream files (consistent_hash on header X-User): mirror://  [strip_prefix /files]  (implicit)
   ├─ /
   │  └─ * → route files → upstream files (consistent_hash on header X-User): mirror://  [strip_prefix /files]  (implicit)
   └─ /{*path}
      └─ * → route files → upstream files (consistent_hash on header X-User): mirror://  [strip_prefix /files]

organization fallback  hosts: unknown hosts (default)
├─ /
│  └─ * → route /{*rest} → upstream mirror (round_robin): mirror://  (implicit)
└─ /{*rest}
   └─ * → route /{*rest} → upstream mirror (round_robin): mirror://
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn json_tree() {
        let v: Value = serde_json::from_str(&render(&load(YAML), true)).expect("valid JSON");
        let orgs = v["organizations"].as_array().expect("organizations");
        assert_eq!(orgs.len(), 2);
        let (shop, fallback) = (&orgs[0], &orgs[1]);
        assert_eq!(shop["name"], "shop");
        assert_eq!(shop["default"], false);
        assert_eq!(shop["domains"], json!(["api.shop.test", "*.shop.test"]));
        assert_eq!(fallback["name"], "fallback");
        assert_eq!(fallback["default"], true);
        assert_eq!(fallback["domains"], json!([]));

        // Routes in tree order, implicit ones included.
        let routes = shop["routes"].as_array().expect("routes");
        let summary: Vec<(&str, &str, bool)> = routes
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().expect(k);
                (s("path"), s("name"), r["implicit"].as_bool().expect("implicit"))
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("/api/health", "/api/health", false),
                ("/api/users", "list-users", false),
                ("/api/users", "create-user", false),
                ("/api/users/{id}", "user", false),
                ("/api/users/{id}/posts", "user-posts", false),
                ("/files", "delete-files", false),
                ("/files", "files", true),
                ("/files/", "files", true),
                ("/files/{*path}", "files", false),
            ]
        );
        assert_eq!(
            routes[2],
            json!({"path": "/api/users", "methods": ["POST"], "name": "create-user", "upstream": "users",
                   "implicit": false, "strip_prefix": null, "rewrite": null, "timeout_ms": 1500, "split": null, "match": null})
        );
        assert_eq!(routes[3]["methods"], json!(["GET", "PUT", "DELETE"]));
        assert_eq!(routes[3]["rewrite"], "/v2/users/{id}");
        assert_eq!(
            routes[6],
            json!({"path": "/files", "methods": ["*"], "name": "files", "upstream": "files",
                   "implicit": true, "strip_prefix": "/files", "rewrite": null, "timeout_ms": null, "split": null, "match": null})
        );
        assert_eq!(
            fallback["routes"],
            json!([
                {"path": "/", "methods": ["*"], "name": "/{*rest}", "upstream": "mirror", "implicit": true,
                 "strip_prefix": null, "rewrite": null, "timeout_ms": null, "split": null, "match": null},
                {"path": "/{*rest}", "methods": ["*"], "name": "/{*rest}", "upstream": "mirror", "implicit": false,
                 "strip_prefix": null, "rewrite": null, "timeout_ms": null, "split": null, "match": null},
            ])
        );

        // Upstreams sorted by name, with their balance and weighted targets.
        assert_eq!(
            shop["upstreams"],
            json!([
                {"name": "files", "balance": "consistent_hash", "targets": [{"url": "mirror://", "weight": 1}]},
                {"name": "users", "balance": "least_connections", "targets": [
                    {"url": "http://127.0.0.1:9001", "weight": 2},
                    {"url": "http://127.0.0.1:9002", "weight": 1},
                ]},
            ])
        );
    }

    #[test]
    fn implicit_routes_take_only_free_methods() {
        let yaml = "\
default_organization: solo
organizations:
  - name: solo
    upstreams:
      u:
        targets: [\"mirror://\"]
    routes:
      - {name: blobs, path: \"/blobs/{*key}\", methods: [GET, POST], upstream: u}
      - {name: blobs-get, path: /blobs, methods: [get], upstream: u}
      - {name: docs, path: \"/docs/{*page}\", upstream: u}
      - {name: docs-root, path: /docs, upstream: u}
  - name: orphan
    upstreams: {}
";
        let got = render(&load(yaml), false);
        let want = r"organization solo  hosts: every host (default)
├─ /blobs
│  ├─ GET → route blobs-get → upstream u (round_robin): mirror://
│  ├─ POST → route blobs → upstream u (round_robin): mirror://  (implicit)
│  ├─ /
│  │  └─ GET, POST → route blobs → upstream u (round_robin): mirror://  (implicit)
│  └─ /{*key}
│     └─ GET, POST → route blobs → upstream u (round_robin): mirror://
└─ /docs
   ├─ * → route docs-root → upstream u (round_robin): mirror://
   ├─ /
   │  └─ * → route docs → upstream u (round_robin): mirror://  (implicit)
   └─ /{*page}
      └─ * → route docs → upstream u (round_robin): mirror://

organization orphan  hosts: none (no domains and not the default organization)
└─ (no routes)
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn no_organizations() {
        // Such a config no longer loads (`check` refuses it); the tree still says so.
        let mut cfg = load(YAML);
        cfg.orgs.clear();
        assert_eq!(
            render(&cfg, false),
            "no organizations: every request is answered 404 unknown_host\n"
        );
        let v: Value = serde_json::from_str(&render(&cfg, true)).expect("valid JSON");
        assert_eq!(v, json!({"organizations": []}));
    }

    /// Every line of the tree is what the compiled router answers: each route (explicit or
    /// implicit) is found for each of its methods, and `*` routes for a method nobody lists.
    fn assert_matches_router(yaml: &str) {
        let cfg = load(yaml);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let snap = cratopus_core::compile(cfg.clone(), None, 1).await.expect("compiles");
            for o in org_views(&cfg) {
                let host = o
                    .org
                    .domains
                    .first()
                    .map_or("unclaimed.invalid".to_string(), |d| d.value.replace('*', "w"));
                let org = snap.org_for_host(&host).expect("organization for host");
                assert_eq!(&*org.name, o.org.name.value.as_str(), "host {host}");
                assert_eq!(
                    o.default,
                    snap.org_for_host("unclaimed.invalid")
                        .is_some_and(|d| d.name == org.name)
                );
                for r in &o.routes {
                    let path = sample_path(&r.path);
                    let methods = if r.methods.is_empty() {
                        vec!["PATCH".to_string()]
                    } else {
                        r.methods.clone()
                    };
                    for m in methods {
                        let method = m.parse().expect("method");
                        let found = match org.router.find(&method, &path) {
                            cratopus_core::router::Match::Found(route, _) => route.name.to_string(),
                            _ => "nothing".into(),
                        };
                        assert_eq!(found, r.name, "{m} {path} (pattern {})", r.path);
                    }
                }
                // Each fallback shown is the router's answer: the route, or 405.
                for f in &o.fallbacks {
                    let path = sample_path(&f.path);
                    for m in &f.methods {
                        let method = if m == "*" { "PROPFIND" } else { m.as_str() }.parse().expect("method");
                        let got = match org.router.find(&method, &path) {
                            cratopus_core::router::Match::Found(route, _) => route.name.to_string(),
                            cratopus_core::router::Match::MethodNotAllowed(_) => "405".into(),
                            cratopus_core::router::Match::NotFound => "404".into(),
                        };
                        let want = if f.applies {
                            o.routes[f.to].name.to_string()
                        } else {
                            "405".into()
                        };
                        assert_eq!(got, want, "{m} {path} (pattern {})", f.path);
                    }
                }
            }
            drop(snap);
        });
    }

    const SOLO: &str = "\
organizations:
  - name: solo
    upstreams:
      u:
        targets: [\"mirror://\"]
    routes:
      - {name: blobs, path: \"/blobs/{*key}\", methods: [GET, POST], upstream: u}
      - {name: blobs-get, path: /blobs, methods: [get], upstream: u}
      - {name: docs, path: \"/docs/{*page}\", upstream: u}
      - {name: docs-root, path: /docs, upstream: u}
";

    /// A keyed `/admin/{*rest}` beside an open `/{*rest}`, and the documented `POST /users/me`
    /// beside `GET /users/{id}`, all open.
    const GUARDED: &str = "\
organizations:
  - name: guarded
    upstreams:
      u:
        targets: [\"mirror://\"]
    consumers:
      - id: ops
        keys: [\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"]
    routes:
      - {name: admin, path: \"/admin/{*rest}\", methods: [GET, POST], upstream: u, auth: {api_key: {}}}
      - {name: open, path: \"/{*rest}\", upstream: u}
      - {name: create-me, path: /users/me, methods: [POST], upstream: u}
      - {name: user, path: \"/users/{id}\", methods: [GET], upstream: u}
";

    #[test]
    fn tree_agrees_with_the_compiled_router() {
        assert_matches_router(YAML);
        assert_matches_router(SOLO);
        assert_matches_router(GUARDED);
    }

    #[test]
    fn fallbacks_are_shown_where_they_apply_and_where_they_are_refused() {
        let got = render(&load(GUARDED), false);
        let want = r"organization guarded  hosts: every host (default)
├─ /
│  └─ * → route open → upstream u (round_robin): mirror://  (implicit)
├─ /admin
│  ├─ GET, POST → route admin → upstream u (round_robin): mirror://  (implicit)
│  ├─ * ⇢ 405: route open at /{*rest} has other access rules
│  ├─ /
│  │  ├─ GET, POST → route admin → upstream u (round_robin): mirror://  (implicit)
│  │  └─ * ⇢ 405: route open at /{*rest} has other access rules
│  └─ /{*rest}
│     ├─ GET, POST → route admin → upstream u (round_robin): mirror://
│     └─ * ⇢ 405: route open at /{*rest} has other access rules
├─ /users
│  ├─ /me
│  │  ├─ POST → route create-me → upstream u (round_robin): mirror://
│  │  ├─ GET, HEAD ⇢ route user at /users/{id}
│  │  └─ * ⇢ route open at /{*rest}
│  └─ /{id}
│     ├─ GET → route user → upstream u (round_robin): mirror://
│     └─ POST, * ⇢ route open at /{*rest}
└─ /{*rest}
   └─ * → route open → upstream u (round_robin): mirror://
";
        assert_eq!(got, want, "\n{got}");
        let v: Value = serde_json::from_str(&render(&load(GUARDED), true)).expect("valid JSON");
        assert_eq!(
            v["organizations"][0]["fallbacks"][0],
            json!({"path": "/admin/{*rest}", "methods": ["*"], "route": "open", "route_path": "/{*rest}", "applies": false})
        );
        let warnings: Vec<String> = fallback_warnings(&load(GUARDED))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(
            warnings[0].starts_with("gw.yaml:10:")
                && warnings[0].contains("at `/admin/{*rest}`, methods no route of the organization names")
                && warnings[0].contains("route `open` (`/{*rest}`)"),
            "{warnings:#?}"
        );
    }

    #[test]
    fn a_split_route_shows_its_arms() {
        let yaml = "\
organizations:
  - name: s
    upstreams: {v1: {targets: [\"mirror://\"]}, v2: {targets: [\"mirror://\"]}}
    routes:
      - name: users
        path: /users
        split:
          backends: [{upstream: v1, weight: 99}, {upstream: v2, weight: 1, canary: true, name: next}]
";
        let got = render(&load(yaml), false);
        assert!(
            got.contains("* → route users → split: upstream v1 weight 99, next = upstream v2 weight 1 (canary)\n"),
            "{got}"
        );
        let v: Value = serde_json::from_str(&render(&load(yaml), true)).expect("valid JSON");
        let route = &v["organizations"][0]["routes"][0];
        assert_eq!(route["upstream"], Value::Null);
        assert_eq!(
            route["split"][1],
            json!({"name": "next", "upstream": "v2", "weight": 1, "canary": true})
        );
    }

    #[test]
    fn a_composed_route_shows_its_backend_calls() {
        let yaml = "\
organizations:
  - name: s
    upstreams: {users: {targets: [\"mirror://\"]}, orders: {targets: [\"mirror://\"]}}
    routes:
      - path: /profile/{id}
        upstream: users
        compose:
          backend:
            - {url_pattern: \"/users/{id}\"}
            - {upstream: orders, url_pattern: \"/orders?customer={id}\", method: POST}
";
        let got = render(&load(yaml), false);
        assert!(
            got.contains(
                "* → route /profile/{id} → compose concurrently: GET users /users/{id}, POST orders /orders?customer={id}\n"
            ),
            "{got}"
        );
    }

    #[test]
    fn a_single_organization_without_domains_answers_every_host() {
        let got = render(&load(SOLO), false);
        assert!(
            got.starts_with("organization solo  hosts: every host (default)\n├─ /blobs\n"),
            "{got}"
        );
        let v: Value = serde_json::from_str(&render(&load(SOLO), true)).expect("valid JSON");
        assert_eq!(v["organizations"][0]["default"], true);
    }
}
