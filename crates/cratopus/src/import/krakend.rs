//! `cratopus import krakend`: a KrakenD configuration (`krakend.json`, version 3) as a cratopus
//! gateway.yaml.
//!
//! Every KrakenD endpoint becomes a route with a `compose` section (KrakenD parses and merges
//! every answer unless its encodings are `no-op`, and cratopus's composition has KrakenD's
//! semantics), each distinct backend host list an upstream. KrakenD forwards no header, query
//! string or cookie that an endpoint does not list, so every composition gets the endpoint's
//! `input_headers` and `input_query_strings`, written even when empty: the imported gateway
//! keeps KrakenD's deny-by-default forwarding.
//!
//! What has no equivalent is not guessed at: each such setting is reported with its JSON path
//! and why, and the rest of the file is still converted. The conversion is a pure function of
//! the JSON (no file or network access), so it is tested directly.

use super::yaml::Node;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// The converted config, and every setting left out.
#[derive(Debug)]
pub struct Conversion {
    pub yaml: String,
    pub skipped: Vec<Skipped>,
}

/// A setting that was not converted: where it is in the JSON, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub why: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.why)
    }
}

/// KrakenD's endpoint timeout when the file sets none.
const DEFAULT_TIMEOUT: &str = "2s";

/// Converts a parsed `krakend.json`. Fails only when the document is not a JSON object.
pub fn convert(doc: &Value, source: &str) -> Result<Conversion, String> {
    let root = doc
        .as_object()
        .ok_or_else(|| format!("{source}: a KrakenD configuration is a JSON object"))?;
    let mut cx = Importer::default();
    let gateway = cx.service(root);
    let mut header = format!(
        "Converted from {source} by `cratopus import krakend`.\n\
         KrakenD's semantics carry over: every endpoint is a composition (docs/composition.md),\n\
         and only the headers and query strings an endpoint lists reach its backends.\n\
         Serve it with: cratopus run -c <this file>   (CRATOPUS_BIND overrides the address)"
    );
    if !cx.skipped.is_empty() {
        let _ = write!(
            header,
            "\n\nNot converted ({}; see the list printed by the import):",
            cx.skipped.len()
        );
        for s in &cx.skipped {
            let _ = write!(header, "\n- {s}");
        }
    }
    Ok(Conversion {
        yaml: super::yaml::write(&header, &gateway),
        skipped: cx.skipped,
    })
}

/// One upstream made from a backend host list (and the breaker it carries).
struct Upstream {
    /// The hosts and breaker, as the identity of the upstream.
    key: String,
    name: String,
    node: Node,
}

#[derive(Default)]
struct Importer {
    skipped: Vec<Skipped>,
    upstreams: Vec<Upstream>,
    /// Named policies of the organization (client rate limits), in order.
    policies: Vec<(String, Node)>,
    /// Policies every route lists (the service's client rate limit).
    every_route_policies: Vec<String>,
    /// The service's `host`.
    hosts: Option<(Vec<String>, String)>,
    /// The service's `timeout`.
    timeout: Option<String>,
    /// The service's `output_encoding`.
    output_encoding: Option<String>,
    /// The service's `cache_ttl`, in seconds.
    cache_ttl: Option<u64>,
    /// A backend of the endpoint being converted asked for `qos/http-cache` (its path).
    http_cache: Option<String>,
}

impl Importer {
    fn skip(&mut self, path: impl Into<String>, why: impl Into<String>) {
        self.skipped.push(Skipped {
            path: path.into(),
            why: why.into(),
        });
    }

    /// The service level: the listener, defaults, the organization with its routes.
    fn service(&mut self, root: &Map<String, Value>) -> Node {
        let mut gateway = Node::map();
        let mut org = Node::map();
        let name = root
            .get("name")
            .and_then(Value::as_str)
            .map(slug)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "krakend".to_string());
        org.set("name", Node::str(name));

        let mut bind_ip = "0.0.0.0".to_string();
        let mut port = 8080u64;
        let mut cors = None;
        let mut org_limit = None;
        let mut echo = false;
        let mut debug = false;
        let mut health_path = None;
        let mut header_read_timeout = None;
        for (k, v) in root {
            let here = format!("$.{k}");
            match k.as_str() {
                "$schema" | "@comment" | "name" | "endpoints" => {}
                "version" => {
                    if v.as_u64() != Some(3) {
                        self.skip(here, "only version 3 files are read; converted as if it were 3");
                    }
                }
                "port" => match v.as_u64() {
                    Some(p) if p <= 65535 => port = p,
                    _ => self.skip(here, "not a port number"),
                },
                "listen_ip" => match v.as_str() {
                    Some(ip) => bind_ip = ip.to_string(),
                    None => self.skip(here, "not a string"),
                },
                "host" => self.hosts = self.host_list(&here, v),
                "timeout" => self.timeout = self.duration(&here, v),
                "output_encoding" => self.output_encoding = v.as_str().map(str::to_string),
                "echo_endpoint" => echo = v.as_bool() == Some(true),
                "debug_endpoint" => debug = v.as_bool() == Some(true),
                "read_header_timeout" => header_read_timeout = self.duration(&here, v),
                "cache_ttl" => self.cache_ttl = self.max_age(&here, v),
                "extra_config" => {
                    for (here, ns, cfg) in self.namespaces(&here, v) {
                        match ns {
                            "security/cors" => cors = Some(self.cors(&here, cfg)),
                            "qos/ratelimit/service" => {
                                let (limit, client) = self.rate_limits(&here, cfg);
                                org_limit = limit;
                                if let Some(client) = client {
                                    let name = "service-client-rate".to_string();
                                    self.policies.push((name.clone(), client));
                                    self.every_route_policies.push(name);
                                }
                            }
                            "router" => self.router(&here, cfg, &mut health_path),
                            _ => self.skip(here, unsupported_namespace(ns)),
                        }
                    }
                }
                _ => self.skip(here, "no cratopus equivalent"),
            }
        }

        let mut listener = Node::map();
        listener.set("name", Node::str("http"));
        listener.set("bind", Node::str(format!("${{CRATOPUS_BIND:-{bind_ip}:{port}}}")));
        gateway.set("listeners", Node::Seq(vec![listener]));
        if let Some(p) = health_path {
            gateway.set("health_path", Node::str(p));
        }
        if let Some(t) = header_read_timeout {
            let mut limits = Node::map();
            limits.set("header_read_timeout", Node::str(t));
            gateway.set("limits", limits);
        }

        if let Some(c) = cors {
            org.set("cors", c);
        }
        if let Some(l) = org_limit {
            org.set_commented(
                "rate_limit",
                l,
                Some("KrakenD's service rate limit (qos/ratelimit/service), over every route".into()),
            );
        }

        let mut routes = Vec::new();
        if echo {
            routes.push(self.mirror_route("/__echo/{*rest}", "KrakenD's echo_endpoint: the built-in mirror reflects each request as JSON (its field names are cratopus's: method, path, args, headers, body)"));
        }
        if debug {
            routes.push(self.mirror_route(
                "/__debug/{*rest}",
                "KrakenD's debug_endpoint: the built-in mirror answers every request",
            ));
        }
        match root.get("endpoints") {
            Some(Value::Array(eps)) => {
                for (i, ep) in eps.iter().enumerate() {
                    if let Some(r) = self.endpoint(&format!("$.endpoints[{i}]"), ep) {
                        routes.push(r);
                    }
                }
            }
            Some(_) => self.skip("$.endpoints", "not a list"),
            None => {}
        }

        if !self.policies.is_empty() {
            let mut p = Node::map();
            for (name, limit) in std::mem::take(&mut self.policies) {
                let mut pol = Node::map();
                pol.set("rate_limit", limit);
                p.set(&name, pol);
            }
            org.set("policies", p);
        }
        let mut ups = Node::map();
        for u in std::mem::take(&mut self.upstreams) {
            ups.set(&u.name, u.node);
        }
        org.set("upstreams", ups);
        org.set("routes", Node::Seq(routes));
        gateway.set("organizations", Node::Seq(vec![org]));
        gateway
    }

    /// The namespaces of an `extra_config`, each with its JSON path (`…["qos/…"]`).
    fn namespaces<'v>(&mut self, here: &str, v: &'v Value) -> Vec<(String, &'v str, &'v Value)> {
        let Some(extra) = v.as_object() else {
            self.skip(here, "not an object");
            return Vec::new();
        };
        extra
            .iter()
            .map(|(ns, cfg)| (format!("{here}[\"{ns}\"]"), ns.as_str(), cfg))
            .collect()
    }

    /// `router` settings of the service.
    fn router(&mut self, here: &str, cfg: &Value, health_path: &mut Option<String>) {
        let Some(cfg) = cfg.as_object() else {
            return self.skip(here, "not an object");
        };
        for (k, v) in cfg {
            let at = format!("{here}.{k}");
            match k.as_str() {
                "health_path" => *health_path = v.as_str().map(str::to_string),
                "disable_health" if v.as_bool() == Some(true) => {
                    self.skip(at, "cratopus always answers its health_path")
                }
                "disable_health" => {}
                "return_error_msg" => self.skip(
                    at,
                    "cratopus answers its own errors with a JSON body ({\"error\":…}); a backend's error is shown with a backend's return_error_details or return_error_code",
                ),
                "logger_skip_paths" | "disable_access_log" => self.skip(
                    at,
                    "the traffic log writes every request (the health path is never logged)",
                ),
                _ => self.skip(at, "no cratopus equivalent"),
            }
        }
    }

    fn mirror_route(&mut self, path: &str, comment: &str) -> Node {
        let name = self.upstream_for(&["mirror://".to_string()], None, "mirror");
        let mut r = Node::map();
        r.set_commented("path", Node::str(path), Some(comment.to_string()));
        r.set("upstream", Node::str(name));
        r
    }

    /// One endpoint as a route; `None` when it cannot be served at all.
    fn endpoint(&mut self, here: &str, ep: &Value) -> Option<Node> {
        let Some(ep) = ep.as_object() else {
            self.skip(here, "not an object");
            return None;
        };
        let Some(path) = ep.get("endpoint").and_then(Value::as_str) else {
            self.skip(format!("{here}.endpoint"), "missing: the endpoint is left out");
            return None;
        };
        let path = route_path(path);
        let mut route = Node::map();
        let comment = ep.get("@comment").and_then(Value::as_str).map(str::to_string);
        route.set_commented("path", Node::str(&path), comment);
        let method = ep
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET")
            .to_ascii_uppercase();
        route.set("methods", Node::strs([method]));

        let mut timeout = self.timeout.clone();
        let mut compose = Node::map();
        let mut input_headers: Vec<String> = Vec::new();
        let mut input_query: Vec<String> = Vec::new();
        let mut output_encoding = self.output_encoding.clone();
        let mut auth = None;
        let mut authorize = None;
        let mut validate = None;
        let mut limit = None;
        let mut policies = self.every_route_policies.clone();
        let mut sequential = false;
        let mut flatmap = None;
        let mut concurrent = None;
        let mut cache_ttl = self.cache_ttl;
        for (k, v) in ep {
            let at = format!("{here}.{k}");
            match k.as_str() {
                "endpoint" | "method" | "@comment" | "backend" => {}
                "timeout" => timeout = self.duration(&at, v).or(timeout),
                "output_encoding" => output_encoding = v.as_str().map(str::to_string),
                "input_headers" | "headers_to_pass" => input_headers = strings(v),
                "input_query_strings" | "querystring_params" => input_query = strings(v),
                "cache_ttl" => cache_ttl = self.max_age(&at, v),
                "concurrent_calls" => match v.as_u64() {
                    Some(n) if (1..=16).contains(&n) => concurrent = Some(n),
                    _ => self.skip(at, "cratopus makes 1 to 16 concurrent calls"),
                },
                "extra_config" => {
                    for (at, ns, cfg) in self.namespaces(&at, v) {
                        match ns {
                            "proxy" => self.proxy(&at, cfg, &mut sequential, &mut flatmap),
                            "validation/json-schema" => {
                                let mut val = Node::map();
                                val.set("body_schema", Node::from_json(cfg));
                                validate = Some(val);
                            }
                            "auth/validator" => {
                                let (a, z) = self.jwt(&at, cfg);
                                auth = Some(a);
                                authorize = z;
                            }
                            "qos/ratelimit/router" => {
                                let (l, client) = self.rate_limits(&at, cfg);
                                limit = l;
                                if let Some(c) = client {
                                    let name = format!("client-rate-{}", self.policies.len() + 1);
                                    self.policies.push((name.clone(), c));
                                    policies.push(name);
                                }
                            }
                            _ => self.skip(at, unsupported_namespace(ns)),
                        }
                    }
                }
                _ => self.skip(at, "no cratopus equivalent"),
            }
        }
        route.set(
            "timeout",
            Node::str(timeout.unwrap_or_else(|| DEFAULT_TIMEOUT.to_string())),
        );
        if let Some(a) = auth {
            route.set("auth", a);
        }
        if let Some(z) = authorize {
            route.set("authorize", z);
        }
        if let Some(l) = limit {
            route.set("rate_limit", l);
        }
        if !policies.is_empty() {
            route.set("policies", Node::strs(policies));
        }
        if let Some(v) = validate {
            route.set("validate", v);
        }

        compose.set_commented(
            "input_headers",
            Node::strs(&input_headers),
            Some("KrakenD forwards only the listed headers and query strings".into()),
        );
        compose.set("input_query_strings", Node::strs(&input_query));
        if sequential {
            compose.set("sequential", Node::Bool(true));
        }
        if let Some(n) = concurrent {
            compose.set("concurrent_calls", Node::int(n));
        }
        let output_encoding_is_noop = output_encoding.as_deref() == Some("no-op");
        if let Some(enc) = output_encoding {
            compose.set("output_encoding", Node::str(enc));
        }
        if let Some(f) = flatmap {
            compose.set("flatmap_filter", f);
        }
        let mut backends = Vec::new();
        match ep.get("backend") {
            Some(Value::Array(list)) => {
                for (i, b) in list.iter().enumerate() {
                    if let Some(b) = self.backend(&format!("{here}.backend[{i}]"), b) {
                        backends.push(b);
                    }
                }
            }
            _ => self.skip(format!("{here}.backend"), "missing or not a list"),
        }
        if backends.is_empty() {
            self.skip(here, "no backend could be converted: the endpoint is left out");
            return None;
        }
        // KrakenD's cache_ttl is the Cache-Control its answer carries (for clients and CDNs).
        if let Some(ttl) = cache_ttl.filter(|t| *t > 0) {
            let mut set = Node::map();
            set.set("Cache-Control", Node::str(format!("public, max-age={ttl}")));
            let mut headers = Node::map();
            headers.set("set", set);
            let mut modify = Node::map();
            modify.set("response_headers", headers);
            route.set_commented("modify", modify, Some("KrakenD's cache_ttl".into()));
        }
        // KrakenD's qos/http-cache keeps backend answers by their own Cache-Control: the
        // route's cache does that with a pass-through answer; a composed answer carries no
        // backend's Cache-Control, so there it needs a `ttl` only a person can choose.
        if let Some(at) = self.http_cache.take() {
            if output_encoding_is_noop {
                route.set("cache", Node::map());
            } else {
                self.skip(
                    at,
                    "cratopus caches the endpoint's answer (the route's `cache`), and a composed answer carries no backend Cache-Control: set `cache: {ttl: …}` on the route",
                );
            }
        }
        // KrakenD passes a `no-op` endpoint's one backend through whatever that backend's
        // encoding says; cratopus wants it written on both.
        if output_encoding_is_noop && let [Node::Map(entries)] = backends.as_mut_slice() {
            match entries.iter_mut().find(|e| e.key == "encoding") {
                Some(e) => e.value = Node::str("no-op"),
                None => entries.push(super::yaml::Entry {
                    key: "encoding".into(),
                    value: Node::str("no-op"),
                    comment: None,
                }),
            }
        }
        compose.set("backend", Node::Seq(backends));
        route.set("compose", compose);
        Some(route)
    }

    /// The `proxy` namespace of an endpoint or a backend.
    fn proxy(&mut self, here: &str, cfg: &Value, sequential: &mut bool, flatmap: &mut Option<Node>) {
        let Some(cfg) = cfg.as_object() else {
            return self.skip(here, "not an object");
        };
        for (k, v) in cfg {
            let at = format!("{here}.{k}");
            match k.as_str() {
                "sequential" => *sequential = v.as_bool() == Some(true),
                "flatmap_filter" => *flatmap = Some(Node::from_json(v)),
                "static" => self.skip(at, "static responses are not supported"),
                "shadow" => self.skip(at, "use the route's `shadow` with an upstream of its own"),
                _ => self.skip(at, "no cratopus equivalent"),
            }
        }
    }

    /// One backend of an endpoint as a `compose.backend` item.
    fn backend(&mut self, here: &str, b: &Value) -> Option<Node> {
        let Some(b) = b.as_object() else {
            self.skip(here, "not an object");
            return None;
        };
        let hosts = match b.get("host") {
            Some(v) => self.host_list(&format!("{here}.host"), v),
            None => self.hosts.clone(),
        };
        let Some((hosts, hint)) = hosts else {
            self.skip(
                here,
                "no host (neither the backend's nor the service's): the backend is left out",
            );
            return None;
        };
        let mut node = Node::map();
        let comment = b.get("@comment").and_then(Value::as_str).map(str::to_string);
        let url = b.get("url_pattern").and_then(Value::as_str).unwrap_or("/");
        node.set_commented("url_pattern", Node::str(url), comment);
        let mut breaker = None;
        let mut sequential_ignored = false;
        let mut flatmap = None;
        for (k, v) in b {
            let at = format!("{here}.{k}");
            match k.as_str() {
                "url_pattern" | "host" | "@comment" | "disable_host_sanitize" => {}
                "method" => {
                    if let Some(m) = v.as_str() {
                        node.set("method", Node::str(m.to_ascii_uppercase()));
                    }
                }
                "encoding" | "group" | "target" => {
                    if let Some(s) = v.as_str() {
                        node.set(k, Node::str(s));
                    }
                }
                "allow" | "deny" => node.set(k, Node::strs(strings(v))),
                "mapping" => node.set("mapping", Node::from_json(v)),
                "is_collection" => node.set("is_collection", Node::Bool(v.as_bool() == Some(true))),
                "sd" => {
                    if v.as_str() != Some("static") {
                        self.skip(at, "service discovery other than `static` is not converted");
                    }
                }
                "extra_config" => {
                    for (at, ns, cfg) in self.namespaces(&at, v) {
                        match ns {
                            "proxy" => self.proxy(&at, cfg, &mut sequential_ignored, &mut flatmap),
                            "backend/http" => self.backend_http(&at, cfg, &mut node),
                            "qos/circuit-breaker" => breaker = self.breaker(&at, cfg),
                            "qos/ratelimit/proxy" => self.proxy_rate_limit(&at, cfg, &mut node),
                            "qos/http-cache" => self.http_cache = Some(at),
                            // KrakenD's own notation is cratopus's `martian` (docs/composition.md).
                            "modifier/martian" => node.set("martian", Node::from_json(&without_comments(cfg))),
                            _ => self.skip(at, unsupported_namespace(ns)),
                        }
                    }
                }
                _ => self.skip(at, "no cratopus equivalent"),
            }
        }
        if sequential_ignored {
            self.skip(
                format!("{here}.extra_config[\"proxy\"].sequential"),
                "sequential is an endpoint setting",
            );
        }
        if let Some(f) = flatmap {
            node.set("flatmap_filter", f);
        }
        let upstream = self.upstream_for(&hosts, breaker, &hint);
        // The upstream first, as people read it.
        if let Node::Map(entries) = &mut node {
            entries.insert(
                0,
                super::yaml::Entry {
                    key: "upstream".into(),
                    value: Node::str(upstream),
                    comment: None,
                },
            );
        }
        Some(node)
    }

    /// `qos/ratelimit/proxy`: the same keys on the backend's `rate_limit`.
    fn proxy_rate_limit(&mut self, here: &str, cfg: &Value, node: &mut Node) {
        let Some(cfg) = cfg.as_object() else {
            return self.skip(here, "not an object");
        };
        let mut l = Node::map();
        for (k, v) in cfg {
            let at = format!("{here}.{k}");
            match k.as_str() {
                "max_rate" => match v.as_f64() {
                    Some(r) if r > 0.0 => l.set("max_rate", Node::Num(v.as_number().cloned().unwrap_or(1.into()))),
                    _ => self.skip(at, "not a positive rate"),
                },
                "capacity" => match v.as_u64() {
                    Some(c) if c >= 1 => l.set("capacity", Node::int(c)),
                    _ => self.skip(at, "not a positive integer"),
                },
                "every" => {
                    if let Some(d) = self.duration(&at, v) {
                        l.set("every", Node::str(d));
                    }
                }
                _ => self.skip(at, "no cratopus equivalent"),
            }
        }
        if matches!(&l, Node::Map(e) if e.iter().any(|e| e.key == "max_rate")) {
            node.set("rate_limit", l);
        }
    }

    fn backend_http(&mut self, here: &str, cfg: &Value, node: &mut Node) {
        let Some(cfg) = cfg.as_object() else {
            return self.skip(here, "not an object");
        };
        for (k, v) in cfg {
            match (k.as_str(), v) {
                ("return_error_details", Value::String(s)) => node.set(k, Node::str(s)),
                ("return_error_code", Value::Bool(b)) => node.set(k, Node::Bool(*b)),
                _ => self.skip(format!("{here}.{k}"), "no cratopus equivalent"),
            }
        }
    }

    /// `qos/circuit-breaker`: KrakenD counts consecutive errors per backend; cratopus's breaker
    /// is per target of the upstream, with the same consecutive count.
    fn breaker(&mut self, here: &str, cfg: &Value) -> Option<Node> {
        let cfg = cfg.as_object()?;
        let mut b = Node::map();
        for (k, v) in cfg {
            let at = format!("{here}.{k}");
            match k.as_str() {
                "max_errors" => match v.as_u64() {
                    Some(n) if n >= 1 => b.set("consecutive_failures", Node::int(n)),
                    _ => self.skip(at, "not a positive integer"),
                },
                "timeout" => match v.as_u64() {
                    Some(n) => b.set("open_for", Node::str(format!("{n}s"))),
                    None => self.skip(at, "not a number of seconds"),
                },
                "interval" => match v.as_u64() {
                    Some(n) if n >= 1 => b.set("window", Node::str(format!("{n}s"))),
                    _ => self.skip(at, "not a number of seconds"),
                },
                // Every state change is logged by cratopus; the name is the upstream's.
                "name" | "log_status_change" => {}
                _ => self.skip(at, "no cratopus equivalent"),
            }
        }
        // KrakenD opens on consecutive errors only: an error rate of 100% never opens first.
        b.set(
            "error_rate",
            Node::Num(serde_json::Number::from_f64(1.0).unwrap_or(1.into())),
        );
        b.set("half_open_probes", Node::int(1));
        Some(b)
    }

    /// The upstream for a host list and breaker, made once per distinct pair.
    fn upstream_for(&mut self, hosts: &[String], breaker: Option<Node>, hint: &str) -> String {
        let key = format!("{hosts:?}|{breaker:?}");
        if let Some(u) = self.upstreams.iter().find(|u| u.key == key) {
            return u.name.clone();
        }
        let base = if breaker.is_some() {
            format!("{hint}_cb")
        } else {
            hint.to_string()
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.upstreams.iter().any(|u| u.name == name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        let mut node = Node::map();
        node.set("targets", Node::strs(hosts));
        if let Some(b) = breaker {
            node.set("circuit_breaker", b);
        }
        self.upstreams.push(Upstream {
            key,
            name: name.clone(),
            node,
        });
        name
    }

    /// A KrakenD host list as targets, and a name for the upstream.
    fn host_list(&mut self, here: &str, v: &Value) -> Option<(Vec<String>, String)> {
        let list = match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(_) => strings(v),
            _ => {
                self.skip(here, "not a list of hosts");
                return None;
            }
        };
        let mut targets = Vec::new();
        for (i, h) in list.iter().enumerate() {
            let with_scheme = if h.contains("://") {
                h.clone()
            } else {
                format!("http://{h}")
            };
            let (scheme, rest) = with_scheme.split_once("://").unwrap_or(("http", &with_scheme));
            if scheme != "http" && scheme != "https" {
                self.skip(format!("{here}[{i}]"), format!("scheme `{scheme}` is not supported"));
                continue;
            }
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            if !path.is_empty() {
                self.skip(
                    format!("{here}[{i}]"),
                    format!("the path `/{path}` of a host is not kept: put it in each backend's url_pattern"),
                );
            }
            targets.push(format!("{scheme}://{authority}"));
        }
        if targets.is_empty() {
            return None;
        }
        let first = targets[0].split_once("://").map_or(targets[0].as_str(), |x| x.1);
        Some((targets.clone(), slug(first)))
    }

    /// A KrakenD duration as whole seconds (for a `max-age`).
    fn max_age(&mut self, here: &str, v: &Value) -> Option<u64> {
        let secs = go_seconds(v);
        if secs.is_none() {
            self.skip(here, "not a duration");
        }
        secs.map(|s| s.round() as u64)
    }

    /// A KrakenD (Go) duration as a cratopus one.
    fn duration(&mut self, here: &str, v: &Value) -> Option<String> {
        match go_seconds(v) {
            Some(secs) => Some(cratopus_duration(secs)),
            None => {
                self.skip(here, "not a duration");
                None
            }
        }
    }

    fn cors(&mut self, here: &str, cfg: &Value) -> Node {
        let mut c = Node::map();
        let Some(cfg) = cfg.as_object() else {
            self.skip(here, "not an object");
            return c;
        };
        for (k, v) in cfg {
            let at = format!("{here}.{k}");
            match k.as_str() {
                "allow_origins" | "allow_methods" | "allow_headers" | "expose_headers" => {
                    c.set(k, Node::strs(strings(v)))
                }
                "allow_credentials" => c.set(k, Node::Bool(v.as_bool() == Some(true))),
                "max_age" => {
                    if let Some(d) = self.duration(&at, v) {
                        c.set("max_age", Node::str(d));
                    }
                }
                "debug" => {}
                _ => self.skip(at, "no cratopus equivalent"),
            }
        }
        c
    }

    /// KrakenD's `max_rate` (everyone together) and `client_max_rate` (each client) as two
    /// cratopus rate limits: `(shared, per client)`.
    fn rate_limits(&mut self, here: &str, cfg: &Value) -> (Option<Node>, Option<Node>) {
        let Some(cfg) = cfg.as_object() else {
            self.skip(here, "not an object");
            return (None, None);
        };
        let every = match cfg.get("every") {
            Some(v) => self.duration(&format!("{here}.every"), v),
            None => None,
        }
        .unwrap_or_else(|| "1s".to_string());
        let limit = |rate: Option<f64>, burst: Option<u64>, key: String| -> Option<Node> {
            let rate = rate.filter(|r| *r > 0.0)?;
            let mut one = Node::map();
            // A fractional rate (0.5 per second) becomes a whole one over a longer period.
            let (rate, per) = whole_rate(rate, &every);
            one.set("rate", Node::int(rate));
            one.set("per", Node::str(per));
            if let Some(b) = burst.filter(|b| *b > 0) {
                one.set("burst", Node::int(b));
            }
            let mut l = Node::map();
            l.set("limits", Node::Seq(vec![one]));
            l.set("key", Node::str(key));
            Some(l)
        };
        let shared = limit(
            cfg.get("max_rate").and_then(Value::as_f64),
            cfg.get("capacity").and_then(Value::as_u64),
            "route".into(),
        );
        let strategy = cfg.get("strategy").and_then(Value::as_str).unwrap_or("ip");
        let client_key = match strategy {
            "ip" => Some("client_ip".to_string()),
            "header" => match cfg.get("key").and_then(Value::as_str) {
                Some(h) => Some(format!("header:{h}")),
                None => {
                    self.skip(format!("{here}.key"), "a `header` strategy needs the header's name");
                    None
                }
            },
            other => {
                self.skip(
                    format!("{here}.strategy"),
                    format!("strategy `{other}`: cratopus counts per client address, header, consumer or JWT claim"),
                );
                None
            }
        };
        let client = client_key.and_then(|key| {
            limit(
                cfg.get("client_max_rate").and_then(Value::as_f64),
                cfg.get("client_capacity").and_then(Value::as_u64),
                key,
            )
        });
        for k in cfg.keys() {
            if !matches!(
                k.as_str(),
                "max_rate" | "capacity" | "client_max_rate" | "client_capacity" | "strategy" | "key" | "every"
            ) {
                self.skip(format!("{here}.{k}"), "no cratopus equivalent");
            }
        }
        (shared, client)
    }

    /// `auth/validator`: JWT validation as `auth.jwt`, roles and scopes as `authorize`.
    fn jwt(&mut self, here: &str, cfg: &Value) -> (Node, Option<Node>) {
        let mut jwt = Node::map();
        let mut authorize = Node::map();
        let empty = Map::new();
        let cfg = cfg.as_object().unwrap_or(&empty);
        let roles_key = cfg.get("roles_key").and_then(Value::as_str).unwrap_or("roles");
        let scopes_key = cfg.get("scopes_key").and_then(Value::as_str).unwrap_or("scope");
        let matcher = cfg.get("scopes_matcher").and_then(Value::as_str).unwrap_or("any");
        for (k, v) in cfg {
            let at = format!("{here}.{k}");
            match k.as_str() {
                "alg" => {
                    if let Some(a) = v.as_str() {
                        jwt.set("algorithms", Node::strs([a]));
                    }
                }
                "jwk_url" => {
                    if let Some(u) = v.as_str() {
                        jwt.set("jwks_url", Node::str(u));
                    }
                }
                "issuer" => {
                    if let Some(i) = v.as_str() {
                        jwt.set("issuer", Node::str(i));
                    }
                }
                "audience" => jwt.set("audience", Node::strs(strings(v))),
                "propagate_claims" => {
                    let mut fc = Node::map();
                    for pair in v.as_array().into_iter().flatten() {
                        if let [Value::String(claim), Value::String(header)] =
                            pair.as_array().map(Vec::as_slice).unwrap_or(&[])
                        {
                            fc.set(claim, Node::str(header));
                        }
                    }
                    jwt.set("forward_claims", fc);
                }
                "roles" => {
                    let roles = strings(v);
                    if roles_key == "roles" {
                        authorize.set("roles", Node::strs(roles));
                    } else if !roles_key.contains('.') {
                        let mut claims = Node::map();
                        claims.set(roles_key, Node::strs(roles));
                        authorize.set("claims", claims);
                    } else {
                        self.skip(at, format!("roles in the nested claim `{roles_key}` are not checked"));
                    }
                }
                "scopes" => {
                    let scopes = strings(v);
                    if !matches!(scopes_key, "scope" | "scp") {
                        self.skip(at, format!("scopes are read from `scope` or `scp`, not `{scopes_key}`"));
                    } else if matcher == "all" || scopes.len() == 1 {
                        authorize.set("scopes", Node::strs(scopes));
                    } else {
                        self.skip(
                            at,
                            "`scopes_matcher: any` over several scopes: cratopus requires all listed scopes",
                        );
                    }
                }
                "roles_key"
                | "scopes_key"
                | "scopes_matcher"
                | "cache"
                | "cache_duration"
                | "operation_debug"
                | "disable_jwk_security"
                | "@comment" => {}
                "jwk_local_path" => self.skip(at, "a local JWK set: convert the key to PEM and use `public_key_file`"),
                _ => self.skip(at, "no cratopus equivalent"),
            }
        }
        let mut auth = Node::map();
        auth.set("jwt", jwt);
        let authorize = match &authorize {
            Node::Map(e) if e.is_empty() => None,
            _ => Some(authorize),
        };
        (auth, authorize)
    }
}

/// A route pattern from a KrakenD endpoint: the same `{param}` syntax; KrakenD's trailing
/// `/*` wildcard becomes a catch-all parameter.
fn route_path(endpoint: &str) -> String {
    match endpoint.strip_suffix("/*") {
        Some(base) => format!("{base}/{{*rest}}"),
        None => endpoint.to_string(),
    }
}

/// `v` without its `@comment` keys, at any depth (KrakenD ignores them; cratopus refuses
/// unknown keys).
fn without_comments(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "@comment")
                .map(|(k, v)| (k.clone(), without_comments(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_comments).collect()),
        other => other.clone(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// A name for an upstream or organization from a host or title: letters, digits and `_`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// Seconds of a KrakenD duration value: a Go duration string, or a bare number of
/// nanoseconds (Go's encoding of a duration).
fn go_seconds(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => go_duration(s),
        Value::Number(n) => n.as_u64().map(|ns| ns as f64 / 1e9),
        _ => None,
    }
}

/// Seconds of a Go duration (`1h30m`, `100ms`, `1.5s`).
fn go_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    if s == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        let after = &rest[num_end..];
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let mult = match &after[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &after[unit_end..];
    }
    Some(total)
}

/// Seconds as a cratopus duration: whole hours, minutes or seconds when exact, else ms.
fn cratopus_duration(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as u64;
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A rate of `rate` per `every` as whole requests per a period: `0.5` per `1s` is 1 per `2s`.
fn whole_rate(rate: f64, every: &str) -> (u64, String) {
    if rate.fract() == 0.0 {
        return (rate as u64, every.to_string());
    }
    let secs = go_duration(every).unwrap_or(1.0);
    let per = secs / rate;
    (1, cratopus_duration(per))
}

/// Why a namespace of `extra_config` is not converted.
fn unsupported_namespace(ns: &str) -> String {
    let why = match ns {
        ns if ns.starts_with("telemetry/") => {
            "telemetry is configured in gateway.yaml (`traffic_log`, `tracing`, the admin API's /metrics)"
        }
        "security/http" => "security headers: set them with the route's `modify`",
        "auth/api-keys" => "API keys: define consumers with `keys` and `auth.api_key`",
        "plugin/http-server" | "plugin/req-resp-modifier" | "plugin/http-client" => "Go plugins cannot run in cratopus",
        "modifier/lua-proxy" | "modifier/lua-backend" | "modifier/lua-endpoint" => "Lua scripts are not supported",
        "documentation/openapi" => "documentation only",
        _ => "no cratopus equivalent",
    };
    format!("`{ns}`: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(doc: Value) -> (serde_json::Value, Vec<Skipped>) {
        let c = convert(&doc, "krakend.json").expect("converts");
        let back: serde_json::Value = serde_saphyr::from_str(&c.yaml).unwrap_or_else(|e| panic!("{e}\n{}", c.yaml));
        (back, c.skipped)
    }

    #[test]
    fn go_durations_become_cratopus_durations() {
        assert_eq!(go_duration("1h30m").map(cratopus_duration).as_deref(), Some("90m"));
        assert_eq!(go_duration("100ms").map(cratopus_duration).as_deref(), Some("100ms"));
        assert_eq!(go_duration("1.5s").map(cratopus_duration).as_deref(), Some("1500ms"));
        assert_eq!(go_duration("12h").map(cratopus_duration).as_deref(), Some("12h"));
        assert_eq!(go_duration("soon"), None);
        assert_eq!(whole_rate(0.5, "1s"), (1, "2s".to_string()));
        assert_eq!(whole_rate(3.0, "1m"), (3, "1m".to_string()));
    }

    #[test]
    fn endpoints_become_compose_routes_with_krakends_forwarding_and_defaults() {
        let (y, skipped) = yaml(json!({
            "version": 3, "port": 9000, "host": ["http://api.test:8000"],
            "endpoints": [{
                "endpoint": "/users/{id}", "input_headers": ["Accept"],
                "backend": [
                    {"url_pattern": "/users/{id}", "group": "u", "@comment": "the user"},
                    {"url_pattern": "/x", "host": ["other:81"], "allow": ["a.b"], "mapping": {"a": "b"},
                     "extra_config": {"proxy": {"flatmap_filter": [{"type": "del", "args": ["a"]}]},
                                      "backend/http": {"return_error_code": true}}}
                ]
            }]
        }));
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(y["listeners"][0]["bind"], "${CRATOPUS_BIND:-0.0.0.0:9000}");
        let org = &y["organizations"][0];
        assert_eq!(
            org["upstreams"]["api_test_8000"]["targets"],
            json!(["http://api.test:8000"])
        );
        assert_eq!(org["upstreams"]["other_81"]["targets"], json!(["http://other:81"]));
        let r = &org["routes"][0];
        assert_eq!(r["path"], "/users/{id}");
        assert_eq!(r["methods"], json!(["GET"]));
        assert_eq!(r["timeout"], "2s");
        assert_eq!(r["compose"]["input_headers"], json!(["Accept"]));
        assert_eq!(r["compose"]["input_query_strings"], json!([]));
        let b = &r["compose"]["backend"];
        assert_eq!(
            b[0],
            json!({"upstream": "api_test_8000", "url_pattern": "/users/{id}", "group": "u"})
        );
        assert_eq!(
            b[1],
            json!({"upstream": "other_81", "url_pattern": "/x", "allow": ["a.b"], "mapping": {"a": "b"},
                   "return_error_code": true, "flatmap_filter": [{"type": "del", "args": ["a"]}]})
        );
    }

    #[test]
    fn security_limits_and_breakers_are_converted_and_the_rest_reported_with_its_path() {
        let (y, skipped) = yaml(json!({
            "version": 3, "host": ["http://b:1"], "timeout": "1s",
            "extra_config": {
                "security/cors": {"allow_origins": ["*"], "max_age": "12h"},
                "telemetry/logging": {"level": "DEBUG"}
            },
            "endpoints": [{
                "endpoint": "/r1", "method": "post",
                "extra_config": {
                    "qos/ratelimit/router": {"max_rate": 100, "client_max_rate": 1, "client_capacity": 5,
                                             "strategy": "header", "key": "Authorization"},
                    "auth/validator": {"alg": "RS256", "jwk_url": "https://id.test/jwks", "audience": ["a"],
                                       "roles": ["admin"], "propagate_claims": [["sub", "x-user"]]},
                    "validation/json-schema": {"type": "object", "required": ["name"]}
                },
                "backend": [{"url_pattern": "/ep", "extra_config": {
                    "qos/circuit-breaker": {"interval": 60, "max_errors": 2, "timeout": 5, "name": "x"},
                    "qos/ratelimit/proxy": {"max_rate": 3},
                    "modifier/martian": {"header.Modifier": {"scope": ["request"], "name": "X-A", "value": "1", "@comment": "c"}},
                    "qos/unknown": {}
                }}]
            }]
        }));
        let org = &y["organizations"][0];
        assert_eq!(org["cors"], json!({"allow_origins": ["*"], "max_age": "12h"}));
        let r = &org["routes"][0];
        assert_eq!(r["methods"], json!(["POST"]));
        assert_eq!(r["timeout"], "1s");
        assert_eq!(
            r["rate_limit"],
            json!({"limits": [{"rate": 100, "per": "1s"}], "key": "route"})
        );
        assert_eq!(r["policies"], json!(["client-rate-1"]));
        assert_eq!(
            org["policies"]["client-rate-1"]["rate_limit"],
            json!({"limits": [{"rate": 1, "per": "1s", "burst": 5}], "key": "header:Authorization"})
        );
        assert_eq!(
            r["auth"]["jwt"],
            json!({"algorithms": ["RS256"], "jwks_url": "https://id.test/jwks", "audience": ["a"],
                   "forward_claims": {"sub": "x-user"}})
        );
        assert_eq!(r["authorize"], json!({"roles": ["admin"]}));
        assert_eq!(r["validate"]["body_schema"]["required"], json!(["name"]));
        let up = &org["upstreams"]["b_1_cb"];
        assert_eq!(up["circuit_breaker"]["consecutive_failures"], 2);
        assert_eq!(up["circuit_breaker"]["open_for"], "5s");
        assert_eq!(r["compose"]["backend"][0]["upstream"], "b_1_cb");
        assert_eq!(r["compose"]["backend"][0]["rate_limit"], json!({"max_rate": 3}));
        assert_eq!(
            r["compose"]["backend"][0]["martian"],
            json!({"header.Modifier": {"scope": ["request"], "name": "X-A", "value": "1"}})
        );
        let paths: Vec<&str> = skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.extra_config[\"telemetry/logging\"]",
                "$.endpoints[0].backend[0].extra_config[\"qos/unknown\"]"
            ]
        );
    }

    #[test]
    fn cache_ttl_becomes_the_answers_cache_control_and_http_cache_the_routes_cache() {
        let (y, skipped) = yaml(json!({
            "version": 3, "host": ["http://b:1"], "cache_ttl": "1h",
            "endpoints": [
                {"endpoint": "/one", "cache_ttl": "1s", "backend": [{"url_pattern": "/one"}]},
                {"endpoint": "/two", "backend": [{"url_pattern": "/two"}]},
                {"endpoint": "/raw", "output_encoding": "no-op",
                 "backend": [{"url_pattern": "/raw", "extra_config": {"qos/http-cache": {"shared": true}}}]},
                {"endpoint": "/merged",
                 "backend": [{"url_pattern": "/m", "extra_config": {"qos/http-cache": {}}}]}
            ]
        }));
        let routes = &y["organizations"][0]["routes"];
        let cc = |i: usize| routes[i]["modify"]["response_headers"]["set"]["Cache-Control"].clone();
        assert_eq!(cc(0), "public, max-age=1");
        assert_eq!(cc(1), "public, max-age=3600");
        assert_eq!(routes[2]["cache"], json!({}));
        assert!(routes[3].get("cache").is_none());
        let paths: Vec<&str> = skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["$.endpoints[3].backend[0].extra_config[\"qos/http-cache\"]"]);
    }

    #[test]
    fn only_a_non_object_fails() {
        assert!(convert(&json!([1]), "x.json").is_err());
        let c = convert(&json!({}), "x.json").expect("an empty config converts");
        assert!(c.skipped.is_empty());
    }
}
