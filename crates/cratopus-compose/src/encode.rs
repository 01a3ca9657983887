//! Writing the endpoint's merged answer (KrakenD's `output_encoding`):
//! - `json`: the object; `json-collection`: the value under `collection` (`[]` without one);
//! - `xml`: see [`crate::xml`]; `string`: the string under `content` (empty without one);
//! - `negotiate`: JSON, XML or YAML by the client's `Accept` (see [`negotiate`]);
//! - `no-op`: nothing to write here; the engine streams the backend's answer.

use crate::config::OutputEncoding;
use crate::xml;
use bytes::Bytes;
use serde_json::{Map, Value};

pub const JSON: &str = "application/json; charset=utf-8";
pub const XML: &str = "application/xml; charset=utf-8";
pub const YAML: &str = "application/yaml; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

/// An encoded answer: its body and the `Content-Type` to send with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub content_type: &'static str,
    pub body: Bytes,
}

/// Why an answer was not encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// `no-op`: the engine passes the backend's answer through instead.
    #[error("a no-op endpoint passes the backend's answer through; there is nothing to encode")]
    PassThrough,
    #[error("the answer could not be written as YAML: {0}")]
    Yaml(String),
}

/// The formats `negotiate` chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    Json,
    Xml,
    Yaml,
}

/// What `negotiate` offers, in order of preference when the client likes several equally.
/// `text/plain` is YAML, as in KrakenD (its router offers YAML for it).
const OFFERS: &[(&str, &str, Negotiated)] = &[
    ("application", "json", Negotiated::Json),
    ("application", "xml", Negotiated::Xml),
    ("text", "xml", Negotiated::Xml),
    ("application", "yaml", Negotiated::Yaml),
    ("application", "x-yaml", Negotiated::Yaml),
    ("text", "yaml", Negotiated::Yaml),
    ("text", "plain", Negotiated::Yaml),
];

/// The format for an `Accept` header: the offer with the highest quality, the quality of an
/// offer being that of the most specific media range that matches it (`type/subtype` over
/// `type/*` over `*/*`), ties going to the earlier offer. JSON when there is no `Accept`, or
/// when nothing offered is acceptable (KrakenD's fallback, rather than a 406). KrakenD's router
/// takes the first range in header order and ignores `q`; with `q` honoured, a browser's
/// `text/html,…,application/xml;q=0.9,*/*;q=0.8` still gets XML.
pub fn negotiate(accept: Option<&str>) -> Negotiated {
    let Some(accept) = accept else { return Negotiated::Json };
    let mut best: Option<(f32, Negotiated)> = None;
    for &(ty, sub, choice) in OFFERS {
        // (specificity, q) of the most specific range matching this offer.
        let mut matched: Option<(u8, f32)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let Some((rt, rs)) = media.split_once('/') else {
                continue;
            };
            let (rt, rs) = (rt.trim(), rs.trim());
            let specificity = match (rt, rs) {
                ("*", "*") => 0,
                (t, "*") if t.eq_ignore_ascii_case(ty) => 1,
                (t, s) if t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(sub) => 2,
                _ => continue,
            };
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            if matched.is_none_or(|(s, _)| specificity > s) {
                matched = Some((specificity, q));
            }
        }
        let q = matched.map_or(0.0, |(_, q)| q);
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, choice));
        }
    }
    best.map_or(Negotiated::Json, |(_, c)| c)
}

/// Encodes the merged answer `data` as `encoding` says; `accept` is the client's `Accept`
/// header, read by `negotiate` only.
pub fn encode(
    encoding: OutputEncoding,
    data: &Map<String, Value>,
    accept: Option<&str>,
) -> Result<Encoded, EncodeError> {
    // serde_json cannot fail on a `Value` (string keys, no custom serializers).
    let json = |v: &dyn ErasedJson| Encoded {
        content_type: JSON,
        body: Bytes::from(v.to_json()),
    };
    Ok(match encoding {
        OutputEncoding::NoOp => return Err(EncodeError::PassThrough),
        OutputEncoding::Json => json(data),
        OutputEncoding::JsonCollection => match data.get("collection") {
            Some(v) => json(v),
            None => Encoded {
                content_type: JSON,
                body: Bytes::from_static(b"[]"),
            },
        },
        OutputEncoding::String => Encoded {
            content_type: TEXT,
            body: match data.get("content") {
                Some(Value::String(s)) => Bytes::from(s.clone()),
                _ => Bytes::new(),
            },
        },
        OutputEncoding::Xml => Encoded {
            content_type: XML,
            body: Bytes::from(xml::encode(data)),
        },
        OutputEncoding::Negotiate => match negotiate(accept) {
            Negotiated::Json => json(data),
            Negotiated::Xml => Encoded {
                content_type: XML,
                body: Bytes::from(xml::encode(data)),
            },
            Negotiated::Yaml => Encoded {
                content_type: YAML,
                body: Bytes::from(serde_saphyr::to_string(data).map_err(|e| EncodeError::Yaml(e.to_string()))?),
            },
        },
    })
}

/// A map or a value, written as JSON by one closure.
trait ErasedJson {
    fn to_json(&self) -> Vec<u8>;
}

impl ErasedJson for Map<String, Value> {
    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl ErasedJson for Value {
    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn body(e: &Encoded) -> &str {
        std::str::from_utf8(&e.body).unwrap()
    }

    #[test]
    fn negotiation_table() {
        use Negotiated::*;
        for (accept, want) in [
            (None, Json),
            (Some("application/json"), Json),
            (Some("*/*"), Json),
            (Some("application/xml"), Xml),
            (Some("text/xml"), Xml),
            (Some("application/*"), Json),
            (Some("text/*"), Xml),
            (Some("text/plain"), Yaml),
            (Some("application/x-yaml"), Yaml),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                Xml,
            ),
            (Some("application/json;q=0.5, application/xml"), Xml),
            (Some("application/xml;q=0, */*"), Json),
            (Some("image/png"), Json),
            (Some("garbage, ;;, /"), Json),
            (Some("APPLICATION/XML"), Xml),
        ] {
            assert_eq!(negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn encodings() {
        let d = data(json!({"a": 1, "collection": [1, 2], "content": "hi"}));
        let e = encode(OutputEncoding::Json, &d, None).unwrap();
        assert_eq!(
            (e.content_type, body(&e)),
            (JSON, r#"{"a":1,"collection":[1,2],"content":"hi"}"#)
        );
        let e = encode(OutputEncoding::JsonCollection, &d, None).unwrap();
        assert_eq!((e.content_type, body(&e)), (JSON, "[1,2]"));
        let e = encode(OutputEncoding::JsonCollection, &data(json!({"a": 1})), None).unwrap();
        assert_eq!(body(&e), "[]");
        let e = encode(OutputEncoding::String, &d, None).unwrap();
        assert_eq!((e.content_type, body(&e)), (TEXT, "hi"));
        let e = encode(OutputEncoding::String, &data(json!({"content": 5})), None).unwrap();
        assert_eq!(body(&e), "");
        let e = encode(OutputEncoding::Xml, &data(json!({"a": 1})), None).unwrap();
        assert_eq!((e.content_type, body(&e)), (XML, "<a>1</a>"));
        assert_eq!(encode(OutputEncoding::NoOp, &d, None), Err(EncodeError::PassThrough));
        let e = encode(OutputEncoding::Negotiate, &data(json!({"a": 1})), Some("text/yaml")).unwrap();
        assert_eq!(e.content_type, YAML);
        assert_eq!(serde_saphyr::from_str::<Value>(body(&e)).unwrap(), json!({"a": 1}));
        let e = encode(
            OutputEncoding::Negotiate,
            &data(json!({"a": 1})),
            Some("application/xml"),
        )
        .unwrap();
        assert_eq!((e.content_type, body(&e)), (XML, "<a>1</a>"));
    }
}
