//! Reload at scale: a config of many organization files reloaded while a client keeps
//! requesting, the parse of unchanged files reused (`unchanged_files=` in the reload's log
//! line), and a reused parse never served in place of a changed file.

mod common_ops;

use common_ops::{BIN, count_log, dump, start_gateway, wait_log};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use test_support::http::Request;
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::Bytes;
use test_support::{Gateway, eventually, field};

/// Generous: a debug build compiles 2,000 routes on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(60);
const SWAPPED: &str = "config compiled and swapped in";
const REJECTED: &str = "config rejected";

/// gateway.yaml: organization files `orgs/*.yaml`, reloaded by SIGHUP only (one reload per
/// signal, so that the test can count them).
fn gateway() -> String {
    test_support::gateway_yaml("orgs/*.yaml", "watch: false")
}

/// Organization `o` (domain `org{o}.test`) with `routes` routes `/svc{r}/items/{id}` to the
/// built-in mirror, some with a rate limit, a JWT, a rewrite or two methods (as
/// bench/reload.sh), plus `extra` routes `/{name}/items/{id}`.
fn org(o: usize, routes: usize, extra: &[&str]) -> String {
    let mut s =
        format!("name: org{o}\ndomains: [org{o}.test]\nupstreams:\n  m:\n    targets: [\"mirror://\"]\nroutes:\n");
    for r in 0..routes {
        s.push_str(&format!("  - path: \"/svc{r}/items/{{id}}\"\n    upstream: m\n"));
        match r % 10 {
            1 => s.push_str("    rate_limit: {limits: [{rate: 100000, per: 1s}]}\n"),
            2 => s.push_str("    auth: {jwt: {secret: \"an-hmac-secret-of-at-least-32-bytes!!\"}}\n"),
            3 => s.push_str("    rewrite: \"/v2/items/{id}\"\n"),
            4 => s.push_str("    methods: [GET, POST]\n"),
            _ => {}
        }
    }
    for name in extra {
        s.push_str(&format!("  - path: \"/{name}/items/{{id}}\"\n    upstream: m\n"));
    }
    s
}

fn org_files(orgs: usize, routes: usize) -> Vec<(String, String)> {
    (0..orgs)
        .map(|o| (format!("orgs/org{o}.yaml"), org(o, routes, &[])))
        .collect()
}

fn start(files: &[(String, String)]) -> Gateway {
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    start_gateway(&gateway(), &files)
}

/// The status of GET `path` on `host`.
async fn status(gw: &Gateway, host: &str, path: &str) -> u16 {
    test_support::get(&gw.url(path), Some(host)).await.status
}

/// Sends SIGHUP and waits for reload number `n` (counting the swaps and refusals since start)
/// to be swapped in; returns its log line.
async fn reload(gw: &Gateway, n: usize) -> String {
    gw.signal("HUP");
    assert!(
        wait_log(gw, &[SWAPPED], n, WAIT).await,
        "reload {n} should be swapped in{}",
        dump(gw)
    );
    gw.log_lines_with(SWAPPED)[n - 1].clone()
}

/// The number after `key=` in a log line.
fn number(line: &str, key: &str) -> usize {
    field(line, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_of_2000_routes_under_load_fail_no_request_and_serve_the_changed_files() {
    const ORGS: usize = 20;
    const ROUTES: usize = 100;
    let mut files = org_files(ORGS, ROUTES);
    let gw = start(&files);
    assert_eq!(status(&gw, "org7.test", "/svc0/items/1").await, 200, "{}", dump(&gw));

    // Clients on their own keep-alive connections, each request to an existing route of an
    // organization that every reload keeps; every outcome is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let url = gw.url("/svc5/items/1");
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, url) = (stop.clone(), url.clone());
            tokio::spawn(async move {
                let client = test_support::client();
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let req = Request::get(url.as_str())
                        .header("host", "org7.test")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    outcomes.push(match client.request(req).await {
                        Ok(res) => {
                            let status = res.status().as_u16();
                            match res.into_body().collect().await {
                                Ok(_) => Ok(status),
                                Err(e) => Err(format!("reading the body: {e:?}")),
                            }
                        }
                        Err(e) => Err(format!("{e:?}")),
                    });
                }
                outcomes
            })
        })
        .collect();

    // Reloads that change one file each: that file's new route serves, the other files' parse
    // is reused.
    let mut swaps = 0;
    for (i, o) in [3, 11, 19].into_iter().enumerate() {
        let name = format!("new{i}");
        files[o].1 = org(o, ROUTES, &[&name]);
        gw.write_file(&files[o].0, &files[o].1);
        swaps += 1;
        let line = reload(&gw, swaps).await;
        assert_eq!(number(&line, "routes"), ORGS * ROUTES + i + 1, "{line}");
        assert_eq!(number(&line, "unchanged_files"), ORGS - 1, "{line}");
        let host = format!("org{o}.test");
        assert_eq!(
            status(&gw, &host, &format!("/{name}/items/1")).await,
            200,
            "the route added to org{o} should serve after reload {swaps}{}",
            dump(&gw)
        );
    }

    // A reload with no change reuses every file; one with every file changed reuses none.
    swaps += 1;
    let line = reload(&gw, swaps).await;
    assert_eq!(number(&line, "unchanged_files"), ORGS, "{line}");
    for (o, (name, text)) in files.iter_mut().enumerate() {
        *text = org(o, ROUTES, &["all"]);
        gw.write_file(name, text);
    }
    swaps += 1;
    let line = reload(&gw, swaps).await;
    assert_eq!(number(&line, "unchanged_files"), 0, "{line}");
    assert_eq!(number(&line, "routes"), ORGS * (ROUTES + 1), "{line}");
    for o in [0, 7, 19] {
        assert_eq!(
            status(&gw, &format!("org{o}.test"), "/all/items/1").await,
            200,
            "{}",
            dump(&gw)
        );
    }
    // The routes added before were in the files rewritten: they are gone.
    assert_eq!(status(&gw, "org3.test", "/new0/items/1").await, 404, "{}", dump(&gw));

    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.extend(c.await.expect("client task"));
    }
    let failed: Vec<_> = outcomes.iter().filter(|o| !matches!(o, Ok(200))).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during {swaps} reloads: {:?}{}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(10)],
        dump(&gw)
    );
    assert!(!outcomes.is_empty(), "the clients should have run");
}

/// A file changed back and forth is served as it is on disk each time; a bad edit of one file
/// is refused at its line (the line `cratopus check` gives) while the old config keeps serving,
/// and writing that file's previous text back is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn a_reused_parse_never_stands_for_a_changed_file() {
    const ORGS: usize = 10;
    const ROUTES: usize = 20;
    let files = org_files(ORGS, ROUTES);
    let gw = start(&files);
    let mut swaps = 0;

    // A → B → A: each version is the one served.
    let a = org(4, ROUTES, &["a"]);
    let b = org(4, ROUTES, &["b"]);
    for (text, on, off) in [
        (&a, "/a/items/1", "/b/items/1"),
        (&b, "/b/items/1", "/a/items/1"),
        (&a, "/a/items/1", "/b/items/1"),
    ] {
        gw.write_file("orgs/org4.yaml", text);
        swaps += 1;
        let line = reload(&gw, swaps).await;
        assert_eq!(number(&line, "unchanged_files"), ORGS - 1, "{line}");
        assert_eq!(status(&gw, "org4.test", on).await, 200, "{}", dump(&gw));
        assert_eq!(status(&gw, "org4.test", off).await, 404, "{}", dump(&gw));
    }
    // A change that keeps the file's length and every other byte: still a change.
    let c = a.replace("/a/items/", "/c/items/");
    assert_eq!(c.len(), a.len());
    gw.write_file("orgs/org4.yaml", &c);
    swaps += 1;
    reload(&gw, swaps).await;
    assert_eq!(status(&gw, "org4.test", "/c/items/1").await, 200, "{}", dump(&gw));
    assert_eq!(status(&gw, "org4.test", "/a/items/1").await, 404, "{}", dump(&gw));

    // A bad edit of another file: refused with its file and line, as `check` places it.
    let good = files[6].1.clone();
    let bad = format!("{good}    retires: 3\n");
    let bad_line = bad.lines().position(|l| l.contains("retires")).unwrap() + 1;
    let place = format!("org6.yaml:{bad_line}:");
    let before_lines = gw.logs().len();
    gw.write_file("orgs/org6.yaml", &bad);
    gw.signal("HUP");
    assert!(wait_log(&gw, &[REJECTED], 1, WAIT).await, "{}", dump(&gw));
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.logs()[before_lines..].iter().any(|l| l.contains(&place))
        })
        .await,
        "the refusal should point at `{place}`{}",
        dump(&gw)
    );
    let check = std::process::Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(gw.path("gateway.yaml"))
        .output()
        .expect("run cratopus check");
    let check_out = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!check.status.success(), "check should refuse the config: {check_out}");
    assert!(
        check_out.contains(&place),
        "check should point at `{place}` as the reload did: {check_out}"
    );
    // The old config keeps serving, the other file's last version included.
    assert_eq!(status(&gw, "org6.test", "/svc0/items/1").await, 200, "{}", dump(&gw));
    assert_eq!(status(&gw, "org4.test", "/c/items/1").await, 200, "{}", dump(&gw));
    assert_eq!(count_log(&gw, &[SWAPPED]), swaps, "{}", dump(&gw));

    // The previous text written back is accepted.
    gw.write_file("orgs/org6.yaml", &good);
    swaps += 1;
    let line = reload(&gw, swaps).await;
    assert_eq!(number(&line, "unchanged_files"), ORGS, "{line}");
    assert_eq!(status(&gw, "org6.test", "/svc0/items/1").await, 200, "{}", dump(&gw));
}
