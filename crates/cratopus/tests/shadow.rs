//! Shadow traffic end to end: a real upstream answers, a copy of the requests goes to a second
//! real upstream, and a shadow that hangs or is dead never delays or fails the real requests.

mod common_ops;

use common_ops::{BIN, metrics};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use test_support::http::Response;
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, client, eventually};

const TOKEN: &str = "shadow-test-token-0123456789";

fn gateway(real: &str, shadow: &str, shadow_cfg: &str) -> Gateway {
    let yaml = "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: ${ADMIN_TOKEN}\norganizations: orgs/*.yaml\nwatch: false\n";
    let org = format!(
        "name: shop\nupstreams:\n  real:\n    targets: [\"{real}\"]\n  copy:\n    targets: [\"{shadow}\"]\nroutes:\n  - path: /orders/{{*rest}}\n    upstream: real\n    shadow: {shadow_cfg}\n"
    );
    Gateway::start_with_env(BIN, yaml, &[("orgs/shop.yaml", &org)], &[("ADMIN_TOKEN", TOKEN)])
}

/// A backend that counts requests and the body bytes it got, and answers 201.
async fn counting(label: &'static str, hits: Arc<AtomicUsize>, bytes: Arc<AtomicUsize>) -> Backend {
    Backend::start(move |req, _| {
        let (hits, bytes) = (hits.clone(), bytes.clone());
        async move {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            hits.fetch_add(1, Ordering::SeqCst);
            bytes.fetch_add(body.len(), Ordering::SeqCst);
            Response::builder()
                .status(201)
                .header("x-backend", label)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    })
    .await
}

/// The value of one sample of `/metrics`, by name and label fragment.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|f| l.contains(f)))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

#[tokio::test]
async fn a_share_of_the_requests_is_copied_with_its_body_and_compared_in_metrics() {
    let (real_hits, real_bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (copy_hits, copy_bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let real = counting("real", real_hits.clone(), real_bytes.clone()).await;
    let copy = counting("copy", copy_hits.clone(), copy_bytes.clone()).await;
    let gw = gateway(
        &real.url(),
        &copy.url(),
        "{upstream: copy, percent: 100, max_body: 1KiB}",
    );
    let c = client();
    for i in 0..20 {
        let body = if i % 2 == 0 { vec![b'x'; 100] } else { vec![b'y'; 2000] };
        let req = test_support::http::Request::post(gw.url("/orders/1"))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let r = test_support::send(&c, req).await;
        assert_eq!(r.status, 201);
        assert_eq!(r.header("x-backend"), Some("real"), "the client gets the real answer");
    }
    assert_eq!(real_hits.load(Ordering::SeqCst), 20);
    assert_eq!(
        real_bytes.load(Ordering::SeqCst),
        10 * 100 + 10 * 2000,
        "the real backend got every body whole"
    );
    // Only the 100-byte bodies fit under max_body: 10 copies, each with its body.
    assert!(
        eventually(Duration::from_secs(20), || async {
            copy_hits.load(Ordering::SeqCst) == 10
        })
        .await
    );
    assert_eq!(copy_bytes.load(Ordering::SeqCst), 10 * 100);
    let text = metrics(&gw, TOKEN).await;
    assert_eq!(
        sample(&text, "cratopus_shadow_copies_total", &["outcome=\"sent\""]),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "cratopus_shadow_copies_total", &["outcome=\"skipped_body\""]),
        Some(10.0)
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            let text = metrics(&gw, TOKEN).await;
            sample(
                &text,
                "cratopus_shadow_responses_total",
                &["side=\"shadow\"", "class=\"2xx\""],
            ) == Some(10.0)
        })
        .await
    );
    let text = metrics(&gw, TOKEN).await;
    assert_eq!(
        sample(
            &text,
            "cratopus_shadow_responses_total",
            &["side=\"primary\"", "class=\"2xx\""]
        ),
        Some(10.0)
    );
}

#[tokio::test]
async fn a_hanging_shadow_leaves_the_real_route_fast_and_its_copies_are_dropped() {
    let (real_hits, real_bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let real = counting("real", real_hits.clone(), real_bytes).await;
    // A shadow that accepts connections and requests and never answers.
    let hang = Backend::start(|_req, _| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Response::new(Full::new(Bytes::new()))
    })
    .await;
    let gw = gateway(
        &real.url(),
        &hang.url(),
        "{upstream: copy, max_in_flight: 4, timeout: 60s}",
    );
    let c = client();
    let mut took = Vec::new();
    for _ in 0..200 {
        let began = Instant::now();
        let r = test_support::send(
            &c,
            test_support::http::Request::get(gw.url("/orders/x"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        took.push(began.elapsed());
        assert_eq!(r.status, 201);
    }
    took.sort();
    let p99 = took[took.len() * 99 / 100];
    // Loose on purpose (a loaded CI machine): a real request waiting for the shadow would take
    // the shadow's 60 s timeout.
    assert!(p99 < Duration::from_secs(5), "p99 {p99:?}");
    assert_eq!(real_hits.load(Ordering::SeqCst), 200);
    let text = metrics(&gw, TOKEN).await;
    assert_eq!(
        sample(&text, "cratopus_shadow_copies_total", &["outcome=\"sent\""]),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "cratopus_shadow_copies_total", &["outcome=\"dropped\""]),
        Some(196.0)
    );
}

#[tokio::test]
async fn a_shadow_naming_an_unknown_upstream_is_refused_with_its_line() {
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg({
            let dir = std::env::temp_dir().join(format!("cratopus-shadow-check-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join("gateway.yaml");
            std::fs::write(
                &p,
                "listeners:\n  - name: http\n    bind: 127.0.0.1:0\norganizations:\n  - name: shop\n    upstreams:\n      real: {targets: [\"mirror://\"]}\n    routes:\n      - path: /x\n        upstream: real\n        shadow: {upstream: rael, percent: 150}\n",
            )
            .unwrap();
            p
        })
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("gateway.yaml:11:") && err.contains("shadow names upstream `rael`"),
        "{err}"
    );
    assert!(err.contains("did you mean `real`"), "{err}");
    assert!(err.contains("percent must be between 0 and 100"), "{err}");
}

/// A copy's answer is read to its end and settled, so its connection goes back to the pool:
/// copies made one after the other all travel on one connection to the shadow.
#[tokio::test]
async fn copies_reuse_their_connection_to_the_shadow() {
    let peers = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let real = Backend::fixed("real", "real answer").await;
    let seen = peers.clone();
    let copy = Backend::start(move |_req, peer| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().insert(peer);
            Response::builder()
                .status(200)
                .body(Full::new(Bytes::from_static(b"a shadow's answer, which nobody reads")))
                .unwrap()
        }
    })
    .await;
    let gw = gateway(&real.url(), &copy.url(), "{upstream: copy, percent: 100}");
    let c = client();
    for i in 1..=6 {
        let req = test_support::http::Request::get(gw.url("/orders/1"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(test_support::send(&c, req).await.status, 200);
        // The copy's answer has been read and recorded (its connection settled) before the
        // next copy goes out.
        assert!(
            eventually(Duration::from_secs(20), || async {
                let text = metrics(&gw, TOKEN).await;
                sample(
                    &text,
                    "cratopus_shadow_responses_total",
                    &["side=\"shadow\"", "class=\"2xx\""],
                ) == Some(f64::from(i))
            })
            .await,
            "copy {i} was not answered"
        );
    }
    let connections = peers.lock().unwrap().len();
    assert_eq!(
        connections,
        1,
        "six copies in turn opened {connections} connections\n{}",
        gw.logs().join("\n")
    );
}
