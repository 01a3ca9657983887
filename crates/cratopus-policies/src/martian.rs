//! KrakenD's static modifiers (`modifier/martian`) of one composition backend, and basic
//! authentication towards it, as a [`CallModifier`] the backend calls around each call.
//!
//! The config tree (`cratopus_compose::martian::Martian`) is compiled twice, once per side:
//! the request tree keeps the nodes whose `scope` has `request`, the response tree those with
//! `response`, so that per call only what acts on that side runs. A header or query modifier
//! (`header.Modifier`, `header.Append`, `header.Blacklist`, `querystring.Modifier`) is compiled
//! into the route modifiers' engine ([`crate::modify::Modifiers`]) with its value as literal
//! text: martian is static, a `{` is a brace. Filters test the head they act on (the request's
//! headers and query, or the answer's headers; a `querystring.Filter` on the answer tests the
//! request's query, as martian does) and run their `modifier` or their `else`; a `fifo.Group`
//! runs its members in order, each on the head as the previous one left it.

use crate::forwarding::decoded_eq;
use crate::modify::{Modifiers, Names, Vars};
use bytes::Bytes;
use cratopus_compose::martian::{BasicAuth, Martian, Scope};
use cratopus_config::modify::{ModifyConfig, Ops, ResponseOps, TemplateText};
use cratopus_upstream::CallModifier;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use regex::Regex;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// One backend's compiled modifiers.
#[derive(Debug)]
pub struct MartianModifier {
    request: Node,
    response: Node,
}

#[derive(Debug)]
enum Node {
    Nothing,
    /// Header and query operations, by the route modifiers' engine.
    Modify(Box<Modifiers>),
    Body {
        body: Bytes,
        content_type: Option<HeaderValue>,
    },
    /// `cookie.Modifier`: on a request `name=value` joins the `Cookie` header; on an answer
    /// the whole `Set-Cookie` value is added.
    Cookie(HeaderValue),
    HeaderFilter {
        name: HeaderName,
        value: Option<Box<[u8]>>,
        then: Box<Node>,
        otherwise: Box<Node>,
    },
    HeaderRegex {
        name: HeaderName,
        regex: Regex,
        then: Box<Node>,
        otherwise: Box<Node>,
    },
    QueryFilter {
        name: Box<[u8]>,
        value: Option<Box<[u8]>>,
        then: Box<Node>,
        otherwise: Box<Node>,
    },
    Group(Box<[Node]>),
}

/// What a node acts on: the request's head, or the answer's (with the request's query).
enum Head<'a> {
    Request(&'a mut http::request::Parts),
    Response {
        query: Option<&'a str>,
        res: &'a mut http::response::Parts,
    },
}

impl Head<'_> {
    fn headers(&self) -> &HeaderMap {
        match self {
            Head::Request(r) => &r.headers,
            Head::Response { res, .. } => &res.headers,
        }
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        match self {
            Head::Request(r) => &mut r.headers,
            Head::Response { res, .. } => &mut res.headers,
        }
    }

    fn query(&self) -> Option<&str> {
        match self {
            Head::Request(r) => r.uri.query(),
            Head::Response { query, .. } => *query,
        }
    }
}

impl MartianModifier {
    /// Compiles a backend's `martian` block and `basic_auth` (both passed the config's checks;
    /// values they would have flagged are skipped). `None` when neither does anything.
    pub fn compile(martian: Option<&Martian>, auth: Option<&BasicAuth>) -> Option<MartianModifier> {
        let mut request = martian.map_or(Node::Nothing, |m| Node::compile(m, Scope::Request));
        if let Some(a) = auth {
            // Last, so that it wins over anything the client or a modifier put there.
            let auth = leaf(
                Scope::Request,
                |ops| {
                    ops.set.insert("Authorization".into(), literal(&a.header_value()));
                },
                |_| {},
            );
            request = match request {
                Node::Nothing => auth,
                other => Node::Group(vec![other, auth].into()),
            };
        }
        let response = martian.map_or(Node::Nothing, |m| Node::compile(m, Scope::Response));
        if matches!((&request, &response), (Node::Nothing, Node::Nothing)) {
            return None;
        }
        Some(MartianModifier { request, response })
    }
}

impl CallModifier for MartianModifier {
    fn on_request(&self, req: &mut http::request::Parts) -> Option<Bytes> {
        let mut body = None;
        self.request.run(&mut Head::Request(req), &mut body);
        body
    }

    fn modifies_responses(&self) -> bool {
        !matches!(self.response, Node::Nothing)
    }

    fn on_response(&self, query: Option<&str>, res: &mut http::response::Parts) -> Option<Bytes> {
        let mut body = None;
        self.response.run(&mut Head::Response { query, res }, &mut body);
        body
    }
}

/// Template text standing for exactly `value` (braces doubled: martian values are static).
fn literal(value: &str) -> TemplateText {
    TemplateText(value.replace('{', "{{").replace('}', "}}"))
}

/// A header (or query) leaf compiled into the route modifiers' engine: `request` fills the
/// request-header operations, `response` the response-header ones; only `scope`'s side is
/// kept.
fn leaf(scope: Scope, request: impl FnOnce(&mut Ops), response: impl FnOnce(&mut ResponseOps)) -> Node {
    let mut cfg = ModifyConfig::default();
    match scope {
        Scope::Request => {
            let mut ops = Ops::default();
            request(&mut ops);
            cfg.request_headers = Some(ops);
        }
        Scope::Response => {
            let mut ops = ResponseOps::default();
            response(&mut ops);
            cfg.response_headers = Some(ops);
        }
    }
    modifiers(&cfg)
}

fn modifiers(cfg: &ModifyConfig) -> Node {
    let names = Names {
        route: "",
        org: "",
        env: &|_| None,
    };
    match Modifiers::compile(None, Some(cfg), &names) {
        Some(m) => Node::Modify(Box::new(m)),
        None => Node::Nothing,
    }
}

impl Node {
    fn compile(m: &Martian, side: Scope) -> Node {
        if !m.scope().contains(&side) {
            return Node::Nothing;
        }
        let sub = |m: &Martian| Box::new(Node::compile(m, side));
        let sub_opt =
            |m: &Option<Box<Martian>>| Box::new(m.as_deref().map_or(Node::Nothing, |m| Node::compile(m, side)));
        let header = |n: &str| HeaderName::from_bytes(n.trim().as_bytes()).ok();
        match m {
            Martian::HeaderModifier(h) => leaf(
                side,
                |o| {
                    o.set.insert(h.name.clone(), literal(&h.value));
                },
                |o| {
                    o.set.insert(h.name.clone(), literal(&h.value));
                },
            ),
            Martian::HeaderAppend(h) => leaf(
                side,
                |o| {
                    o.add.insert(h.name.clone(), literal(&h.value));
                },
                |o| {
                    o.add.insert(h.name.clone(), literal(&h.value));
                },
            ),
            Martian::HeaderBlacklist(h) => leaf(
                side,
                |o| o.remove.clone_from(&h.names),
                |o| o.remove.clone_from(&h.names),
            ),
            Martian::QueryModifier(q) if side == Scope::Request => modifiers(&ModifyConfig {
                request_query: Some(Ops {
                    set: BTreeMap::from([(q.name.clone(), literal(&q.value))]),
                    ..Ops::default()
                }),
                ..ModifyConfig::default()
            }),
            Martian::QueryModifier(_) => Node::Nothing,
            Martian::BodyModifier(b) => match Martian::decode_body(&b.body) {
                Ok(body) => Node::Body {
                    body: Bytes::from(body),
                    content_type: b.content_type.as_deref().and_then(|t| HeaderValue::from_str(t).ok()),
                },
                Err(_) => Node::Nothing,
            },
            Martian::CookieModifier(c) => {
                let text = match side {
                    Scope::Request => format!("{}={}", c.name, c.value),
                    Scope::Response => {
                        let mut t = format!("{}={}", c.name, c.value);
                        if let Some(p) = &c.path {
                            t.push_str(&format!("; Path={p}"));
                        }
                        if let Some(d) = &c.domain {
                            t.push_str(&format!("; Domain={d}"));
                        }
                        if let Some(Ok(date)) = c.expires.as_deref().map(cratopus_compose::martian::http_date) {
                            t.push_str(&format!("; Expires={date}"));
                        }
                        if c.max_age != 0 {
                            t.push_str(&format!("; Max-Age={}", c.max_age.max(0)));
                        }
                        if c.http_only {
                            t.push_str("; HttpOnly");
                        }
                        if c.secure {
                            t.push_str("; Secure");
                        }
                        t
                    }
                };
                HeaderValue::from_str(&text).map_or(Node::Nothing, Node::Cookie)
            }
            Martian::HeaderFilter(f) => match header(&f.name) {
                Some(name) => Node::HeaderFilter {
                    name,
                    value: f.value.as_deref().map(|v| v.as_bytes().into()),
                    then: sub(&f.modifier),
                    otherwise: sub_opt(&f.otherwise),
                },
                None => Node::Nothing,
            },
            Martian::HeaderRegexFilter(f) => match (header(&f.header), Regex::new(&f.regex)) {
                (Some(name), Ok(regex)) => Node::HeaderRegex {
                    name,
                    regex,
                    then: sub(&f.modifier),
                    otherwise: sub_opt(&f.otherwise),
                },
                _ => Node::Nothing,
            },
            Martian::QueryFilter(f) => Node::QueryFilter {
                name: f.name.as_bytes().into(),
                value: f.value.as_deref().map(|v| v.as_bytes().into()),
                then: sub(&f.modifier),
                otherwise: sub_opt(&f.otherwise),
            },
            Martian::FifoGroup(g) => {
                let nodes: Vec<Node> = g
                    .modifiers
                    .iter()
                    .map(|m| Node::compile(m, side))
                    .filter(|n| !matches!(n, Node::Nothing))
                    .collect();
                if nodes.is_empty() {
                    Node::Nothing
                } else {
                    Node::Group(nodes.into())
                }
            }
        }
    }

    fn run(&self, head: &mut Head, body: &mut Option<Bytes>) {
        match self {
            Node::Nothing => {}
            Node::Modify(m) => {
                let request_id = HeaderValue::from_static("");
                let vars = Vars {
                    client: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    request_id: &request_id,
                    identity: None,
                    params: &[],
                };
                match head {
                    Head::Request(req) => m.on_request(&vars, req),
                    Head::Response { res, .. } => m.on_response(&vars, res),
                }
            }
            Node::Body { body: b, content_type } => {
                *body = Some(b.clone());
                if let Some(t) = content_type {
                    head.headers_mut().insert(header::CONTENT_TYPE, t.clone());
                }
            }
            Node::Cookie(value) => match head {
                Head::Request(req) => {
                    let joined = match req.headers.get(header::COOKIE) {
                        Some(old) if !old.is_empty() => {
                            let mut v = old.as_bytes().to_vec();
                            v.extend_from_slice(b"; ");
                            v.extend_from_slice(value.as_bytes());
                            HeaderValue::from_bytes(&v).unwrap_or_else(|_| value.clone())
                        }
                        _ => value.clone(),
                    };
                    req.headers.insert(header::COOKIE, joined);
                }
                Head::Response { res, .. } => {
                    res.headers.append(header::SET_COOKIE, value.clone());
                }
            },
            Node::HeaderFilter {
                name,
                value,
                then,
                otherwise,
            } => {
                let hit = match value {
                    None => head.headers().contains_key(name),
                    Some(v) => head.headers().get_all(name).iter().any(|h| h.as_bytes() == &**v),
                };
                if hit { then } else { otherwise }.run(head, body);
            }
            Node::HeaderRegex {
                name,
                regex,
                then,
                otherwise,
            } => {
                let hit = head
                    .headers()
                    .get_all(name)
                    .iter()
                    .any(|h| h.to_str().is_ok_and(|s| regex.is_match(s)));
                if hit { then } else { otherwise }.run(head, body);
            }
            Node::QueryFilter {
                name,
                value,
                then,
                otherwise,
            } => {
                let hit = head.query().is_some_and(|q| {
                    q.split('&').any(|pair| {
                        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                        decoded_eq(n, name) && value.as_ref().is_none_or(|want| decoded_eq(v, want))
                    })
                });
                if hit { then } else { otherwise }.run(head, body);
            }
            Node::Group(nodes) => {
                for n in nodes.iter() {
                    n.run(head, body);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(v: serde_json::Value) -> MartianModifier {
        let m: Martian = serde_json::from_value(v).unwrap();
        MartianModifier::compile(Some(&m), None).unwrap()
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn response(headers: &[(&str, &str)]) -> http::response::Parts {
        let mut b = http::Response::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn header_modifier_on_both_sides_as_static_text() {
        let m = compile(
            json!({"header.Modifier": {"scope": ["request", "response"], "name": "User-Agent", "value": "Late-Night-Commander v2.3 {x}"}}),
        );
        let mut req = request("/a", &[("user-agent", "curl"), ("user-agent", "again")]);
        assert_eq!(m.on_request(&mut req), None);
        let all: Vec<_> = req.headers.get_all("user-agent").iter().collect();
        assert_eq!(all, ["Late-Night-Commander v2.3 {x}"]);
        assert!(m.modifies_responses());
        let mut res = response(&[]);
        assert_eq!(m.on_response(None, &mut res), None);
        assert_eq!(res.headers["user-agent"], "Late-Night-Commander v2.3 {x}");
    }

    #[test]
    fn scope_limits_a_modifier_to_its_side() {
        let m = compile(json!({"header.Append": {"scope": ["request"], "name": "X-A", "value": "2"}}));
        assert!(!m.modifies_responses());
        let mut req = request("/", &[("x-a", "1")]);
        m.on_request(&mut req);
        let all: Vec<_> = req.headers.get_all("x-a").iter().collect();
        assert_eq!(all, ["1", "2"]);
        let b = compile(json!({"header.Blacklist": {"scope": ["response"], "names": ["Server", "X-Powered-By"]}}));
        let mut req = request("/", &[("server", "s")]);
        b.on_request(&mut req);
        assert!(req.headers.contains_key("server"), "request untouched");
        let mut res = response(&[("server", "nginx"), ("x-powered-by", "php"), ("x-keep", "1")]);
        b.on_response(None, &mut res);
        assert_eq!(res.headers.len(), 1);
    }

    #[test]
    fn regex_filter_applies_its_modifier_when_a_value_matches() {
        let m = compile(json!({"header.RegexFilter": {
            "scope": ["request"], "header": "X-App-Version", "regex": ".*-(alpha|beta|preview)$",
            "modifier": {"querystring.Modifier": {"scope": ["request"], "name": "testing", "value": "1"}},
            "else": {"header.Modifier": {"scope": ["request"], "name": "X-Stable", "value": "yes"}}
        }}));
        let mut req = request("/v?a=b", &[("x-app-version", "2.0-beta")]);
        m.on_request(&mut req);
        assert_eq!(req.uri.query(), Some("a=b&testing=1"));
        let mut req = request("/v?a=b", &[("x-app-version", "2.0")]);
        m.on_request(&mut req);
        assert_eq!(req.uri.query(), Some("a=b"));
        assert_eq!(req.headers["x-stable"], "yes");
    }

    #[test]
    fn header_and_query_filters_with_and_without_values() {
        let m = compile(json!({"fifo.Group": {"scope": ["request", "response"], "modifiers": [
            {"header.Filter": {"scope": ["request"], "name": "X-Tenant", "value": "acme",
                "modifier": {"header.Modifier": {"scope": ["request"], "name": "X-Plan", "value": "gold"}}}},
            {"querystring.Filter": {"scope": ["request", "response"], "name": "debug",
                "modifier": {"header.Modifier": {"scope": ["request", "response"], "name": "X-Debug", "value": "on"}}}}
        ]}}));
        let mut req = request("/?debug", &[("x-tenant", "acme")]);
        m.on_request(&mut req);
        assert_eq!(req.headers["x-plan"], "gold");
        assert_eq!(req.headers["x-debug"], "on");
        let mut req = request("/?x=1", &[("x-tenant", "other")]);
        m.on_request(&mut req);
        assert!(!req.headers.contains_key("x-plan") && !req.headers.contains_key("x-debug"));
        let mut res = response(&[]);
        m.on_response(Some("debug=1"), &mut res);
        assert_eq!(
            res.headers["x-debug"], "on",
            "a response query filter reads the request's query"
        );
    }

    #[test]
    fn body_and_cookie_modifiers() {
        let m = compile(json!({"fifo.Group": {"scope": ["request", "response"], "modifiers": [
            {"body.Modifier": {"scope": ["request", "response"], "body": "eyJtc2ciOiJ5b3Ugcm9jayEifQ==", "contentType": "application/json"}},
            {"cookie.Modifier": {"scope": ["request", "response"], "name": "session", "value": "abc", "path": "/", "maxAge": 60, "httpOnly": true, "expires": "2025-04-12T23:20:50.52Z"}}
        ]}}));
        let mut req = request("/", &[("cookie", "a=1")]);
        assert_eq!(m.on_request(&mut req).as_deref(), Some(&br#"{"msg":"you rock!"}"#[..]));
        assert_eq!(req.headers["cookie"], "a=1; session=abc");
        assert_eq!(req.headers["content-type"], "application/json");
        let mut res = response(&[("set-cookie", "b=2")]);
        assert!(m.on_response(None, &mut res).is_some());
        let all: Vec<_> = res.headers.get_all("set-cookie").iter().collect();
        assert_eq!(
            all,
            [
                "b=2",
                "session=abc; Path=/; Expires=Sat, 12 Apr 2025 23:20:50 GMT; Max-Age=60; HttpOnly"
            ]
        );
    }

    #[test]
    fn basic_auth_replaces_the_clients_authorization() {
        let auth = BasicAuth {
            user: "gerard".into(),
            password: "password".into(),
        };
        let m = MartianModifier::compile(None, Some(&auth)).unwrap();
        assert!(!m.modifies_responses());
        let mut req = request("/", &[("authorization", "Bearer client")]);
        m.on_request(&mut req);
        assert_eq!(req.headers["authorization"], "Basic Z2VyYXJkOnBhc3N3b3Jk");
        assert!(MartianModifier::compile(None, None).is_none());
    }
}
