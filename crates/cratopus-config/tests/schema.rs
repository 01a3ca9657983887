//! The JSON Schemas of `gateway.yaml` and of an organization file (`cratopus schema`): they are
//! valid draft 2020-12 schemas, every example config passes them, they refuse what the parser
//! refuses (unknown keys, wrong types, bad units) and their defaults are the parser's defaults.

use cratopus_config::interpolate::interpolate;
use cratopus_config::units::{DURATION_PATTERN, SIZE_PATTERN, parse_duration, parse_size};
use cratopus_config::{GatewayConfig, OrganizationConfig, gateway_schema, organization_schema};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Checks `schema` against its meta-schema, then compiles it.
fn validator(schema: &Value) -> jsonschema::Validator {
    if let Err(e) = jsonschema::meta::validate(schema) {
        panic!("not a valid JSON Schema: {e} at {}", e.instance_path());
    }
    jsonschema::draft202012::new(schema).unwrap_or_else(|e| panic!("the schema does not compile: {e}"))
}

/// The problems of `instance`, one line each; empty when it passes.
fn problems(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { strict_booleans: true, with_snippet: false }
}

/// Reads YAML as the loader does: `${VAR:-default}` (no variable set, so defaults), strict
/// booleans.
fn yaml_value(file: &Path, text: &str) -> Value {
    let text = interpolate(file, text, &|_| None).unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
    serde_saphyr::from_str_with_options(&text, yaml_options())
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn yaml_files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// `examples/*/gateway.yaml` and `examples/*/orgs/*.yaml`.
fn example_files() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(examples())
        .expect("examples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let gateways = dirs
        .iter()
        .map(|d| d.join("gateway.yaml"))
        .filter(|p| p.is_file())
        .collect();
    let orgs = dirs.iter().flat_map(|d| yaml_files_in(&d.join("orgs"))).collect();
    (gateways, orgs)
}

#[test]
fn schemas_are_valid_draft_2020_12() {
    for (schema, id, root_type) in [
        (
            gateway_schema(),
            cratopus_config::schema::GATEWAY_SCHEMA_ID,
            "GatewayConfig",
        ),
        (
            organization_schema(),
            cratopus_config::schema::ORGANIZATION_SCHEMA_ID,
            "OrganizationConfig",
        ),
    ] {
        validator(&schema);
        assert_eq!(schema["$schema"], DRAFT_2020_12, "{root_type}");
        assert_eq!(schema["$id"], id, "{root_type}");
        assert!(
            schema["title"].as_str().is_some_and(|t| t.starts_with("cratopus ")),
            "{root_type}"
        );
        assert_eq!(schema["type"], "object", "{root_type}");
        // Every `$ref` points at a definition that is there.
        let mut refs = Vec::new();
        collect_refs(&schema, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix("#/$defs/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            assert!(
                schema["$defs"].get(name).is_some(),
                "{root_type}: $ref {r} has no definition"
            );
        }
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    ("default" | "examples" | "const", _) => {}
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_example_passes() {
    let (gateways, orgs) = example_files();
    assert!(
        gateways.len() >= 2,
        "expected the example gateway.yaml files, found {gateways:?}"
    );
    assert!(
        orgs.len() >= 2,
        "expected the example organization files, found {orgs:?}"
    );
    let gateway = validator(&gateway_schema());
    let organization = validator(&organization_schema());
    let mut failures = Vec::new();
    for (files, v) in [(&gateways, &gateway), (&orgs, &organization)] {
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            for p in problems(v, &yaml_value(file, &text)) {
                failures.push(format!("{}: {p}", file.display()));
            }
        }
    }
    let default = yaml_value(Path::new("default.yaml"), cratopus_config::EMBEDDED_DEFAULT);
    for p in problems(&gateway, &default) {
        failures.push(format!("embedded default: {p}"));
    }
    assert!(
        failures.is_empty(),
        "examples the schema refuses:\n{}",
        failures.join("\n")
    );
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Gateway,
    Org,
}

/// Whether the parser takes `text` as a file of this kind (serde only, not the later checks).
fn parser_accepts(kind: Kind, text: &str) -> Result<(), String> {
    let r = match kind {
        Kind::Gateway => serde_saphyr::from_str_with_options::<GatewayConfig>(text, yaml_options()).map(drop),
        Kind::Org => serde_saphyr::from_str_with_options::<OrganizationConfig>(text, yaml_options()).map(drop),
    };
    r.map_err(|e| e.to_string())
}

fn schema_problems(kind: Kind, text: &str) -> Vec<String> {
    let schema = match kind {
        Kind::Gateway => gateway_schema(),
        Kind::Org => organization_schema(),
    };
    problems(&validator(&schema), &yaml_value(Path::new("case.yaml"), text))
}

use Kind::{Gateway, Org};

const VALID: &[(Kind, &str)] = &[
    (Gateway, "{}"),
    (Gateway, "shutdown_timeout: 500ms"),
    (Gateway, "shutdown_timeout: 5"),
    (Gateway, "shutdown_timeout: 1.5"),
    (Gateway, "shutdown_timeout: '2m'"),
    (Gateway, "shutdown_timeout: 1h"),
    (
        Gateway,
        "limits: {max_header_bytes: 65536, max_body_bytes: 10MiB, header_read_timeout: 10s, max_headers: 100}",
    ),
    (Gateway, "limits: {max_body_bytes: 64kb}"),
    (
        Gateway,
        "traffic_log: {path: '-', max_size: 1GiB, keep: 3, queue: 1024}",
    ),
    (Gateway, "traffic_log: ~"),
    (
        Gateway,
        "workers: 1\nwatch: false\ndefault_organization: a\nhealth_path: /ping",
    ),
    (
        Gateway,
        "listeners: [{bind: '127.0.0.1:0'}, {name: admin, bind: '[::1]:9000'}]",
    ),
    (Gateway, "organizations: orgs/*.yaml"),
    (Gateway, "organizations: {name: a}"),
    (Gateway, "organizations: [orgs/a.yaml, {name: b, domains: [b.test]}]"),
    (Gateway, "organizations: []"),
    (Org, "name: a"),
    (
        Org,
        "name: a
domains: [a.test, '*.a.test']
upstreams:
  u:
    targets: ['mirror://', {url: 'http://a:1', weight: 3}, {url: 'http://b:1'}]
    balance: consistent_hash
    hash_on: {cookie: session}
    health_check: {type: tcp, path: /h, expect_status: 204, interval: 1s, timeout: 500ms,
                   healthy_threshold: 1, unhealthy_threshold: 3}
    timeouts: {connect: 1s, response: 2s, idle: 3s}
    protocol: h2c
    dns_refresh: 10s
    preserve_host: true
    max_idle_per_target: 8
  v:
    targets: ['http://c']
    balance: power_of_two
    hash_on: client_ip
    health_check: {}
routes:
  - {name: r, path: '/a/{id}', methods: [GET, PUT], upstream: u, strip_prefix: /a,
     rewrite: '/b/{id}', timeout: 250ms, max_body_bytes: 1MiB}
  - {path: '/{*rest}', upstream: v}
  - path: /s
    split:
      backends: [{upstream: u, weight: 99}, {upstream: v, weight: 1, canary: true, name: next}]
      sticky: {cookie: uid}
      override: {header: X-Canary}
      rollback: {max_error_rate: 0.05, max_p95_ratio: 2.0, min_requests: 100, window: 30s}",
    ),
];

const INVALID: &[(Kind, &str)] = &[
    // Unknown keys, at every depth.
    (Gateway, "timout: 5s"),
    (Gateway, "limits: {header_read_timout: 5s}"),
    (
        Gateway,
        "organizations: [{name: a, routes: [{path: /, upstream: u, timout: 5s}]}]",
    ),
    (Org, "name: a\nroutes: [{path: /, upstream: u, timout: 5s}]"),
    (Org, "name: a\nupstreams: {u: {targets: [x], timeouts: {timout: 5s}}}"),
    (
        Org,
        "name: a\nupstreams: {u: {targets: [{url: x, weight: 1, extra: 1}]}}",
    ),
    // Wrong types.
    (Gateway, "workers: many"),
    (Gateway, "workers: -1"),
    (Gateway, "watch: yes"),
    (Gateway, "listeners: {bind: x}"),
    (Gateway, "organizations: ~"),
    (Gateway, "organizations: 5"),
    (Org, "name: a\nupstreams: {u: {targets: [5]}}"),
    (Org, "name: a\nupstreams: {u: {targets: x}}"),
    (Org, "name: a\nroutes: [{path: /, upstream: u, methods: GET}]"),
    (Org, "name: a\ndomains: a.test"),
    // Missing required keys.
    (Gateway, "listeners: [{name: a}]"),
    (Gateway, "traffic_log: {keep: 3}"),
    (Org, "domains: [a.test]"),
    // `targets` may be left out (with `discovery`; validation wants one of them), but a
    // discovery source needs its keys.
    (Org, "name: a\nupstreams: {u: {discovery: {dns_srv: {}}}}"),
    (Org, "name: a\nupstreams: {u: {targets: [{weight: 2}]}}"),
    // Units and names the parser does not know.
    (Gateway, "shutdown_timeout: 5 parsecs"),
    (Gateway, "shutdown_timeout: fast"),
    (Gateway, "shutdown_timeout: 5S"),
    (Gateway, "shutdown_timeout: -5"),
    (Gateway, "limits: {max_header_bytes: 12 bananas}"),
    (Gateway, "limits: {max_header_bytes: 1.5MiB}"),
    (Gateway, "limits: {max_header_bytes: 1024.5}"),
    (Org, "name: a\nupstreams: {u: {targets: [x], balance: random}}"),
    (Org, "name: a\nupstreams: {u: {targets: [x], hash_on: ip}}"),
    (Org, "name: a\nupstreams: {u: {targets: [x], hash_on: {ip: x}}}"),
    (Org, "name: a\nupstreams: {u: {targets: [x], protocol: h3}}"),
    (Org, "name: a\nroutes: [{path: /, split: {backends: [{upstream: u}]}}]"),
    (Org, "name: a\nroutes: [{path: /, split: {backends: [], sticky: ip}}]"),
    (
        Org,
        "name: a\nroutes: [{path: /, split: {backends: [], rollback: {window: soon}}}]",
    ),
    (
        Org,
        "name: a\nupstreams: {u: {targets: [x], health_check: {type: udp}}}",
    ),
];

/// Every case is judged the same by the schema and by the parser.
#[test]
fn schema_and_parser_agree() {
    let mut disagreements = Vec::new();
    for (expect_valid, cases) in [(true, VALID), (false, INVALID)] {
        for &(kind, text) in cases {
            let schema = schema_problems(kind, text);
            let parser = parser_accepts(kind, text);
            if schema.is_empty() != expect_valid || parser.is_ok() != expect_valid {
                disagreements.push(format!(
                    "{kind:?} {text:?}: expected {}, schema: {schema:?}, parser: {parser:?}",
                    if expect_valid { "valid" } else { "invalid" }
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "\n{}", disagreements.join("\n"));
}

#[test]
fn unknown_key_is_refused_where_it_is() {
    let found = schema_problems(Org, "name: a\nroutes:\n  - {path: /, upstream: u, timout: 5s}\n");
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("/routes/0: ") && p.contains("timout")),
        "{found:?}"
    );
    let found = schema_problems(Gateway, "shutdown_timeout: 5s\ntimout: 5s\n");
    assert!(found.iter().any(|p| p.contains("timout")), "{found:?}");
}

#[test]
fn wrong_type_is_refused_where_it_is() {
    let found = schema_problems(Gateway, "workers: many\n");
    assert!(found.iter().any(|p| p.starts_with("/workers: ")), "{found:?}");
    let found = schema_problems(Org, "name: a\nupstreams: {u: {targets: [x], preserve_host: 1}}\n");
    assert!(
        found.iter().any(|p| p.starts_with("/upstreams/u/preserve_host: ")),
        "{found:?}"
    );
    assert!(parser_accepts(Org, "name: a\nupstreams: {u: {targets: [x], preserve_host: 1}}\n").is_err());
}

/// Where the schema knowingly differs from the parser. The parser reads a quoted scalar as the
/// number or boolean a key expects (and a number as a string); the schema asks for the plain
/// type, so an editor flags `workers: '2'`. A weight of 0 passes the parser but `cratopus check`
/// refuses it, and so does the schema.
#[test]
fn known_differences() {
    for (kind, text) in [
        (Gateway, "workers: '2'"),
        (Gateway, "watch: 'true'"),
        (Gateway, "organizations: [{name: 42}]"),
        (Org, "name: a\nupstreams: {u: {targets: [{url: x, weight: 0}]}}"),
    ] {
        assert!(parser_accepts(kind, text).is_ok(), "{text}");
        assert!(!schema_problems(kind, text).is_empty(), "{text}");
    }
}

/// The string patterns of durations and sizes accept what `parse_duration`/`parse_size` accept.
#[test]
fn unit_patterns_match_the_parsers() {
    let duration = jsonschema::draft202012::new(&json!({ "type": "string", "pattern": DURATION_PATTERN })).unwrap();
    for s in [
        "250ms",
        "5s",
        "1.5s",
        "2m",
        "1h",
        "1d",
        "7",
        "5 s",
        " 5s ",
        "5.",
        ".5s",
        "1min",
        "3us",
        "3µs",
        "0",
        "5 parsecs",
        "fast",
        "",
        "s",
        "1.2.3s",
        "-5s",
        "+5s",
        "5S",
        "5ms s",
        "1e3s",
        "5sec",
        "5 m s",
        "ms",
    ] {
        assert_eq!(
            duration.is_valid(&json!(s)),
            parse_duration(s).is_ok(),
            "duration {s:?}"
        );
    }
    let size = jsonschema::draft202012::new(&json!({ "type": "string", "pattern": SIZE_PATTERN })).unwrap();
    for s in [
        "512",
        "64KiB",
        "64kib",
        "64 KiB",
        "10MB",
        "1g",
        "1GB",
        "7b",
        "7B",
        "3K",
        "3m",
        "2Gib",
        " 9 ",
        "12 bananas",
        "1.5MiB",
        "-1",
        "KiB",
        "64Ki",
        "",
        "64 K iB",
        "1TiB",
        "1kibb",
        "0x10",
    ] {
        assert_eq!(size.is_valid(&json!(s)), parse_size(s).is_ok(), "size {s:?}");
    }
}

/// `$defs/NAME/properties/*/default` (or the root's) filled into `base`.
fn with_defaults(schema: &Value, def: Option<&str>, mut base: Value) -> Value {
    let properties = match def {
        Some(name) => &schema["$defs"][name]["properties"],
        None => &schema["properties"],
    };
    let properties = properties.as_object().expect("properties");
    let obj = base.as_object_mut().unwrap();
    for (key, prop) in properties {
        if let Some(default) = prop.get("default") {
            obj.entry(key.clone()).or_insert_with(|| default.clone());
        }
    }
    base
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    // JSON is YAML: read it as a config file is read.
    let text = serde_json::to_string(value).unwrap();
    serde_saphyr::from_str_with_options(&text, yaml_options()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Writing out every default the schema shows gives the config that leaving them out gives.
#[test]
fn defaults_are_the_parsers_defaults() {
    let gateway = gateway_schema();
    let explicit = with_defaults(&gateway, None, json!({}));
    for key in ["listeners", "health_path", "limits", "shutdown_timeout", "watch"] {
        assert!(explicit.get(key).is_some(), "no default shown for `{key}`");
    }
    assert_eq!(explicit["shutdown_timeout"], "30s");
    let (a, b): (GatewayConfig, GatewayConfig) = (parse(&json!({})), parse(&explicit));
    assert_eq!(format!("{a:?}"), format!("{b:?}"));

    let org = organization_schema();
    let target = &org["$defs"]["TargetConfig"]["anyOf"][1];
    let bare = json!({ "targets": [{ "url": "http://a" }], "health_check": {} });
    let mut full = with_defaults(&org, Some("UpstreamConfig"), bare.clone());
    full["health_check"] = with_defaults(&org, Some("HealthCheckConfig"), json!({}));
    full["targets"][0]["weight"] = target["properties"]["weight"]["default"].clone();
    for key in [
        "balance",
        "timeouts",
        "protocol",
        "dns_refresh",
        "preserve_host",
        "max_idle_per_target",
    ] {
        assert!(full.get(key).is_some(), "no default shown for upstream `{key}`");
    }
    let (a, b): (cratopus_config::UpstreamConfig, cratopus_config::UpstreamConfig) = (parse(&bare), parse(&full));
    assert_eq!(a, b);
}

/// A default the schema shows passes the schema it is the default of.
#[test]
fn defaults_pass_the_schema() {
    for root in [gateway_schema(), organization_schema()] {
        let mut found = Vec::new();
        collect_defaults(&root, "", &mut found);
        assert!(found.len() >= 10, "{found:?}");
        for (pointer, sub, default) in found {
            let check = json!({ "$schema": DRAFT_2020_12, "$defs": root["$defs"], "allOf": [sub] });
            let v = jsonschema::draft202012::new(&check).unwrap();
            assert!(v.is_valid(&default), "{pointer}: default {default} fails {sub}");
        }
    }
}

/// (JSON pointer, schema without its default, default) for every schema that shows a default.
fn collect_defaults(value: &Value, pointer: &str, out: &mut Vec<(String, Value, Value)>) {
    match value {
        Value::Object(map) => {
            if let Some(default) = map.get("default") {
                let mut sub = map.clone();
                sub.remove("default");
                out.push((pointer.to_string(), Value::Object(sub), default.clone()));
            }
            for (k, v) in map {
                if !matches!(k.as_str(), "default" | "examples" | "const") {
                    collect_defaults(v, &format!("{pointer}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_defaults(v, &format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The schema follows the serde attributes: `deny_unknown_fields`, `rename`, `rename_all`, the
/// enums, required keys, and `Spanned<T>` fields appear as `T`; doc comments are descriptions.
#[test]
fn schema_follows_the_serde_attributes() {
    let gw = gateway_schema();
    let org = organization_schema();
    // deny_unknown_fields everywhere: every object schema with properties closes them.
    for root in [&gw, &org] {
        let mut objects = Vec::new();
        collect_property_schemas(root, &mut objects);
        assert!(objects.len() >= 8);
        for o in objects {
            assert_eq!(o["additionalProperties"], false, "{o}");
        }
    }
    assert_eq!(org["required"], json!(["name"]));
    assert_eq!(org["properties"]["name"]["type"], "string");
    assert_eq!(org["properties"]["domains"]["items"]["type"], "string");
    let route = &org["$defs"]["RouteConfig"];
    // `upstream` or `split`: which one is checked by validation, with the route's line.
    assert_eq!(route["required"], json!(["path"]));
    assert_eq!(route["properties"]["path"]["type"], "string");
    assert_eq!(route["properties"]["methods"]["items"]["type"], "string");
    assert_eq!(
        gw["properties"]["default_organization"]["type"],
        json!(["string", "null"])
    );
    let hc = &org["$defs"]["HealthCheckConfig"]["properties"];
    assert!(hc.get("type").is_some() && hc.get("kind").is_none(), "{hc}");
    let balance: Vec<&Value> = org["$defs"]["Balance"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["const"])
        .collect();
    assert_eq!(
        balance,
        [
            &json!("round_robin"),
            &json!("least_connections"),
            &json!("power_of_two"),
            &json!("consistent_hash")
        ]
    );
    let description = gw["properties"]["shutdown_timeout"]["description"].as_str().unwrap();
    assert!(description.contains("SIGTERM"), "{description}");
    let description = gw["$defs"]["Limits"]["properties"]["header_read_timeout"]["description"]
        .as_str()
        .unwrap();
    assert!(!description.contains('\n'), "{description:?}");
    // Inline organizations in gateway.yaml use the same definition as organization files.
    assert_eq!(gw["$defs"]["OrganizationConfig"], org_without_root_keys(&org));
}

/// The organization schema's root as a definition: without `$schema`, `$id`, `title`, `$defs`.
fn org_without_root_keys(org: &Value) -> Value {
    let mut o = org.clone();
    let map = o.as_object_mut().unwrap();
    for key in ["$schema", "$id", "title", "$defs"] {
        map.remove(key);
    }
    o
}

fn collect_property_schemas<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if map.get("properties").is_some_and(Value::is_object) && map.get("type") == Some(&json!("object")) {
                out.push(value);
            }
            for (k, v) in map {
                if !matches!(k.as_str(), "default" | "examples" | "const") {
                    collect_property_schemas(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_property_schemas(v, out)),
        _ => {}
    }
}

/// The schemas use only keywords that mean the same in draft-07, which the YAML language server
/// (the usual editor integration) validates with: `$defs` is reached as a plain JSON pointer.
#[test]
fn schemas_use_keywords_editors_know() {
    // `patternErrorMessage` is no JSON Schema keyword: it is the message VS Code and the YAML
    // language server show when a value does not match a `pattern`.
    const KNOWN: &str = "$schema $id $ref $defs title description default examples type properties \
                         additionalProperties required items anyOf oneOf const pattern minimum maximum format \
                         patternErrorMessage enum";
    for root in [gateway_schema(), organization_schema()] {
        let mut used = Vec::new();
        collect_keywords(&root, &mut used);
        used.sort();
        used.dedup();
        let known: Vec<&str> = KNOWN.split_whitespace().collect();
        let unknown: Vec<_> = used.iter().filter(|k| !known.contains(&k.as_str())).collect();
        assert!(unknown.is_empty(), "keywords beyond draft-07's common set: {unknown:?}");
    }
}

/// The keywords of `schema` and of its subschemas.
fn collect_keywords(schema: &Value, out: &mut Vec<String>) {
    let Value::Object(map) = schema else { return };
    for (keyword, value) in map {
        out.push(keyword.clone());
        match (keyword.as_str(), value) {
            ("$defs" | "properties", Value::Object(named)) => named.values().for_each(|s| collect_keywords(s, out)),
            ("anyOf" | "oneOf" | "allOf", Value::Array(list)) => list.iter().for_each(|s| collect_keywords(s, out)),
            ("items" | "additionalProperties" | "not", s) => collect_keywords(s, out),
            _ => {}
        }
    }
}
