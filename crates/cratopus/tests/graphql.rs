//! GraphQL guards over real sockets, in front of a real GraphQL server (async-graphql's
//! `Schema::execute` behind a hyper handler): an allowed operation answered by the server and
//! logged with its name, type, depth and cost; depth, cost, alias, root-field, introspection and
//! batch refusals, GraphQL-shaped; malformed requests; an allow-list miss and hit; and the
//! automatic persisted-query protocol as Apollo clients drive it — a hash the gateway does not
//! know, the query sent with its hash, then the hash alone answered by the server, which always
//! receives a full query.

mod common_ops;

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};
use common_ops::{BIN, dump, gateway_with_org_files, metrics, read_lines, start_gateway};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::http::{Request, Response};
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, Reply, eventually, send};

const HOST: &str = "api.acme.test";

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
struct User {
    id: i32,
    name: String,
}

#[async_graphql::ComplexObject]
impl User {
    /// Friends: the next `first` users.
    async fn friends(&self, first: Option<i32>) -> Vec<User> {
        users(first.unwrap_or(3), self.id + 1)
    }
}

fn users(n: i32, from: i32) -> Vec<User> {
    (from..from + n.clamp(0, 100))
        .map(|id| User {
            id,
            name: format!("user-{id}"),
        })
        .collect()
}

struct Query;

#[Object]
impl Query {
    async fn users(&self, first: Option<i32>) -> Vec<User> {
        users(first.unwrap_or(10), 1)
    }
    async fn user(&self, id: i32) -> User {
        User {
            id,
            name: format!("user-{id}"),
        }
    }
    async fn version(&self) -> &str {
        "1.0"
    }
}

type Gql = Schema<Query, EmptyMutation, EmptySubscription>;

/// A GraphQL server: POST JSON (one request or a batch) and GET query strings, answered by
/// async-graphql. It keeps the requests it received.
async fn graphql_backend() -> (Backend, Arc<Mutex<Vec<Value>>>) {
    let schema: Gql = Schema::new(Query, EmptyMutation, EmptySubscription);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let backend = Backend::start(move |req, _peer| {
        let schema = schema.clone();
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let graphql_body = parts
                .headers
                .get("content-type")
                .is_some_and(|v| v == "application/graphql");
            let batch: async_graphql::BatchRequest = if parts.method == "GET" {
                let q = parts.uri.query().unwrap_or("");
                log.lock().unwrap().push(json!({"get": q}));
                async_graphql::http::parse_query_string(q).expect("query string").into()
            } else if graphql_body {
                let q = String::from_utf8_lossy(&bytes).into_owned();
                log.lock().unwrap().push(json!({"graphql": q}));
                async_graphql::Request::new(q).into()
            } else {
                let v: Value = serde_json::from_slice(&bytes).expect("the backend gets JSON");
                log.lock().unwrap().push(v.clone());
                serde_json::from_value(v).expect("a GraphQL request")
            };
            let answer = schema.execute_batch(batch).await;
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&answer).unwrap())))
                .unwrap()
        }
    })
    .await;
    (backend, seen)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn org(backend: &Backend, extra_routes: &str) -> String {
    format!(
        "name: acme
domains: [{HOST}]
upstreams:
  gql:
    targets: [\"{}\"]
routes:
  - name: graphql
    path: /graphql
    methods: [GET, POST]
    upstream: gql
    graphql:
      max_depth: 4
      max_cost: 300
      max_aliases: 2
      max_root_fields: 3
      introspection: false
      max_batch: 2
      cost:
        fields:
          Query.users: {{type: User, list: true}}
          User.friends: {{type: User, list: true}}
        types: {{User: 2}}
      apq: {{max_bytes: 1MiB}}
{extra_routes}",
        backend.url()
    )
}

const TOKEN: &str = "graphql-test-token-0123456789";

/// A gateway with a traffic log and an admin listener (its second address).
fn start(org: &str) -> Gateway {
    let yaml = gateway_with_org_files(
        "traffic_log:\n  path: traffic.log\nadmin:\n  bind: 127.0.0.1:0\n  token: ${ADMIN_TOKEN}\n",
    );
    tokio::task::block_in_place(|| {
        Gateway::start_with_env(BIN, &yaml, &[("orgs/acme.yaml", org)], &[("ADMIN_TOKEN", TOKEN)])
    })
}

async fn post_json(gw: &Gateway, path: &str, body: &Value) -> Reply {
    post(gw, path, "application/json", serde_json::to_vec(body).unwrap()).await
}

async fn post(gw: &Gateway, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
    let req = Request::post(gw.url(path))
        .header("host", HOST)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(&test_support::client(), req).await
}

async fn get(gw: &Gateway, path_and_query: &str) -> Reply {
    let req = Request::get(gw.url(path_and_query))
        .header("host", HOST)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&test_support::client(), req).await
}

/// `(status, extensions.code)` of a GraphQL-shaped refusal, checking its shape.
fn refusal(r: &Reply) -> (u16, String) {
    assert_eq!(r.header("content-type"), Some("application/json"), "{}", r.text());
    let doc = r.json();
    let errors = doc["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors list: {doc}"));
    assert_eq!(errors.len(), 1, "{doc}");
    assert!(errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{doc}");
    (
        r.status,
        errors[0]["extensions"]["code"].as_str().unwrap_or("").to_string(),
    )
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The traffic-log line of the request whose `X-Request-Id` the reply carries.
async fn log_line(gw: &Gateway, reply: &Reply) -> Value {
    let id = reply.header("x-request-id").expect("x-request-id").to_string();
    let path = gw.path("traffic.log");
    let mut found = None;
    let ok = eventually(Duration::from_secs(10), || {
        found = read_lines(&path).into_iter().find(|l| l["request_id"] == id.as_str());
        let done = found.is_some();
        async move { done }
    })
    .await;
    assert!(ok, "no log line for {id}{}", dump(gw));
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_operation_is_answered_by_the_server_and_logged() {
    let (backend, seen) = graphql_backend().await;
    let gw = start(&org(&backend, ""));

    // users(first: 5) { name friends(first: 2) { name } }:
    // 5 × (2 + 1 + 2 × (2 + 1)) = 45, depth 3.
    let q = "query Team($n: Int) { users(first: $n) { name friends(first: 2) { name } } version }";
    let r = post_json(
        &gw,
        "/graphql",
        &json!({"query": q, "operationName": "Team", "variables": {"n": 5}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}{}", r.text(), dump(&gw));
    let doc = r.json();
    assert_eq!(doc["data"]["users"].as_array().unwrap().len(), 5, "{doc}");
    assert_eq!(doc["data"]["users"][0]["friends"][1]["name"], "user-3");
    assert_eq!(doc["data"]["version"], "1.0");

    let line = log_line(&gw, &r).await;
    assert_eq!(line["graphql_operation"], "Team", "{line}");
    assert_eq!(line["graphql_type"], "query", "{line}");
    assert_eq!(line["graphql_depth"], 3, "{line}");
    assert_eq!(line["graphql_cost"], 5 * (2 + 1 + 2 * (2 + 1)) + 1, "{line}");

    // GET, and POST application/graphql.
    let r = get(
        &gw,
        &format!("/graphql?query={}", url_encode("{ user(id: 7) { name } }")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["user"]["name"], "user-7");
    let r = post(&gw, "/graphql", "application/graphql", b"{ version }".to_vec()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["version"], "1.0");
    // __typename is not introspection.
    let r = post_json(&gw, "/graphql", &json!({"query": "{ __typename version }"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["__typename"], "Query");
    assert!(seen.lock().unwrap().len() >= 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_over_the_limits_are_refused_as_graphql_errors() {
    let (backend, seen) = graphql_backend().await;
    let gw = start(&org(&backend, ""));
    let cases = [
        // Depth 5 over 4 (through a fragment).
        (
            json!({"query": "{ users(first: 1) { ...F } } fragment F on User { friends(first: 1) { friends(first: 1) { friends(first: 1) { name } } } }"}),
            "MAX_DEPTH_LIMIT",
        ),
        // Cost 50 × (2 + 1 + 10 × (2 + 1)) = 1650 over 300, the size of `users` from a variable.
        (
            json!({"query": "query($n: Int) { users(first: $n) { name friends(first: 10) { id } } }", "variables": {"n": 50}}),
            "COST_ESTIMATED_TOO_EXPENSIVE",
        ),
        // Three aliases over 2.
        (
            json!({"query": "{ a: version b: version c: version }"}),
            "MAX_ALIASES_LIMIT",
        ),
        // Four root fields over 3.
        (
            json!({"query": "{ version user(id: 1) { id } users(first: 1) { id } __typename }"}),
            "MAX_ROOT_FIELDS_LIMIT",
        ),
        // Introspection is off on this route.
        (
            json!({"query": "{ __schema { types { name } } }"}),
            "INTROSPECTION_DISABLED",
        ),
        (
            json!({"query": "{ user(id: 1) { ... on User { __type(name: \"User\") { name } } } }"}),
            "INTROSPECTION_DISABLED",
        ),
        // Malformed: a syntax error, a fragment cycle, no query, an unknown operation.
        (json!({"query": "{ users(first: ) { name }"}), "GRAPHQL_PARSE_FAILED"),
        (
            json!({"query": "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (json!({"operationName": "X"}), "INVALID_GRAPHQL_REQUEST"),
        (
            json!({"query": "query A { version }", "operationName": "B"}),
            "GRAPHQL_UNKNOWN_OPERATION_NAME",
        ),
        // A batch of 3 over 2.
        (
            json!([{"query": "{ version }"}, {"query": "{ version }"}, {"query": "{ version }"}]),
            "BATCH_LIMIT_EXCEEDED",
        ),
    ];
    for (body, code) in cases {
        let r = post_json(&gw, "/graphql", &body).await;
        assert_eq!(
            refusal(&r),
            (400, code.to_string()),
            "{body}: {}{}",
            r.text(),
            dump(&gw)
        );
    }
    // Not JSON at all.
    let r = post(&gw, "/graphql", "application/json", b"{\"query\": ".to_vec()).await;
    assert_eq!(refusal(&r), (400, "INVALID_GRAPHQL_REQUEST".into()));
    // A body the guard cannot read, and a mutation over GET.
    let r = post(&gw, "/graphql", "text/plain", b"{ version }".to_vec()).await;
    assert_eq!(refusal(&r), (415, "INVALID_CONTENT_TYPE".into()));
    let r = get(&gw, &format!("/graphql?query={}", url_encode("mutation { x }"))).await;
    assert_eq!(refusal(&r).0, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    // Over GET the limits are the same.
    let r = get(
        &gw,
        &format!("/graphql?query={}", url_encode("{ a: version b: version c: version }")),
    )
    .await;
    assert_eq!(refusal(&r), (400, "MAX_ALIASES_LIMIT".into()));
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused operation reached the server"
    );

    // The refusal is logged with its reason and the operation's numbers.
    let r = post_json(&gw, "/graphql", &json!({"query": "query Deep { users(first: 1) { friends(first: 1) { friends(first: 1) { friends(first: 1) { friends(first: 1) { id } } } } } }"})).await;
    assert_eq!(r.status, 400);
    let line = log_line(&gw, &r).await;
    assert_eq!(line["error"], "graphql_depth", "{line}");
    assert_eq!(line["graphql_operation"], "Deep", "{line}");
    assert_eq!(line["graphql_depth"], 6, "{line}");

    // Refusals are counted by reason in the metrics.
    let text = metrics(&gw, TOKEN).await;
    for (reason, n) in [
        ("graphql_depth", 2),
        ("graphql_aliases", 2),
        ("graphql_introspection", 2),
        ("graphql_batch", 1),
    ] {
        let sample =
            format!("cratopus_graphql_refusals_total{{org=\"acme\",route=\"graphql\",reason=\"{reason}\"}} {n}\n");
        assert!(text.contains(&sample), "no `{sample}` in\n{text}");
    }

    // A batch within the limit is answered whole by the server.
    let r = post_json(
        &gw,
        "/graphql",
        &json!([{"query": "{ version }"}, {"query": "{ user(id: 2) { name } }"}]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert_eq!(doc[1]["data"]["user"]["name"], "user-2", "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_list_lets_only_its_operations_through() {
    let (backend, seen) = graphql_backend().await;
    let allowed = "query Version { version }";
    let extra = format!(
        "  - name: safelisted
    path: /safe
    upstream: gql
    graphql:
      persisted_queries:
        allow: [\"{}\"]
        allow_file: allowed.txt
",
        sha256_hex(allowed)
    );
    let from_file = "{ user(id: 3) { name } }";
    let gw = start_gateway(
        &gateway_with_org_files("traffic_log:\n  path: traffic.log\n"),
        &[
            ("orgs/acme.yaml", &org(&backend, &extra)),
            (
                "orgs/allowed.txt",
                &format!("# the profile page\n{}\n", sha256_hex(from_file)),
            ),
        ],
    );
    let r = post_json(&gw, "/safe", &json!({"query": allowed})).await;
    assert_eq!(r.status, 200, "{}{}", r.text(), dump(&gw));
    assert_eq!(r.json()["data"]["version"], "1.0");
    let r = post_json(&gw, "/safe", &json!({"query": from_file})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let before = seen.lock().unwrap().len();
    // The same operation written differently is another text, so another hash.
    let r = post_json(&gw, "/safe", &json!({"query": "query Version {version}"})).await;
    assert_eq!(refusal(&r), (400, "PERSISTED_QUERY_NOT_IN_LIST".into()));
    let r = get(&gw, &format!("/safe?query={}", url_encode("{ users { name } }"))).await;
    assert_eq!(refusal(&r), (400, "PERSISTED_QUERY_NOT_IN_LIST".into()));
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic_persisted_queries_follow_the_apollo_protocol() {
    let (backend, seen) = graphql_backend().await;
    let gw = start(&org(&backend, ""));
    let q = "query Names { users(first: 2) { name } }";
    let hash = sha256_hex(q);
    let ext = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});

    // 1. The hash alone, unknown: PERSISTED_QUERY_NOT_FOUND as Apollo clients expect it (200,
    //    not cached), and the server is not asked.
    let r = post_json(&gw, "/graphql", &json!({"extensions": ext, "operationName": "Names"})).await;
    assert_eq!(
        refusal(&r),
        (200, "PERSISTED_QUERY_NOT_FOUND".into()),
        "{}{}",
        r.text(),
        dump(&gw)
    );
    assert_eq!(r.json()["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(r.header("cache-control"), Some("private, no-cache, must-revalidate"));
    assert!(seen.lock().unwrap().is_empty());

    // A query whose hash is not the one given is refused, and not stored.
    let wrong = json!({"persistedQuery": {"version": 1, "sha256Hash": sha256_hex("{ version }")}});
    let r = post_json(&gw, "/graphql", &json!({"query": q, "extensions": wrong})).await;
    assert_eq!(refusal(&r), (400, "PERSISTED_QUERY_HASH_MISMATCH".into()));

    // 2. The query with its hash: checked, stored, forwarded.
    let r = post_json(&gw, "/graphql", &json!({"query": q, "extensions": ext})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["users"][1]["name"], "user-2");
    assert_eq!(log_line(&gw, &r).await["graphql_apq"], "stored");

    // 3. The hash alone again: the server receives the full query and answers.
    let r = post_json(&gw, "/graphql", &json!({"extensions": ext, "operationName": "Names"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["users"][0]["name"], "user-1", "{}", r.text());
    let line = log_line(&gw, &r).await;
    assert_eq!(line["graphql_apq"], "hit", "{line}");
    assert_eq!(line["graphql_operation"], "Names", "{line}");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last["query"], q, "the server got {last}");
    assert_eq!(last["extensions"], ext);

    // The same over GET, as Apollo clients send it for CDN caching.
    let r = get(
        &gw,
        &format!(
            "/graphql?operationName=Names&extensions={}",
            url_encode(&serde_json::to_string(&ext).unwrap())
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["users"][1]["name"], "user-2", "{}", r.text());
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert!(last["get"].as_str().unwrap().contains("query="), "{last}");

    // A stored query is still judged: a hash of a query over the limits is never stored.
    let deep = "{ a: version b: version c: version }";
    let deep_ext = json!({"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(deep)}});
    let r = post_json(&gw, "/graphql", &json!({"query": deep, "extensions": deep_ext})).await;
    assert_eq!(refusal(&r), (400, "MAX_ALIASES_LIMIT".into()));
    let r = post_json(&gw, "/graphql", &json!({"extensions": deep_ext})).await;
    assert_eq!(refusal(&r), (200, "PERSISTED_QUERY_NOT_FOUND".into()));
}
