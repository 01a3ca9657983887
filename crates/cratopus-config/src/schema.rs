//! JSON Schemas (draft 2020-12) of `gateway.yaml` and of an organization file, generated from the
//! serde types of [`crate::model`] so that they follow them: unknown keys are refused
//! (`additionalProperties: false`), defaults and doc comments are shown, and durations, sizes,
//! targets and organization sources accept what their hand-written `Deserialize` accepts.
//!
//! Editors use them for completion, hover text and checks as you type (`cratopus schema`).
//! They check the shape of a file only: references between names, duplicate routes and the like
//! are left to `cratopus check`.

use crate::model::{GatewayConfig, OrganizationConfig};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// The `$id` of [`gateway_schema`].
pub const GATEWAY_SCHEMA_ID: &str = "urn:cratopus:schema:gateway";
/// The `$id` of [`organization_schema`].
pub const ORGANIZATION_SCHEMA_ID: &str = "urn:cratopus:schema:organization";

/// The JSON Schema of `gateway.yaml` (inline organizations included).
pub fn gateway_schema() -> Value {
    root_schema::<GatewayConfig>(GATEWAY_SCHEMA_ID, "cratopus gateway.yaml")
}

/// The JSON Schema of an organization file (`orgs/acme.yaml`).
pub fn organization_schema() -> Value {
    root_schema::<OrganizationConfig>(ORGANIZATION_SCHEMA_ID, "cratopus organization file")
}

/// `schema` as pretty JSON, its identity (`$schema`, `$id`, `title`, `description`) first and its
/// `$defs` last, so that a reader meets the top-level keys before the definitions.
pub fn to_pretty_json(schema: &Value) -> String {
    struct Ordered<'a>(&'a Value);
    impl Serialize for Ordered<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let Value::Object(map) = self.0 else {
                return self.0.serialize(s);
            };
            const FIRST: [&str; 5] = ["$schema", "$id", "title", "description", "type"];
            let first = FIRST.iter().filter_map(|k| map.get_key_value(*k));
            let middle = map
                .iter()
                .filter(|(k, _)| !FIRST.contains(&k.as_str()) && *k != "$defs");
            s.collect_map(first.chain(middle).chain(map.get_key_value("$defs")))
        }
    }
    let mut text = serde_json::to_string_pretty(&Ordered(schema)).expect("a JSON value always serializes");
    text.push('\n');
    text
}

fn root_schema<T: JsonSchema>(id: &str, title: &str) -> Value {
    let schema = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = schema.to_value();
    tidy(&mut value);
    if let Value::Object(map) = &mut value {
        map.insert("$id".into(), id.into());
        map.insert("title".into(), title.into());
    }
    value
}

/// Touches up a schema that the derive copied from the code, for the editor's eyes:
/// - a doc comment's line breaks inside a paragraph become spaces (its paragraphs stay apart);
/// - `"default": null` goes: on an optional key it says only that leaving the key out means
///   "none", which the description says, and editors would offer `null` as a completion.
fn tidy(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    if map.get("default").is_some_and(Value::is_null) {
        map.remove("default");
    }
    if let Some(Value::String(text)) = map.get_mut("description") {
        *text = unwrap_lines(text);
    }
    for (keyword, value) in map.iter_mut() {
        match (keyword.as_str(), value) {
            // Maps of names to schemas.
            ("$defs" | "properties" | "patternProperties", Value::Object(named)) => {
                named.values_mut().for_each(tidy);
            }
            // Lists of schemas.
            ("anyOf" | "oneOf" | "allOf" | "prefixItems", Value::Array(list)) => {
                list.iter_mut().for_each(tidy);
            }
            // One schema.
            ("items" | "additionalProperties" | "not" | "if" | "then" | "else" | "contains", v) => tidy(v),
            _ => {}
        }
    }
}

/// Joins the lines of each paragraph of `text` with spaces; paragraphs stay apart.
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| paragraph.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::{gateway_schema, to_pretty_json, unwrap_lines};

    #[test]
    fn unwraps_lines_within_paragraphs() {
        assert_eq!(unwrap_lines("one\ntwo\n\nthree"), "one two\n\nthree");
        assert_eq!(unwrap_lines("single"), "single");
    }

    #[test]
    fn pretty_json_puts_identity_first_and_defs_last() {
        let schema = gateway_schema();
        let text = to_pretty_json(&schema);
        assert!(text.starts_with("{\n  \"$schema\": \"https://json-schema.org/draft/2020-12/schema\",\n  \"$id\""));
        assert!(text.find("\"$defs\"").unwrap() > text.find("\"properties\"").unwrap());
        assert!(text.ends_with("}\n"));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), schema);
    }
}
