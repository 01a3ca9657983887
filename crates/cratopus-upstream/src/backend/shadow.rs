//! Shadow traffic: the real backend answers; a share of the requests is also copied to another
//! backend whose answers are discarded and only measured (status class, latency), next to the
//! real answers of the same requests. A copy never delays or fails the real request: it is sent
//! from its own task, at most `max_in_flight` copies are out at once (a slow or dead shadow
//! fills that and further copies are dropped and counted), and a copy whose request body is
//! larger than `max_body` (or of unknown length) is not made.

use super::{Answer, Backend, BackendError, Call};
use crate::body::{BodyFault, RequestBody, fault_of};
use http::Request;

use http_body::Body;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Status classes counted per side: 1xx..5xx, then "error" (no answer).
const CLASSES: usize = 6;

/// What one side (the real backend or the shadow) answered the copied requests.
#[derive(Debug, Default)]
pub struct SideStats {
    pub by_class: [AtomicU64; CLASSES],
    /// Summed time to the answer's head, in microseconds (with the class counts, the mean).
    pub latency_sum_us: AtomicU64,
}

impl SideStats {
    fn record(&self, status: Option<u16>, took: Duration) {
        let class = status.map_or(CLASSES - 1, |s| usize::from((s / 100).clamp(1, 5)) - 1);
        self.by_class[class].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// Answers counted, by class label (`1xx`…`5xx`, `error`).
    pub fn classes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ["1xx", "2xx", "3xx", "4xx", "5xx", "error"]
            .into_iter()
            .zip(self.by_class.iter().map(|c| c.load(Relaxed)))
    }
}

/// The counters of one shadow, for `/metrics` and the admin API.
#[derive(Debug, Default)]
pub struct ShadowStats {
    /// Copies sent.
    pub sent: AtomicU64,
    /// Copies not made because `max_in_flight` copies were still out.
    pub dropped: AtomicU64,
    /// Copies not made because the request body was over `max_body` or of unknown length.
    pub skipped_body: AtomicU64,
    /// The real answers of the copied requests.
    pub primary: SideStats,
    /// The shadow's answers.
    pub shadow: SideStats,
}

/// The real backend with a shadow.
pub struct Shadow {
    pub primary: Backend,
    pub copy: Backend,
    /// Share of the requests copied, 0.0–1.0.
    pub share: f64,
    /// Largest request body copied.
    pub max_body: u64,
    /// How long a copy may take before it is abandoned.
    pub timeout: Duration,
    /// Places for copies in flight.
    slots: Arc<Semaphore>,
    pub stats: Arc<ShadowStats>,
}

impl Shadow {
    pub fn new(
        primary: Backend,
        copy: Backend,
        share: f64,
        max_body: u64,
        max_in_flight: usize,
        timeout: Duration,
    ) -> Shadow {
        Shadow {
            primary,
            copy,
            share,
            max_body,
            timeout,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            stats: Arc::default(),
        }
    }

    pub fn call<'a>(&'a self, call: &'a mut Call, req: Request<RequestBody>) -> Answer<'a> {
        Box::pin(async move {
            if self.share <= 0.0 || (self.share < 1.0 && fastrand::f64() >= self.share) {
                return self.primary.call(call, req).await;
            }
            let streamed = !req.body().is_end_stream();
            if streamed && content_length(&req).is_none_or(|n| n > self.max_body) {
                self.stats.skipped_body.fetch_add(1, Relaxed);
                return self.primary.call(call, req).await;
            }
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                self.stats.dropped.fetch_add(1, Relaxed);
                return self.primary.call(call, req).await;
            };
            // A body to copy is read whole (it is small: at most `max_body`); both sides get the
            // same bytes, shared by reference count.
            let (parts, body) = req.into_parts();
            let bytes = if streamed {
                Some(
                    body.collect()
                        .await
                        .map(|b| b.to_bytes())
                        .map_err(|_| BackendError::Client(fault_of(call.body.as_ref()).unwrap_or(BodyFault::Broken)))?,
                )
            } else {
                None
            };
            let copy_req = {
                let mut r = Request::new(bytes.clone().map_or_else(RequestBody::empty, RequestBody::full));
                *r.method_mut() = parts.method.clone();
                *r.uri_mut() = parts.uri.clone();
                *r.headers_mut() = parts.headers.clone();
                r
            };
            let real = Request::from_parts(parts, bytes.map_or_else(RequestBody::empty, RequestBody::full));
            let mut copy_call = Call::new(call.client, call.peer);
            copy_call.client_host = call.client_host.clone();
            copy_call.consumer = call.consumer.clone();
            let (copy, stats, timeout) = (self.copy.clone(), self.stats.clone(), self.timeout);
            stats.sent.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let _slot = slot;
                let began = Instant::now();
                let status = match tokio::time::timeout(timeout, copy.call(&mut copy_call, copy_req)).await {
                    Ok(Ok(res)) => {
                        let status = res.status().as_u16();
                        // Read to its end and settled, so that the connection goes back to
                        // its pool (a copy past the timeout is dropped, its connection closed).
                        let _ = tokio::time::timeout(timeout, res.into_body().drain()).await;
                        Some(status)
                    }
                    _ => None,
                };
                stats.shadow.record(status, began.elapsed());
            });
            let began = Instant::now();
            let res = self.primary.call(call, real).await;
            let status = res.as_ref().ok().map(|r| r.status().as_u16());
            self.stats.primary.record(status, began.elapsed());
            res
        })
    }
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow")
            .field("primary", &self.primary)
            .field("copy", &self.copy)
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
