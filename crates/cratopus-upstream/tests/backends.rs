//! The backend kinds driven in process: services stand in for upstreams, and tokio's clock is
//! paused, so a shadow that would hang for an hour costs the test nothing.

use bytes::Bytes;
use cratopus_upstream::backend::{Answer, Call, Shadow};
use cratopus_upstream::{Backend, BackendBody, RequestBody, Service};
use http::{Request, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Answers `status` after `delay`, counting calls and the body bytes it read.
struct Fake {
    status: u16,
    delay: Duration,
    calls: AtomicUsize,
    bytes: AtomicUsize,
}

impl Fake {
    fn new(status: u16, delay: Duration) -> Arc<Fake> {
        Arc::new(Fake {
            status,
            delay,
            calls: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        })
    }
}

impl Service for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    fn call<'a>(&'a self, _call: &'a mut Call, req: Request<RequestBody>) -> Answer<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            self.bytes.fetch_add(body.len(), Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let mut res = Response::new(BackendBody::empty());
            *res.status_mut() = http::StatusCode::from_u16(self.status).unwrap();
            Ok(res)
        })
    }
}

fn call() -> Call {
    Call::new("127.0.0.1".parse().unwrap(), "127.0.0.1:1".parse().unwrap())
}

fn post(body: &'static [u8]) -> Request<RequestBody> {
    Request::post("/x")
        .header("content-length", body.len())
        .body(RequestBody::full(Bytes::from_static(body)))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_shadow_copies_the_body_and_never_waits_for_the_copy() {
    let real = Fake::new(201, Duration::ZERO);
    let copy = Fake::new(500, Duration::from_secs(3600));
    let shadow = Backend::Shadow(Arc::new(Shadow::new(
        Backend::Service(real.clone()),
        Backend::Service(copy.clone()),
        1.0,
        1024,
        1,
        Duration::from_secs(7200),
    )));
    let began = tokio::time::Instant::now();
    let res = shadow.call(&mut call(), post(b"hello")).await.expect("answer");
    assert_eq!(res.status(), 201);
    assert_eq!(
        began.elapsed(),
        Duration::ZERO,
        "the real answer did not wait for the copy"
    );
    // The second copy finds the one place taken by the hanging first.
    let res = shadow.call(&mut call(), post(b"again")).await.expect("answer");
    assert_eq!(res.status(), 201);
    assert_eq!(real.bytes.load(Ordering::SeqCst), 10);
    tokio::task::yield_now().await;
    assert_eq!(copy.calls.load(Ordering::SeqCst), 1);
    assert_eq!(copy.bytes.load(Ordering::SeqCst), 5, "the copy got the body too");
    let Backend::Shadow(s) = &shadow else { unreachable!() };
    assert_eq!(s.stats.dropped.load(Ordering::Relaxed), 1);
    // An hour later the copy answers 500, and the shadow's side counts it.
    tokio::time::sleep(Duration::from_secs(3601)).await;
    let classes: Vec<(&str, u64)> = s.stats.shadow.classes().filter(|(_, n)| *n > 0).collect();
    assert_eq!(classes, vec![("5xx", 1)]);
    let classes: Vec<(&str, u64)> = s.stats.primary.classes().filter(|(_, n)| *n > 0).collect();
    assert_eq!(classes, vec![("2xx", 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_shadow_limit_goes_only_to_the_real_backend() {
    let real = Fake::new(200, Duration::ZERO);
    let copy = Fake::new(200, Duration::ZERO);
    let shadow = Backend::Shadow(Arc::new(Shadow::new(
        Backend::Service(real.clone()),
        Backend::Service(copy.clone()),
        1.0,
        4,
        10,
        Duration::from_secs(5),
    )));
    let res = shadow.call(&mut call(), post(b"too long")).await.expect("answer");
    assert_eq!(res.status(), 200);
    tokio::task::yield_now().await;
    assert_eq!(real.bytes.load(Ordering::SeqCst), 8);
    assert_eq!(copy.calls.load(Ordering::SeqCst), 0);
    let Backend::Shadow(s) = &shadow else { unreachable!() };
    assert_eq!(s.stats.skipped_body.load(Ordering::Relaxed), 1);
}
