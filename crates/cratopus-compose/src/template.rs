//! A backend's `url_pattern`, parsed once at config load and rendered per request without
//! parsing again: literal text and placeholders, in the path or the query —
//! - `{id}`: a parameter of the endpoint's path (`/users/{id}`);
//! - `{resp0_calendar_id}`, `{resp1_user.id}`: in a sequential endpoint, a field (dotted path)
//!   of an earlier backend's answer, as shaped (after its `group`, `mapping`, …), as in KrakenD.
//!
//! Values are written as KrakenD writes them (strings as they are, numbers and booleans as
//! JSON writes them, arrays as their members joined with `,`), with two differences:
//! - a missing field, a `null`, or an object is a [`RenderError`], for the engine to stop the
//!   chain: KrakenD sends the literal placeholder, `<nil>` or Go's map syntax to the backend;
//! - values are percent-encoded for where they go: a field of an answer completely (it may
//!   hold `/`, `?`, `&` or spaces), a path parameter only for what it may not carry into a
//!   query (`&`, `=`, `+`, `#`), since it is already text of the client's request path.
//!   KrakenD inserts both raw, so a value could add path segments or query parameters.

use crate::path::FieldPath;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::sync::Arc;

/// Encoded in a field value bound for a path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');
/// Encoded in a field value bound for a query value.
const QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'=')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');
/// Encoded in a path parameter (already request-path text) bound for a query value.
const PARAM_IN_QUERY: &AsciiSet = &CONTROLS.add(b'&').add(b'+').add(b'=').add(b'#');

/// A parsed `url_pattern`.
#[derive(Debug, Clone)]
pub struct UrlTemplate {
    pieces: Box<[Piece]>,
    /// Length of the literal text, to size the rendered string once.
    literal_len: usize,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(Box<str>),
    Param {
        name: Box<str>,
        in_query: bool,
    },
    Answer {
        index: usize,
        path: FieldPath,
        in_query: bool,
    },
}

/// A placeholder of a template, for config checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder<'a> {
    /// `{name}`: a parameter of the endpoint's path.
    Param(&'a str),
    /// `{respN_path}`: a field of backend N's answer.
    Answer { index: usize, path: &'a str },
}

/// Why a `url_pattern` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("url_pattern must start with `/`")]
    NotAPath,
    #[error("url_pattern has a `{{` without its `}}`")]
    Unclosed,
    #[error("url_pattern has a `}}` without its `{{`")]
    Unopened,
    #[error("url_pattern has an empty placeholder `{{}}`")]
    Empty,
    #[error("`{{{0}}}`: a placeholder name cannot contain `{{`, `/`, `?`, `&`, `=` or spaces")]
    BadName(String),
    #[error(
        "`{{{0}}}`: name the field of the answer, as in `{{{0}_id}}` (the whole answer of a no-op backend is not available)"
    )]
    WholeAnswer(String),
    #[error("`{{{text}}}`: {why}")]
    BadField { text: String, why: String },
    #[error("url_pattern cannot have a fragment (`#`); it is never sent")]
    Fragment,
}

/// Why a template could not be rendered for a request (the chain stops there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the request has no path parameter `{0}`")]
    MissingParam(String),
    #[error("backend {0} has no answer to take a field from")]
    NoAnswer(usize),
    #[error("the answer of backend {index} has no field `{path}`")]
    MissingField { index: usize, path: String },
    #[error("the field `{path}` of backend {index}'s answer is null")]
    NullField { index: usize, path: String },
    #[error("the field `{path}` of backend {index}'s answer is an object, which has no place in a URL")]
    ObjectField { index: usize, path: String },
}

/// Where the values of path parameters come from.
pub trait Params {
    fn param(&self, name: &str) -> Option<&str>;
}

/// The engine's `RequestCx::params`.
impl Params for [(Arc<str>, String)] {
    fn param(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| &**k == name).map(|(_, v)| v.as_str())
    }
}

impl Params for [(&str, &str)] {
    fn param(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl UrlTemplate {
    pub fn parse(pattern: &str) -> Result<Self, TemplateError> {
        if !pattern.starts_with('/') {
            return Err(TemplateError::NotAPath);
        }
        if pattern.contains('#') {
            return Err(TemplateError::Fragment);
        }
        let mut pieces = Vec::new();
        let mut literal_len = 0;
        let mut in_query = false;
        let mut rest = pattern;
        while !rest.is_empty() {
            let open = rest.find('{');
            let close = rest.find('}');
            let text_end = match (open, close) {
                (_, Some(c)) if open.is_none_or(|o| c < o) => return Err(TemplateError::Unopened),
                (Some(o), _) => o,
                (None, _) => rest.len(),
            };
            if text_end > 0 {
                let text = &rest[..text_end];
                in_query |= text.contains('?');
                literal_len += text.len();
                pieces.push(Piece::Text(text.into()));
                rest = &rest[text_end..];
                continue;
            }
            let Some(end) = rest.find('}') else {
                return Err(TemplateError::Unclosed);
            };
            let name = &rest[1..end];
            rest = &rest[end + 1..];
            if name.is_empty() {
                return Err(TemplateError::Empty);
            }
            if name.contains(['{', '/', '?', '&', '=', ' ']) {
                return Err(TemplateError::BadName(name.to_string()));
            }
            pieces.push(match answer_ref(name)? {
                Some((index, path)) => Piece::Answer { index, path, in_query },
                None => Piece::Param {
                    name: name.into(),
                    in_query,
                },
            });
        }
        Ok(UrlTemplate {
            pieces: pieces.into(),
            literal_len,
        })
    }

    /// The placeholders, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder<'_>> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Text(_) => None,
            Piece::Param { name, .. } => Some(Placeholder::Param(name)),
            Piece::Answer { index, path, .. } => Some(Placeholder::Answer {
                index: *index,
                path: path.as_str(),
            }),
        })
    }

    /// Whether the template uses earlier answers (a sequential endpoint must wait for them).
    pub fn uses_answers(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Answer { .. }))
    }

    /// The path and query for one request: `params` are the endpoint's path parameters,
    /// `answers[n]` backend n's shaped answer (`None` when it has none).
    pub fn render<P: Params + ?Sized>(
        &self,
        params: &P,
        answers: &[Option<&Map<String, Value>>],
    ) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.literal_len + 16 * self.pieces.len());
        for piece in self.pieces.iter() {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Param { name, in_query } => {
                    let v = params
                        .param(name)
                        .ok_or_else(|| RenderError::MissingParam(name.to_string()))?;
                    if *in_query {
                        out.extend(utf8_percent_encode(v, PARAM_IN_QUERY));
                    } else {
                        out.push_str(v);
                    }
                }
                Piece::Answer { index, path, in_query } => {
                    let answer = answers
                        .get(*index)
                        .copied()
                        .flatten()
                        .ok_or(RenderError::NoAnswer(*index))?;
                    let field = || (*index, path.as_str().to_string());
                    let v = path.get_in(answer).ok_or_else(|| {
                        let (index, path) = field();
                        RenderError::MissingField { index, path }
                    })?;
                    let text = match v {
                        Value::Null => {
                            let (index, path) = field();
                            return Err(RenderError::NullField { index, path });
                        }
                        Value::Object(_) => {
                            let (index, path) = field();
                            return Err(RenderError::ObjectField { index, path });
                        }
                        other => scalar_text(other),
                    };
                    let set = if *in_query { QUERY } else { SEGMENT };
                    out.extend(utf8_percent_encode(&text, set));
                }
            }
        }
        Ok(out)
    }
}

/// `resp<N>_<path>` (or KrakenD's `Resp<N>_…`): the answer index and the field path.
fn answer_ref(name: &str) -> Result<Option<(usize, FieldPath)>, TemplateError> {
    let Some(rest) = name.strip_prefix("resp").or_else(|| name.strip_prefix("Resp")) else {
        return Ok(None);
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Ok(None);
    }
    let (n, field) = rest.split_at(digits);
    let Some(field) = field.strip_prefix('_') else {
        return if field.is_empty() {
            Err(TemplateError::WholeAnswer(name.to_string()))
        } else {
            Ok(None)
        };
    };
    let index = n.parse().map_err(|_| TemplateError::BadField {
        text: name.to_string(),
        why: "the backend number is too large".into(),
    })?;
    let path = FieldPath::parse(field, false).map_err(|e| TemplateError::BadField {
        text: name.to_string(),
        why: e.to_string(),
    })?;
    Ok(Some((index, path)))
}

/// A scalar or an array as KrakenD writes it into a URL.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match item {
                    Value::String(s) => out.push_str(s),
                    other => {
                        let _ = write!(out, "{other}");
                    }
                }
            }
            out
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn parse_table() {
        for (pattern, ok) in [
            ("/users/{id}", true),
            ("/users/{id}?x={x}&y=1", true),
            ("/calendar/{resp0_calendar_id}.json", true),
            ("/u/{resp1_user.id}", true),
            ("/u/{Resp1_user}", true),
            ("/__echo/?id={id}", true),
            ("/", true),
            ("users/{id}", false),
            ("/users/{id", false),
            ("/users/id}", false),
            ("/users/{}", false),
            ("/users/{a/b}", false),
            ("/u/{resp0}", false),
            ("/u/{resp0_a..b}", false),
            ("/u#frag", false),
        ] {
            assert_eq!(UrlTemplate::parse(pattern).is_ok(), ok, "{pattern}");
        }
        let t = UrlTemplate::parse("/a/{id}/{resp2_x.y}?q={q}&r={response}").unwrap();
        assert_eq!(
            t.placeholders().collect::<Vec<_>>(),
            [
                Placeholder::Param("id"),
                Placeholder::Answer { index: 2, path: "x.y" },
                Placeholder::Param("q"),
                Placeholder::Param("response"),
            ]
        );
        assert!(t.uses_answers());
        assert!(!UrlTemplate::parse("/a/{id}").unwrap().uses_answers());
    }

    #[test]
    fn render_params() {
        let t = UrlTemplate::parse("/users/{id}?x={x}&fixed=1").unwrap();
        let params: &[(&str, &str)] = &[("id", "42"), ("x", "a&b=c+d%20e")];
        assert_eq!(t.render(params, &[]).unwrap(), "/users/42?x=a%26b%3Dc%2Bd%20e&fixed=1");
        let params: &[(&str, &str)] = &[("id", "42")];
        assert_eq!(t.render(params, &[]), Err(RenderError::MissingParam("x".into())));
        // The engine's own parameter list.
        let t = UrlTemplate::parse("/files/{rest}").unwrap();
        let cx: Vec<(Arc<str>, String)> = vec![(Arc::from("rest"), "a/b%20c".to_string())];
        assert_eq!(t.render(cx.as_slice(), &[]).unwrap(), "/files/a/b%20c");
    }

    /// The seed's sequential example: `/hotels/{id}.json`, then `/calendar/{resp0_calendar_id}.json`.
    #[test]
    fn sequential_hotel_and_its_failing_variant() {
        let hotel =
            map(json!({"hotel_id": 1, "name": "Hotel Kraken", "calendar_id": 7, "destination": {"id": "ES-BCN"}}));
        let params: &[(&str, &str)] = &[("id", "1")];
        let first = UrlTemplate::parse("/hotels/{id}.json").unwrap();
        assert_eq!(first.render(params, &[]).unwrap(), "/hotels/1.json");
        let second = UrlTemplate::parse("/calendar/{resp0_calendar_id}.json").unwrap();
        assert_eq!(second.render(params, &[Some(&hotel)]).unwrap(), "/calendar/7.json");
        let nested = UrlTemplate::parse("/d/{resp0_destination.id}").unwrap();
        assert_eq!(nested.render(params, &[Some(&hotel)]).unwrap(), "/d/ES-BCN");
        let failing = UrlTemplate::parse("/calendar/{resp0_unexisting_field}.json").unwrap();
        assert_eq!(
            failing.render(params, &[Some(&hotel)]),
            Err(RenderError::MissingField {
                index: 0,
                path: "unexisting_field".into()
            })
        );
        assert_eq!(second.render(params, &[None]), Err(RenderError::NoAnswer(0)));
        assert_eq!(second.render(params, &[]), Err(RenderError::NoAnswer(0)));
    }

    #[test]
    fn render_answer_values() {
        let a = map(json!({
            "s": "a b/c?d&e", "n": 1.5, "i": -3, "b": true, "l": ["x", 2, false], "e": [],
            "z": null, "o": {"k": 1}, "items": [{"id": 9}]
        }));
        let r = |p: &str| {
            UrlTemplate::parse(p)
                .unwrap()
                .render(&[] as &[(&str, &str)], &[Some(&a)])
        };
        assert_eq!(r("/{resp0_s}").unwrap(), "/a%20b%2Fc%3Fd&e");
        assert_eq!(r("/x?v={resp0_s}").unwrap(), "/x?v=a%20b/c?d%26e");
        assert_eq!(r("/{resp0_n}/{resp0_i}/{resp0_b}").unwrap(), "/1.5/-3/true");
        assert_eq!(r("/{resp0_l}").unwrap(), "/x,2,false");
        assert_eq!(r("/e{resp0_e}").unwrap(), "/e");
        assert_eq!(r("/{resp0_items.0.id}").unwrap(), "/9");
        assert!(matches!(r("/{resp0_z}"), Err(RenderError::NullField { .. })));
        assert!(matches!(r("/{resp0_o}"), Err(RenderError::ObjectField { .. })));
        assert!(matches!(r("/{resp0_s.x}"), Err(RenderError::MissingField { .. })));
    }

    proptest::proptest! {
        /// A field's value never adds a path segment, a query or a fragment, and decodes back
        /// to itself.
        #[test]
        fn answer_values_stay_in_their_segment(value in "\\PC{0,20}") {
            let a = map(json!({"v": value.clone()}));
            let none: &[(&str, &str)] = &[];
            let out = UrlTemplate::parse("/x/{resp0_v}/y").unwrap().render(none, &[Some(&a)]).unwrap();
            let inner = out.strip_prefix("/x/").and_then(|r| r.strip_suffix("/y")).unwrap();
            proptest::prop_assert!(!inner.contains(['/', '?', '#', ' ']), "{out}");
            let back = percent_encoding::percent_decode_str(inner).decode_utf8().unwrap();
            proptest::prop_assert_eq!(back, value.as_str());
            let out = UrlTemplate::parse("/x?a={resp0_v}&b=1").unwrap().render(none, &[Some(&a)]).unwrap();
            let inner = out.strip_prefix("/x?a=").and_then(|r| r.strip_suffix("&b=1")).unwrap();
            proptest::prop_assert!(!inner.contains(['&', '#', '=', '+', ' ']), "{out}");
            let back = percent_encoding::percent_decode_str(inner).decode_utf8().unwrap();
            proptest::prop_assert_eq!(back, value.as_str());
        }
    }
}
