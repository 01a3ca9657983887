//! The gateway's life: hot reload (file watch and SIGHUP), rejected configs, reload under load,
//! health state across reloads, graceful shutdown and the health path.

mod common_ops;

use common_ops::{
    TestBackend, backends_of_n, count_log, dump, gateway_with_org_files, get_with, load_until, start_gateway, tally,
    wait_log,
};
use std::sync::atomic::Ordering;
use std::time::Duration;
use test_support::http::Request;
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::Bytes;
use test_support::{Gateway, eventually, get};

const WAIT: Duration = Duration::from_secs(5);
const RELOADED: &str = "config reloaded";
const REJECTED: &str = "config rejected";

/// An organization whose routes (paths) all go to the built-in mirror.
fn mirror_org(name: &str, domains: &[&str], paths: &[&str]) -> String {
    let mut s = format!("name: {name}\n");
    if !domains.is_empty() {
        s.push_str(&format!("domains: [{}]\n", domains.join(", ")));
    }
    s.push_str("upstreams:\n  m:\n    targets: [\"mirror://\"]\nroutes:\n");
    for p in paths {
        s.push_str(&format!("  - path: {p}\n    upstream: m\n"));
    }
    s
}

async fn status(gw: &Gateway, path: &str, host: Option<&str>) -> u16 {
    get(&gw.url(path), host).await.status
}

/// Waits until `path` answers `want`.
async fn until_status(gw: &Gateway, path: &str, host: Option<&str>, want: u16) -> bool {
    eventually(WAIT, || async { status(gw, path, host).await == want }).await
}

/// The 1-based number of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in:\n{text}"))
        + 1
}

/// Rewrites `file` with its current `text` until the gateway reloads, so that the test knows its
/// file watcher is running. (An edit made before that is lost; see
/// `an_edit_made_right_after_start_up_is_applied`.)
async fn prime_watcher(gw: &Gateway, file: &str, text: &str) {
    let n = count_log(gw, &[RELOADED]);
    // One write and a long wait: a write repeated while a slow reload runs would leave a stale
    // reload queued for later, which tests counting reloads would take for theirs.
    let ok = eventually(Duration::from_secs(30), || async {
        gw.write_file(file, text);
        wait_log(gw, &[RELOADED], n + 1, Duration::from_secs(10)).await
    })
    .await;
    assert!(ok, "the gateway never reloaded after {file} was rewritten{}", dump(gw));
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_an_org_file_reloads_its_routes() {
    let first = mirror_org("acme", &[], &["/a"]);
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/acme.yaml", &first)]);
    prime_watcher(&gw, "orgs/acme.yaml", &first).await;
    assert_eq!(status(&gw, "/a", None).await, 200);
    assert_eq!(status(&gw, "/b", None).await, 404);
    let reloads = count_log(&gw, &[RELOADED]);

    gw.write_file("orgs/acme.yaml", &mirror_org("acme", &[], &["/a", "/b"]));
    assert!(
        until_status(&gw, "/b", None, 200).await,
        "the new route should answer{}",
        dump(&gw)
    );
    let echo = get(&gw.url("/b"), None).await.json();
    assert_eq!(echo["path"], "/b", "{echo}");
    assert_eq!(status(&gw, "/a", None).await, 200);
    assert!(wait_log(&gw, &[RELOADED], reloads + 1, WAIT).await, "{}", dump(&gw));
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_gateway_yaml_reloads_inline_orgs() {
    let inline = |paths: &[&str]| {
        let mut s =
            String::from("\n  - name: acme\n    upstreams:\n      m:\n        targets: [\"mirror://\"]\n    routes:\n");
        for p in paths {
            s.push_str(&format!("      - path: {p}\n        upstream: m\n"));
        }
        test_support::gateway_yaml(&s, "")
    };
    let gw = start_gateway(&inline(&["/a"]), &[]);
    prime_watcher(&gw, "gateway.yaml", &inline(&["/a"])).await;
    assert_eq!(status(&gw, "/a", None).await, 200);
    assert_eq!(status(&gw, "/b", None).await, 404);
    let reloads = count_log(&gw, &[RELOADED]);

    gw.write_file("gateway.yaml", &inline(&["/a", "/b"]));
    assert!(
        until_status(&gw, "/b", None, 200).await,
        "the new route should answer{}",
        dump(&gw)
    );
    assert!(wait_log(&gw, &[RELOADED], reloads + 1, WAIT).await, "{}", dump(&gw));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_file_matching_the_glob_adds_an_organization() {
    let acme = mirror_org("acme", &["acme.test"], &["/a"]);
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/acme.yaml", &acme)]);
    prime_watcher(&gw, "orgs/acme.yaml", &acme).await;
    let reloads = count_log(&gw, &[RELOADED]);
    assert_eq!(status(&gw, "/a", Some("acme.test")).await, 200);
    assert_eq!(status(&gw, "/beta", Some("beta.test")).await, 404);

    gw.write_file("orgs/beta.yaml", &mirror_org("beta", &["beta.test"], &["/beta"]));
    assert!(
        until_status(&gw, "/beta", Some("beta.test"), 200).await,
        "the new organization should answer{}",
        dump(&gw)
    );
    assert_eq!(status(&gw, "/a", Some("acme.test")).await, 200);
    assert_eq!(
        status(&gw, "/beta", Some("acme.test")).await,
        404,
        "beta's route is beta's only"
    );
    assert!(wait_log(&gw, &[RELOADED], reloads + 1, WAIT).await, "{}", dump(&gw));
}

/// Writes `text` to `file`, waits for a rejection, and checks the log names `file_name:line:`.
async fn expect_rejected(gw: &Gateway, file: &str, text: &str, line: usize, what: &str) {
    let before_lines = gw.logs().len();
    let before = count_log(gw, &[REJECTED]);
    gw.write_file(file, text);
    assert!(
        wait_log(gw, &[REJECTED], before + 1, WAIT).await,
        "{what}: the config should be rejected{}",
        dump(gw)
    );
    let file_name = file.rsplit('/').next().unwrap();
    let place = format!("{file_name}:{line}:");
    let found = eventually(Duration::from_secs(1), || async {
        gw.logs()[before_lines..].iter().any(|l| l.contains(&place))
    })
    .await;
    assert!(found, "{what}: the log should point at `{place}`{}", dump(gw));
    assert!(
        count_log(gw, &[REJECTED, "still serving version"]) > before,
        "{what}{}",
        dump(gw)
    );
    // The old config keeps serving.
    assert_eq!(
        status(gw, "/a", None).await,
        200,
        "{what}: the old route should still answer"
    );
    assert_eq!(
        status(gw, "/b", None).await,
        404,
        "{what}: the rejected route should not answer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_config_is_rejected_with_its_place_and_the_old_one_keeps_serving() {
    let good = mirror_org("acme", &[], &["/a"]);
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/acme.yaml", &good)]);
    prime_watcher(&gw, "orgs/acme.yaml", &good).await;
    assert_eq!(status(&gw, "/a", None).await, 200);

    // An unknown key.
    let text = format!("{}    retires: 3\n", mirror_org("acme", &[], &["/a", "/b"]));
    expect_rejected(&gw, "orgs/acme.yaml", &text, line_of(&text, "retires"), "unknown key").await;

    // A YAML syntax error.
    let text = mirror_org("acme", &[], &["/a", "/b: oops"]);
    expect_rejected(
        &gw,
        "orgs/acme.yaml",
        &text,
        line_of(&text, "/b: oops"),
        "YAML syntax error",
    )
    .await;

    // A route naming an upstream that does not exist.
    let text = format!(
        "{}  - path: /b\n    upstream: nosuch\n",
        mirror_org("acme", &[], &["/a"])
    );
    expect_rejected(
        &gw,
        "orgs/acme.yaml",
        &text,
        line_of(&text, "nosuch"),
        "missing upstream",
    )
    .await;
    assert!(
        count_log(&gw, &["nosuch"]) >= 1,
        "the message should name the missing upstream{}",
        dump(&gw)
    );

    // Fixed: accepted.
    let reloaded = count_log(&gw, &[RELOADED]);
    gw.write_file("orgs/acme.yaml", &mirror_org("acme", &[], &["/a", "/c"]));
    assert!(until_status(&gw, "/c", None, 200).await, "{}", dump(&gw));
    assert!(wait_log(&gw, &[RELOADED], reloaded + 1, WAIT).await, "{}", dump(&gw));

    // A bad gateway.yaml is rejected the same way.
    let text = gateway_with_org_files("shutdown_timout: 5s");
    let before_lines = gw.logs().len();
    let before = count_log(&gw, &[REJECTED]);
    gw.write_file("gateway.yaml", &text);
    assert!(wait_log(&gw, &[REJECTED], before + 1, WAIT).await, "{}", dump(&gw));
    let place = format!("gateway.yaml:{}:", line_of(&text, "shutdown_timout"));
    assert!(
        eventually(Duration::from_secs(1), || async {
            gw.logs()[before_lines..].iter().any(|l| l.contains(&place))
        })
        .await,
        "the log should point at `{place}`{}",
        dump(&gw)
    );
    assert_eq!(status(&gw, "/a", None).await, 200);
    assert_eq!(status(&gw, "/c", None).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn reloading_under_load_fails_no_request() {
    let x = TestBackend::start("x").await;
    let y = TestBackend::start("y").await;
    // Version `i` of the org: /r goes to ux or uy in turn, ux's target weight changes (a new pool
    // each time), and one more route appears.
    let org = |i: usize| {
        let mut s = format!(
            "name: acme
upstreams:
  ux:
    targets:
      - url: {}
        weight: {}
  uy:
    targets: [\"{}\"]
routes:
  - path: /r
    upstream: {}
",
            x.url(),
            i + 1,
            y.url(),
            ["ux", "uy"][i % 2]
        );
        for k in 0..i {
            s.push_str(&format!("  - path: /extra{k}\n    upstream: uy\n"));
        }
        s
    };
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/acme.yaml", &org(0))]);
    prime_watcher(&gw, "orgs/acme.yaml", &org(0)).await;
    let base = count_log(&gw, &[RELOADED]);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let load = tokio::spawn(load_until(gw.url("/r"), 3, async {
        let _ = done_rx.await;
    }));

    const VERSIONS: usize = 6;
    for i in 1..=VERSIONS {
        tokio::time::sleep(Duration::from_millis(300)).await;
        gw.write_file("orgs/acme.yaml", &org(i));
        assert!(
            wait_log(&gw, &[RELOADED], base + i, WAIT).await,
            "reload {i} should happen{}",
            dump(&gw)
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = done_tx.send(());
    let outcomes = load.await.unwrap();

    let failures: Vec<_> = outcomes.iter().filter(|o| !matches!(o, Ok((200, _)))).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during reloads: {:?}{}",
        failures.len(),
        outcomes.len(),
        &failures[..failures.len().min(10)],
        dump(&gw)
    );
    let names: Vec<String> = outcomes.into_iter().filter_map(Result::ok).map(|(_, b)| b).collect();
    let counts = tally(&names);
    assert!(names.len() >= 50, "the load should keep running: {counts:?}");
    assert!(
        counts.contains_key("x") && counts.contains_key("y"),
        "both versions of /r should have answered: {counts:?}"
    );
    assert!(
        until_status(&gw, &format!("/extra{}", VERSIONS - 1), None, 200).await,
        "the last version should serve{}",
        dump(&gw)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_state_survives_a_reload_that_keeps_the_upstream() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let org = |interval: &str, extra_routes: &[&str]| {
        let mut s = format!(
            "name: acme
upstreams:
  u:
    targets: [\"{}\", \"{}\"]
    health_check:
      path: /health
      interval: {interval}
      timeout: 2s
      healthy_threshold: 2
      unhealthy_threshold: 2
  m:
    targets: [\"mirror://\"]
routes:
  - path: /r
    upstream: u
",
            a.url(),
            b.url()
        );
        for p in extra_routes {
            s.push_str(&format!("  - path: {p}\n    upstream: m\n"));
        }
        s
    };
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/acme.yaml", &org("300ms", &[]))]);
    prime_watcher(&gw, "orgs/acme.yaml", &org("300ms", &[])).await;
    let base = count_log(&gw, &[RELOADED]);
    let url = gw.url("/r");
    let b_addr = b.addr().to_string();
    let b_out = || {
        gw.log_lines_with("target is unhealthy, taken out")
            .iter()
            .filter(|l| test_support::field(l, "target").as_deref() == Some(b_addr.as_str()))
            .count()
    };

    b.knobs.set_health(500);
    assert!(
        eventually(WAIT, || async { b_out() >= 1 }).await,
        "b should be taken out{}",
        dump(&gw)
    );

    // An unrelated route is added; the upstream is the same, so b stays out.
    gw.write_file("orgs/acme.yaml", &org("300ms", &["/other"]));
    assert!(wait_log(&gw, &[RELOADED], base + 1, WAIT).await, "{}", dump(&gw));
    assert!(
        until_status(&gw, "/other", None, 200).await,
        "the reload took effect{}",
        dump(&gw)
    );
    let before = b.knobs.hits();
    let seen = backends_of_n(&gw, &url, 30).await;
    assert!(
        seen.iter().all(|s| s == "a") && b.knobs.hits() == before,
        "b was down before the reload and should stay down after it: {:?}{}",
        tally(&seen),
        dump(&gw)
    );

    // The upstream itself changes: a new pool, whose targets start healthy (the first failed
    // check does not reach unhealthy_threshold, and the next one is 10 s away).
    gw.write_file("orgs/acme.yaml", &org("10s", &["/other", "/v3"]));
    assert!(until_status(&gw, "/v3", None, 200).await, "{}", dump(&gw));
    let before = b.knobs.hits();
    let seen = backends_of_n(&gw, &url, 20).await;
    assert!(
        b.knobs.hits() > before && seen.iter().any(|s| s == "b"),
        "a changed upstream starts with fresh health state: {:?}{}",
        tally(&seen),
        dump(&gw)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_when_file_watching_is_off() {
    let gw = start_gateway(
        &gateway_with_org_files("watch: false"),
        &[("orgs/acme.yaml", &mirror_org("acme", &[], &["/a"]))],
    );
    gw.write_file("orgs/acme.yaml", &mirror_org("acme", &[], &["/a", "/b"]));
    // With watch: false a change alone does nothing (the watcher would take ~150 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        status(&gw, "/b", None).await,
        404,
        "watch: false should not reload on a file change{}",
        dump(&gw)
    );
    assert_eq!(count_log(&gw, &[RELOADED]), 0, "{}", dump(&gw));

    gw.signal("HUP");
    assert!(
        until_status(&gw, "/b", None, 200).await,
        "SIGHUP should reload{}",
        dump(&gw)
    );
    assert!(wait_log(&gw, &[RELOADED], 1, WAIT).await, "{}", dump(&gw));
    assert_eq!(status(&gw, "/a", None).await, 200);
}

/// The gateway says `listening` before it watches its config files; an edit made in between is
/// never applied (not even later: the watcher only reacts to changes it sees).
#[ignore = "stress: keeps every core busy; .ci/run runs it alone with --ignored"]
#[tokio::test(flavor = "multi_thread")]
async fn an_edit_made_right_after_start_up_is_applied() {
    let _hog = common_ops::CpuHog::start(4);
    for attempt in 1..=10 {
        let gw = start_gateway(
            &gateway_with_org_files(""),
            &[("orgs/acme.yaml", &mirror_org("acme", &[], &["/a"]))],
        );
        gw.write_file("orgs/acme.yaml", &mirror_org("acme", &[], &["/a", "/b"]));
        assert!(
            until_status(&gw, "/b", None, 200).await,
            "attempt {attempt}: the edit made just after start-up was never applied{}",
            dump(&gw)
        );
    }
}

/// The gateway says `listening` before it handles SIGHUP; a SIGHUP in between kills it.
#[ignore = "stress: keeps every core busy; .ci/run runs it alone with --ignored"]
#[tokio::test(flavor = "multi_thread")]
async fn sighup_right_after_start_up_reloads_and_does_not_kill() {
    let _hog = common_ops::CpuHog::start(4);
    for attempt in 1..=50 {
        let mut gw = start_gateway(
            &gateway_with_org_files(""),
            &[("orgs/acme.yaml", &mirror_org("acme", &[], &["/a"]))],
        );
        gw.signal("HUP");
        let reloaded = wait_log(&gw, &[RELOADED], 1, WAIT).await;
        let exit = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_millis(50)));
        assert!(
            reloaded && exit.is_none(),
            "attempt {attempt}: after SIGHUP the gateway should reload and keep running; exit: {exit:?}{}",
            dump(&gw)
        );
    }
}

fn org_to(backend: &TestBackend) -> String {
    format!(
        "name: acme
upstreams:
  b:
    targets: [\"{}\"]
routes:
  - path: /{{*rest}}
    upstream: b
",
        backend.url()
    )
}

/// Starts a GET in the background and waits until the backend holds it.
async fn request_in_flight(
    gw: &Gateway,
    backend: &TestBackend,
) -> tokio::task::JoinHandle<Result<(u16, Bytes), String>> {
    let url = gw.url("/slow");
    let task = tokio::spawn(async move {
        let client = test_support::client();
        let req = Request::get(url.as_str()).body(Full::new(Bytes::new())).unwrap();
        let res = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        Ok((status, body))
    });
    assert!(
        eventually(WAIT, || async { backend.knobs.hits() >= 1 }).await,
        "the request should reach the backend{}",
        dump(gw)
    );
    task
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_refuses_new_connections_and_finishes_requests_in_flight() {
    let slow = TestBackend::start("slow").await;
    // Long enough that the refusal of new connections is seen while the request still runs.
    slow.knobs.set_delay(Duration::from_secs(4));
    let mut gw = start_gateway(
        &gateway_with_org_files("shutdown_timeout: 20s"),
        &[("orgs/acme.yaml", &org_to(&slow))],
    );
    let addr = gw.addr();
    let in_flight = request_in_flight(&gw, &slow).await;

    gw.signal("TERM");
    assert!(
        eventually(WAIT, || async { tokio::net::TcpStream::connect(addr).await.is_err() }).await,
        "new connections should be refused after SIGTERM{}",
        dump(&gw)
    );
    assert_eq!(
        slow.knobs.done.load(Ordering::SeqCst),
        0,
        "connections were refused while the slow request was still running"
    );

    let outcome = tokio::time::timeout(Duration::from_secs(15), in_flight)
        .await
        .expect("the request in flight should finish")
        .unwrap();
    let (status, body) = outcome.unwrap_or_else(|e| panic!("the request in flight failed: {e}{}", dump(&gw)));
    assert_eq!(status, 200, "{}", dump(&gw));
    assert_eq!(&body[..], b"slow got 0 bytes");

    let exit = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(15)));
    let exit = exit.unwrap_or_else(|| panic!("the gateway should exit after draining{}", dump(&gw)));
    assert!(exit.success(), "exit status {exit}{}", dump(&gw));
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_timeout_bounds_how_long_a_request_keeps_the_process_alive() {
    let stuck = TestBackend::start("stuck").await;
    stuck.knobs.set_delay(Duration::from_secs(30));
    let mut gw = start_gateway(
        &gateway_with_org_files("shutdown_timeout: 1s"),
        &[("orgs/acme.yaml", &org_to(&stuck))],
    );
    let in_flight = request_in_flight(&gw, &stuck).await;

    gw.signal("TERM");
    // 1 s of grace plus a margin for a loaded machine; the request itself would take 30 s.
    let exit = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(8)));
    assert!(
        exit.is_some(),
        "the gateway should exit once shutdown_timeout has passed{}",
        dump(&gw)
    );
    let outcome = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("the client should not hang once the gateway is gone")
        .unwrap();
    assert!(
        !matches!(outcome, Ok((200, _))),
        "the stuck request cannot have succeeded: {outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_send_nothing_do_not_hold_up_shutdown() {
    let org = mirror_org("acme", &[], &["/a"]);
    // Both limits far above the liveness bound below: only a prompt close passes.
    let mut gw = start_gateway(
        &gateway_with_org_files("shutdown_timeout: 30s\nlimits:\n  header_read_timeout: 30s"),
        &[("orgs/acme.yaml", &org)],
    );
    // An idle keep-alive connection that served a request, and one that never sent a byte
    // (a browser's preconnect, a load balancer's TCP check).
    let client = test_support::client();
    assert_eq!(get_with(&client, &gw.url("/a"), &[]).await.status, 200);
    let _silent = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    gw.signal("TERM");
    let exit = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(5)));
    let exit = exit.unwrap_or_else(|| {
        panic!(
            "with no request in flight the gateway should exit at once, not wait for idle connections{}",
            dump(&gw)
        )
    });
    assert!(exit.success(), "exit status {exit}{}", dump(&gw));
}

#[tokio::test(flavor = "multi_thread")]
async fn health_path_answers_before_routing() {
    let b = TestBackend::start("b").await;
    let org = format!(
        "name: acme
domains: [acme.test]
upstreams:
  b:
    targets: [\"{}\"]
routes:
  - path: /{{*rest}}
    upstream: b
",
        b.url()
    );
    let client = test_support::client();

    // The default health path, for any host, even one that routes everything to a backend.
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/acme.yaml", &org)]);
    for host in ["acme.test", "nobody.example"] {
        let r = get_with(&client, &gw.url("/__health"), &[("host", host)]).await;
        assert_eq!(r.status, 200, "host {host}: {}{}", r.text(), dump(&gw));
        assert_eq!(r.json()["status"], "ok");
        assert_eq!(r.header("x-backend"), None, "the gateway answers, not a backend");
    }
    assert_eq!(b.knobs.hits(), 0);
    drop(gw);

    // A custom health path replaces the default.
    let gw = start_gateway(
        &gateway_with_org_files("health_path: /ping"),
        &[("orgs/acme.yaml", &org)],
    );
    for host in ["acme.test", "nobody.example"] {
        let r = get_with(&client, &gw.url("/ping"), &[("host", host)]).await;
        assert_eq!(r.status, 200, "host {host}: {}{}", r.text(), dump(&gw));
        assert_eq!(r.json()["status"], "ok");
        assert_eq!(r.header("x-backend"), None, "the gateway answers, not a backend");
    }
    assert_eq!(b.knobs.hits(), 0);
    let r = get_with(&client, &gw.url("/__health"), &[("host", "acme.test")]).await;
    assert_eq!(r.header("x-backend"), Some("b"), "/__health is an ordinary path now");
    let r = get_with(&client, &gw.url("/__health"), &[("host", "nobody.example")]).await;
    assert_eq!(r.status, 404, "{}", r.text());
}
