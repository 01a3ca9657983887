//! Reading a backend's answer body into the object that shaping and merging work on, as
//! KrakenD's decoders do:
//! - `json`: a JSON object; with `is_collection`, a JSON array kept under `collection`;
//! - `safejson`: any JSON; an object as it is, an array under `collection`, anything else
//!   (string, number, boolean, null) under `content`;
//! - `xml`: see [`crate::xml`]; with `is_collection` the whole document under `collection`;
//! - `string`: the body, as text, under `content`;
//! - `no-op`: not read (the engine passes the answer through; decoding gives `{}`).
//!
//! A body that is not what its encoding says (bad JSON, HTML from a JSON backend, an array where
//! an object was expected) is a [`DecodeError`], never a panic; the engine counts that backend
//! as failed, as KrakenD does. Two deliberate differences: an empty body (a 204, say) is `{}` for
//! `json` and `safejson` (KrakenD fails on it with `EOF`), and text after the JSON value is an
//! error (KrakenD reads the first value and ignores the rest).
//!
//! The engine is expected to have removed any `Content-Encoding` (KrakenD undoes gzip) and to
//! have bounded the body's size before it gets here.

use crate::config::BackendEncoding;
use crate::xml;
use serde_json::{Map, Value};

/// Why a backend's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("expected a JSON object, got {0}{hint}", hint = if *.0 == "an array" { " (is_collection or safejson reads an array)" } else { "" })]
    NotAnObject(&'static str),
    #[error("expected a JSON array (is_collection), got {0}")]
    NotAnArray(&'static str),
    #[error("invalid XML: {0}")]
    Xml(String),
}

/// The JSON kind of `v`, for errors.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads `body` as `encoding` says.
pub fn decode(encoding: BackendEncoding, is_collection: bool, body: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    match encoding {
        BackendEncoding::NoOp => Ok(Map::new()),
        BackendEncoding::String => Ok(single(
            "content",
            Value::String(String::from_utf8_lossy(body).into_owned()),
        )),
        BackendEncoding::Xml => {
            let doc = xml::decode(body)?;
            Ok(if is_collection {
                single("collection", Value::Object(doc))
            } else {
                doc
            })
        }
        BackendEncoding::Json | BackendEncoding::SafeJson => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Map::new());
            }
            let v: Value = serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
            let safe = encoding == BackendEncoding::SafeJson;
            match v {
                Value::Object(m) if safe || !is_collection => Ok(m),
                Value::Array(a) if safe || is_collection => Ok(single("collection", Value::Array(a))),
                // Go decodes `null` into a nil map or slice without an error.
                Value::Null if !safe => Ok(if is_collection {
                    single("collection", Value::Null)
                } else {
                    Map::new()
                }),
                other if safe => Ok(single("content", other)),
                other if is_collection => Err(DecodeError::NotAnArray(kind(&other))),
                other => Err(DecodeError::NotAnObject(kind(&other))),
            }
        }
    }
}

fn single(key: &str, v: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.to_string(), v);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackendEncoding::String as Text;
    use BackendEncoding::{Json, NoOp, SafeJson, Xml};
    use serde_json::json;

    fn ok(enc: BackendEncoding, coll: bool, body: &str) -> Value {
        Value::Object(decode(enc, coll, body.as_bytes()).unwrap())
    }

    fn err(enc: BackendEncoding, coll: bool, body: &str) -> String {
        decode(enc, coll, body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn json() {
        assert_eq!(ok(Json, false, r#"{"a": 1}"#), json!({"a": 1}));
        assert_eq!(ok(Json, true, r#"[1, {"b": 2}]"#), json!({"collection": [1, {"b": 2}]}));
        assert_eq!(ok(Json, false, "null"), json!({}));
        assert_eq!(ok(Json, false, " \n"), json!({}));
        assert!(err(Json, false, "[1]").contains("got an array (is_collection or safejson"));
        assert!(err(Json, true, r#"{"a": 1}"#).contains("expected a JSON array (is_collection), got an object"));
        assert!(err(Json, false, r#""text""#).contains("got a string"));
        assert!(err(Json, false, r#"{"a": 1"#).starts_with("invalid JSON"));
        assert!(err(Json, false, r#"{"a": 1} trailing"#).starts_with("invalid JSON"));
        assert!(err(Json, false, "<!DOCTYPE html><html><body>502</body></html>").starts_with("invalid JSON"));
        // serde_json's depth limit: a hostile answer is an error, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(err(Json, true, &deep).starts_with("invalid JSON"));
    }

    #[test]
    fn safejson() {
        assert_eq!(ok(SafeJson, false, r#"{"a": 1}"#), json!({"a": 1}));
        assert_eq!(ok(SafeJson, false, "[1, 2]"), json!({"collection": [1, 2]}));
        assert_eq!(ok(SafeJson, false, r#""hi""#), json!({"content": "hi"}));
        assert_eq!(ok(SafeJson, false, "42"), json!({"content": 42}));
        assert_eq!(ok(SafeJson, false, "true"), json!({"content": true}));
        assert_eq!(ok(SafeJson, false, "null"), json!({"content": null}));
        assert!(err(SafeJson, false, "<html>").starts_with("invalid JSON"));
    }

    #[test]
    fn string_and_no_op() {
        assert_eq!(
            ok(Text, false, "<html>hi</html>"),
            json!({"content": "<html>hi</html>"})
        );
        assert_eq!(ok(Text, false, ""), json!({"content": ""}));
        assert_eq!(
            Value::Object(decode(Text, false, b"a\xffb").unwrap()),
            json!({"content": "a\u{fffd}b"})
        );
        assert_eq!(ok(NoOp, false, "anything"), json!({}));
    }

    #[test]
    fn xml_collection() {
        assert_eq!(
            ok(Xml, true, "<list><i>1</i><i>2</i></list>"),
            json!({"collection": {"list": {"i": ["1", "2"]}}})
        );
    }

    proptest::proptest! {
        /// Whatever a backend sends, every decoder answers with a value or an error.
        #[test]
        fn any_bytes_decode_or_fail(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256), coll in proptest::prelude::any::<bool>()) {
            for enc in [Json, SafeJson, Xml, Text, NoOp] {
                let _ = decode(enc, coll, &body);
            }
        }

        /// Almost-JSON and almost-XML (text made of their punctuation) never panics either.
        #[test]
        fn punctuation_soup(body in "[\\[\\]{}<>/\"':,a=!?-]{0,64}") {
            for enc in [Json, SafeJson, Xml] {
                let _ = decode(enc, false, body.as_bytes());
                let _ = decode(enc, true, body.as_bytes());
            }
        }
    }
}
