//! Every composition example of the seed (shared/seeds/003-krakend.txt), written as this crate's
//! config (KrakenD's `extra_config.proxy.flatmap_filter` and `proxy.sequential` are plain fields
//! here), run on the backend answers of `tests/fixtures`, asserting the whole output document.
//! Each test is named after the seed's endpoint.

use cratopus_compose::Endpoint;
use cratopus_compose::config::ComposeEndpointConfig;
use cratopus_compose::encode::{JSON, TEXT, XML};
use serde_json::{Value, json};

const ALICE: &str = include_str!("fixtures/alice.json");
const BOB: &str = include_str!("fixtures/bob.json");
const NUMBERS: &str = include_str!("fixtures/numbers.json");
/// What the seed's `/index.php` answers as an object, and with `?collection=true`.
const INDEX: &str = r#"{"id": 1, "name": "kraken", "tags": ["api", "gateway"]}"#;
const INDEX_COLLECTION: &str = r#"[{"id": 1, "name": "kraken"}, {"id": 2, "name": "octopus"}]"#;
const GOOGLE: &str = "<!doctype html><html><head><title>Google</title></head><body>Search</body></html>";

/// The outcome of one request: the URLs called, the body sent, its type, and whether complete.
struct Outcome {
    urls: Vec<String>,
    body: String,
    content_type: &'static str,
    complete: bool,
}

impl Outcome {
    fn json(&self) -> Value {
        assert_eq!(self.content_type, JSON);
        serde_json::from_str(&self.body).unwrap()
    }
}

/// Runs an endpoint as the engine will: each backend's URL rendered (sequentially with the
/// answers so far), its answer (`Ok(body)`, or `Err` for a failed call) read and merged, the
/// merge encoded. A URL that cannot be rendered stops the chain.
fn run(endpoint: Value, params: &[(&str, &str)], answers: &[Result<&str, &str>], accept: Option<&str>) -> Outcome {
    let cfg: ComposeEndpointConfig = serde_json::from_value(endpoint).unwrap();
    let names: Vec<String> = params.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(cfg.problems(&names), [], "config problems");
    let ep = Endpoint::compile(&cfg).unwrap();
    let mut agg = ep.aggregate::<String>();
    let mut urls = Vec::new();
    for (i, b) in ep.backends().iter().enumerate() {
        let url = match b.url().render(params, &agg.answers()) {
            Ok(u) => u,
            Err(e) => {
                assert!(ep.is_sequential(), "{e}");
                break;
            }
        };
        urls.push(url);
        match answers[i] {
            Ok(body) => match b.read(body.as_bytes()) {
                Ok(data) => agg.answered(i, data),
                Err(e) => agg.failed(i, e.to_string()),
            },
            Err(e) => agg.failed(i, e.to_string()),
        }
    }
    let merged = ep.finish(agg);
    let out = ep.encode(&merged.data, accept).unwrap();
    Outcome {
        urls,
        body: String::from_utf8(out.body.to_vec()).unwrap(),
        content_type: out.content_type,
        complete: merged.complete,
    }
}

// --- 4) Basic manipulation -------------------------------------------------------------------

#[test]
fn aggregation() {
    let out = run(
        json!({"backend": [{"url_pattern": "/users/alice.json"}, {"url_pattern": "/users/bob.json"}]}),
        &[],
        &[Ok(ALICE), Ok(BOB)],
        None,
    );
    assert_eq!(out.urls, ["/users/alice.json", "/users/bob.json"]);
    assert!(out.complete);
    // Top-level keys merged; `status` and `data` collide, the later backend's win.
    assert_eq!(
        out.json(),
        json!({
            "status": "active",
            "data": {"user": {"name": "Bob", "city": "London", "email": "bob@example.com", "age": 42}, "since": 2019},
            "preferences": {"language": "ca", "newsletter": true},
            "friends": ["alice", "carol"]
        })
    );
}

#[test]
fn group() {
    let out = run(
        json!({"backend": [
            {"url_pattern": "/users/alice.json", "group": "alice"},
            {"url_pattern": "/users/bob.json", "group": "bob"}
        ]}),
        &[],
        &[Ok(ALICE), Ok(BOB)],
        None,
    );
    let alice: Value = serde_json::from_str(ALICE).unwrap();
    let bob: Value = serde_json::from_str(BOB).unwrap();
    assert_eq!(out.json(), json!({"alice": alice, "bob": bob}));
}

#[test]
fn target() {
    let out = run(
        json!({"backend": [{"url_pattern": "/users/alice.json", "target": "data.user"}]}),
        &[],
        &[Ok(ALICE)],
        None,
    );
    assert_eq!(
        out.json(),
        json!({"name": "Alice", "city": "Barcelona", "age": 31, "role": "admin"})
    );
}

#[test]
fn mapping() {
    let out = run(
        json!({"backend": [{"url_pattern": "/users/bob.json", "mapping": {"data": "my_response", "status": "result"}}]}),
        &[],
        &[Ok(BOB)],
        None,
    );
    assert_eq!(
        out.json(),
        json!({
            "result": "active",
            "my_response": {"user": {"name": "Bob", "city": "London", "email": "bob@example.com", "age": 42}, "since": 2019},
            "friends": ["alice", "carol"]
        })
    );
}

#[test]
fn deny() {
    let out = run(
        json!({"backend": [{"url_pattern": "/users/bob.json", "deny": ["data"]}]}),
        &[],
        &[Ok(BOB)],
        None,
    );
    assert_eq!(out.json(), json!({"status": "active", "friends": ["alice", "carol"]}));
}

#[test]
fn allow() {
    let out = run(
        json!({"backend": [{"url_pattern": "/users/bob.json", "allow": ["data.user.name", "data.user.city"]}]}),
        &[],
        &[Ok(BOB)],
        None,
    );
    assert_eq!(out.json(), json!({"data": {"user": {"name": "Bob", "city": "London"}}}));
}

#[test]
fn flatmap_object() {
    let out = run(
        json!({"backend": [{
            "url_pattern": "/users/alice.json",
            "flatmap_filter": [
                { "type": "move", "args": ["data.user","details"] },
                { "type": "move", "args": ["details.name","name"] },
                { "type": "del","args": ["status", "data"] }
            ]
        }]}),
        &[],
        &[Ok(ALICE)],
        None,
    );
    assert_eq!(
        out.json(),
        json!({
            "details": {"city": "Barcelona", "age": 31, "role": "admin"},
            "name": "Alice",
            "preferences": {"language": "ca", "newsletter": true}
        })
    );
}

#[test]
fn flatmap_collection() {
    let out = run(
        json!({"backend": [{
            "url_pattern": "/numbers.json",
            "flatmap_filter": [
                { "type": "del", "args": ["numerals.0"] },
                { "type": "move", "args": ["numerals.*.numeral", "numerals.*.number"] },
                { "type": "move", "args": ["numerals.*.english", "numerals.*.name"] },
                { "type": "del", "args": ["numerals.*.spanish"] },
                { "type": "move", "args": ["numerals", "numbers"] }
            ]
        }]}),
        &[],
        &[Ok(NUMBERS)],
        None,
    );
    assert_eq!(
        out.json(),
        json!({"numbers": [
            {"number": 1, "name": "one"},
            {"number": 2, "name": "two"},
            {"number": 3, "name": "three"}
        ]})
    );
}

// --- 3) Routing and forwarding ---------------------------------------------------------------

/// "Declare endpoints and backends": `/users/{id}` to two GitHub users, each in a group.
#[test]
fn users_id_declare_endpoints_and_backends() {
    let out = run(
        json!({"backend": [
            {"url_pattern": "/users/{id}", "group": "fathi"},
            {"url_pattern": "/users/hafizan", "group": "hafizan"}
        ]}),
        &[("id", "abdullahfathi")],
        &[
            Ok(r#"{"login": "abdullahfathi", "id": 1}"#),
            Ok(r#"{"login": "hafizan", "id": 2}"#),
        ],
        None,
    );
    assert_eq!(out.urls, ["/users/abdullahfathi", "/users/hafizan"]);
    assert_eq!(
        out.json(),
        json!({"fathi": {"login": "abdullahfathi", "id": 1}, "hafizan": {"login": "hafizan", "id": 2}})
    );
}

/// "Sequential Proxy": the second call uses a field of the first answer.
#[test]
fn hotel_id_sequential() {
    let out = run(
        json!({"sequential": true, "backend": [
            {"url_pattern": "/hotels/{id}.json"},
            {"url_pattern": "/calendar/{resp0_calendar_id}.json"}
        ]}),
        &[("id", "1")],
        &[
            Ok(r#"{"hotel_id": 1, "name": "Hotel Kraken", "calendar_id": 12}"#),
            Ok(r#"{"calendar_id": 12, "dates": ["2024-06-01", "2024-06-02"]}"#),
        ],
        None,
    );
    assert_eq!(out.urls, ["/hotels/1.json", "/calendar/12.json"]);
    assert!(out.complete);
    assert_eq!(
        out.json(),
        json!({"hotel_id": 1, "name": "Hotel Kraken", "calendar_id": 12, "dates": ["2024-06-01", "2024-06-02"]})
    );
}

/// "Sequential Proxy", failing: the field does not exist, the chain stops, the first answer is
/// returned, incomplete.
#[test]
fn hotel_failing_id_sequential() {
    let out = run(
        json!({"sequential": true, "backend": [
            {"url_pattern": "/hotels/{id}.json"},
            {"url_pattern": "/calendar/{resp0_unexisting_field}.json"}
        ]}),
        &[("id", "1")],
        &[
            Ok(r#"{"hotel_id": 1, "name": "Hotel Kraken", "calendar_id": 12}"#),
            Ok("{}"),
        ],
        None,
    );
    assert_eq!(out.urls, ["/hotels/1.json"]);
    assert!(!out.complete);
    assert_eq!(
        out.json(),
        json!({"hotel_id": 1, "name": "Hotel Kraken", "calendar_id": 12})
    );
}

/// "Parameter forwarding", `/mandatory/{id}`: a parameter in the backend's query.
#[test]
fn mandatory_id() {
    let out = run(
        json!({"backend": [{"url_pattern": "/__echo/?id={id}"}]}),
        &[("id", "42")],
        &[Ok(r#"{"req_uri": "/__echo/?id=42"}"#)],
        None,
    );
    assert_eq!(out.urls, ["/__echo/?id=42"]);
}

/// "Proxy-like features": `/no-op` passes the answer through; the config says so.
#[test]
fn no_op() {
    let cfg: ComposeEndpointConfig = serde_json::from_value(json!({
        "output_encoding": "no-op",
        "backend": [{"encoding": "no-op", "url_pattern": "/status"}]
    }))
    .unwrap();
    assert_eq!(cfg.problems(&[]), []);
    assert!(Endpoint::compile(&cfg).unwrap().is_pass_through());
    let default: ComposeEndpointConfig =
        serde_json::from_value(json!({"backend": [{"url_pattern": "/status"}]})).unwrap();
    assert!(!Endpoint::compile(&default).unwrap().is_pass_through());
}

// --- 4.1) Encoding ---------------------------------------------------------------------------

#[test]
fn xml() {
    let out = run(
        json!({"output_encoding": "xml", "backend": [{"url_pattern": "/index.php", "encoding": "json"}]}),
        &[],
        &[Ok(INDEX)],
        None,
    );
    assert_eq!(out.content_type, XML);
    assert_eq!(
        out.body,
        "<doc><id>1</id><name>kraken</name><tags>api</tags><tags>gateway</tags></doc>"
    );
}

#[test]
fn collection() {
    let out = run(
        json!({"output_encoding": "json", "backend": [
            {"is_collection": true, "url_pattern": "/index.php?collection=true", "encoding": "json"}
        ]}),
        &[],
        &[Ok(INDEX_COLLECTION)],
        None,
    );
    assert_eq!(out.urls, ["/index.php?collection=true"]);
    assert_eq!(
        out.json(),
        json!({"collection": [{"id": 1, "name": "kraken"}, {"id": 2, "name": "octopus"}]})
    );
}

#[test]
fn safe_collection() {
    let out = run(
        json!({"output_encoding": "json", "backend": [{
            "url_pattern": "/index.php?collection=true",
            "encoding": "safejson",
            "mapping": {"collection": "SOMETHING_ELSE"}
        }]}),
        &[],
        &[Ok(INDEX_COLLECTION)],
        None,
    );
    assert_eq!(
        out.json(),
        json!({"SOMETHING_ELSE": [{"id": 1, "name": "kraken"}, {"id": 2, "name": "octopus"}]})
    );
    // The same endpoint on an object answer: safejson takes it as it is.
    let out = run(
        json!({"backend": [{"url_pattern": "/index.php", "encoding": "safejson", "mapping": {"collection": "SOMETHING_ELSE"}}]}),
        &[],
        &[Ok(INDEX)],
        None,
    );
    assert_eq!(out.json(), serde_json::from_str::<Value>(INDEX).unwrap());
}

/// Not in the seed: `is_collection` with a `mapping` of `collection`, the other way the brief
/// names the wrapping key.
#[test]
fn collection_renamed_by_mapping() {
    let out = run(
        json!({"backend": [{"is_collection": true, "url_pattern": "/index.php?collection=true", "mapping": {"collection": "items"}}]}),
        &[],
        &[Ok(INDEX_COLLECTION)],
        None,
    );
    assert_eq!(
        out.json(),
        json!({"items": [{"id": 1, "name": "kraken"}, {"id": 2, "name": "octopus"}]})
    );
}

#[test]
fn collection_as_it_was() {
    let out = run(
        json!({"output_encoding": "json-collection", "backend": [
            {"is_collection": true, "url_pattern": "/index.php?collection=true", "encoding": "json"}
        ]}),
        &[],
        &[Ok(INDEX_COLLECTION)],
        None,
    );
    assert_eq!(out.json(), serde_json::from_str::<Value>(INDEX_COLLECTION).unwrap());
}

#[test]
fn negotiate() {
    let ep = json!({"output_encoding": "negotiate", "backend": [{"url_pattern": "/index.php", "encoding": "json"}]});
    let out = run(ep.clone(), &[], &[Ok(INDEX)], Some("application/json"));
    assert_eq!(out.json(), serde_json::from_str::<Value>(INDEX).unwrap());
    let out = run(ep.clone(), &[], &[Ok(INDEX)], Some("application/xml"));
    assert_eq!(out.content_type, XML);
    assert_eq!(
        out.body,
        "<doc><id>1</id><name>kraken</name><tags>api</tags><tags>gateway</tags></doc>"
    );
    let out = run(ep, &[], &[Ok(INDEX)], Some("application/yaml"));
    assert_eq!(
        serde_saphyr::from_str::<Value>(&out.body).unwrap(),
        serde_json::from_str::<Value>(INDEX).unwrap()
    );
}

#[test]
fn string() {
    let out = run(
        json!({"output_encoding": "string", "backend": [{"encoding": "string", "url_pattern": "/"}]}),
        &[],
        &[Ok(GOOGLE)],
        None,
    );
    assert_eq!((out.content_type, out.body.as_str()), (TEXT, GOOGLE));
}

#[test]
fn string_in_object() {
    let out = run(
        json!({"output_encoding": "json", "backend": [{"encoding": "string", "url_pattern": "/"}]}),
        &[],
        &[Ok(GOOGLE)],
        None,
    );
    assert_eq!(out.json(), json!({"content": GOOGLE}));
}

// --- 4.2) Status codes, 6.2) Timeout: partial answers ----------------------------------------

/// `/mixed`: one backend answers, the other 404s; the answer is the first, incomplete.
#[test]
fn mixed() {
    let out = run(
        json!({"backend": [{"url_pattern": "/status"}, {"url_pattern": "/this-url-likely-does-not-exist"}]}),
        &[],
        &[Ok(r#"{"status": "good"}"#), Err("404 Not Found")],
        None,
    );
    assert!(!out.complete);
    assert_eq!(out.json(), json!({"status": "good"}));
}

/// `/interpretation-bad-encoding`: HTML from a JSON backend fails that backend.
#[test]
fn interpretation_bad_encoding() {
    let cfg: ComposeEndpointConfig = serde_json::from_value(json!({"backend": [{"url_pattern": "/"}]})).unwrap();
    let ep = Endpoint::compile(&cfg).unwrap();
    let e = ep.backends()[0].read(GOOGLE.as_bytes()).unwrap_err();
    assert!(e.to_string().starts_with("invalid JSON"), "{e}");
    let mut agg = ep.aggregate::<String>();
    agg.failed(0, e.to_string());
    assert!(ep.finish(agg).is_failure());
}

/// `/semi-slow`: the delayed backend times out, the speedy one's answer is returned, incomplete.
#[test]
fn semi_slow() {
    let out = run(
        json!({"backend": [{"url_pattern": "/delayed/"}, {"url_pattern": "/speedy/"}]}),
        &[],
        &[Err("timeout"), Ok(r#"{"speedy": true}"#)],
        None,
    );
    assert!(!out.complete);
    assert_eq!(out.json(), json!({"speedy": true}));
}

// --- The endpoint-level flatmap (KrakenD's "after merging all the backend responses") --------

#[test]
fn endpoint_flatmap_after_the_merge() {
    let out = run(
        json!({
            "backend": [
                {"url_pattern": "/users/alice.json", "group": "alice"},
                {"url_pattern": "/users/bob.json", "group": "bob"}
            ],
            "flatmap_filter": [
                {"type": "move", "args": ["alice.data.user.name", "names.alice"]},
                {"type": "move", "args": ["bob.data.user.name", "names.bob"]},
                {"type": "del", "args": ["alice", "bob"]}
            ]
        }),
        &[],
        &[Ok(ALICE), Ok(BOB)],
        None,
    );
    assert_eq!(out.json(), json!({"names": {"alice": "Alice", "bob": "Bob"}}));
}
