//! Spans of sampled requests, exported over OTLP/HTTP (protobuf) to a collector.
//!
//! The gateway decides sampling itself (`forward::TraceContext`) and already owns the ids it
//! writes into `traceparent` and the traffic log, so it does not go through an OpenTelemetry
//! `Tracer` (which would mint ids of its own). A finished request becomes [`SpanData`] built
//! here, one server span plus one client span for the upstream call, and is handed to the
//! SDK's [`BatchSpanProcessor`]: a bounded queue drained by its own thread, which drops spans
//! when full rather than slow a request. Unsampled requests never reach this module.
//!
//! The processor's thread exports by blocking on a future; the OTLP exporter's HTTP client
//! here ([`RuntimeClient`]) runs each POST as a task on the gateway's tokio runtime and waits
//! for it, so the export shares the runtime's reactor and needs no second HTTP stack.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where and how spans are exported; compared on reload to keep a running exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanSettings {
    /// The full OTLP/HTTP traces URL, e.g. `http://collector:4318/v1/traces`.
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub service_name: String,
    /// Spans waiting for export; more are dropped.
    pub queue: usize,
}

/// Exports request spans; shared by the snapshots whose settings are the same.
pub struct SpanSink {
    processor: Option<BatchSpanProcessor>,
    settings: SpanSettings,
    scope: InstrumentationScope,
}

impl std::fmt::Debug for SpanSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanSink").field("settings", &self.settings).finish()
    }
}

/// What the gateway learned about one sampled request, turned into spans by [`SpanSink::record`].
#[derive(Debug, Clone)]
pub struct RequestSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The caller's span, when the request carried a valid `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub method: http::Method,
    pub path: String,
    pub scheme: &'static str,
    pub host: Option<String>,
    pub client_ip: IpAddr,
    pub status: u16,
    pub request_id: Option<String>,
    pub org: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    /// The route's path pattern, for the span name (`GET /users/{id}`).
    pub pattern: Option<String>,
    /// The gateway's error code when it answered itself (`no_route`, `upstream_timeout`, …).
    pub error: Option<&'static str>,
    pub upstream: Option<UpstreamSpan>,
}

/// The call to the upstream target, a child of the request's span.
#[derive(Debug, Clone)]
pub struct UpstreamSpan {
    pub span_id: [u8; 8],
    pub start: SystemTime,
    pub end: SystemTime,
    pub upstream: Option<Arc<str>>,
    /// The target (`host:port` or `mirror`).
    pub target: Option<Arc<str>>,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
}

impl SpanSink {
    /// Starts the exporter. Must be called inside the tokio runtime the exports will run on.
    pub fn start(settings: SpanSettings) -> Result<Arc<SpanSink>, String> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| format!("no runtime for the exporter: {e}"))?;
        let client = RuntimeClient {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            handle,
            timeout: settings.timeout,
            failing: Default::default(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .with_headers(settings.headers.iter().cloned().collect::<HashMap<_, _>>())
            .build()
            .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(settings.queue.max(1))
            .with_max_export_batch_size(settings.queue.clamp(1, 512))
            .with_scheduled_delay(Duration::from_secs(1))
            .build();
        let mut processor = BatchSpanProcessor::builder(exporter).with_batch_config(config).build();
        processor.set_resource(
            &Resource::builder_empty()
                .with_service_name(settings.service_name.clone())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Ok(Arc::new(SpanSink {
            processor: Some(processor),
            settings,
            scope: InstrumentationScope::builder("cratopus")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        }))
    }

    pub fn settings(&self) -> &SpanSettings {
        &self.settings
    }

    /// Queues the spans of one request; never blocks.
    pub fn record(&self, r: RequestSpan) {
        let Some(p) = &self.processor else { return };
        let trace_id = TraceId::from_bytes(r.trace_id);
        let server_ctx = SpanContext::new(
            trace_id,
            SpanId::from_bytes(r.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        if let Some(u) = &r.upstream {
            let mut attributes = vec![KeyValue::new("http.request.method", r.method.as_str().to_string())];
            if let Some(t) = &u.target {
                attributes.push(KeyValue::new("server.address", t.to_string()));
            }
            if let Some(up) = &u.upstream {
                attributes.push(KeyValue::new("cratopus.upstream", up.to_string()));
            }
            if let Some(s) = u.status {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(s)));
            }
            let failed = u.status.is_none_or(|s| s >= 500);
            if u.status.is_none()
                && let Some(e) = r.error
            {
                attributes.push(KeyValue::new("error.type", e));
            }
            p.on_end(SpanData {
                span_context: SpanContext::new(
                    trace_id,
                    SpanId::from_bytes(u.span_id),
                    TraceFlags::SAMPLED,
                    false,
                    TraceState::default(),
                ),
                parent_span_id: server_ctx.span_id(),
                parent_span_is_remote: false,
                span_kind: SpanKind::Client,
                name: Cow::Owned(r.method.as_str().to_string()),
                start_time: u.start,
                end_time: u.end,
                attributes,
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status: if failed { Status::error("") } else { Status::Unset },
                instrumentation_scope: self.scope.clone(),
            });
        }

        let name = match &r.pattern {
            Some(p) => format!("{} {p}", r.method),
            None => r.method.as_str().to_string(),
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", r.method.as_str().to_string()),
            KeyValue::new("url.path", r.path),
            KeyValue::new("url.scheme", r.scheme),
            KeyValue::new("client.address", r.client_ip.to_string()),
            KeyValue::new("http.response.status_code", i64::from(r.status)),
        ];
        let optional = [
            ("server.address", r.host),
            ("http.route", r.pattern),
            ("cratopus.org", r.org.as_deref().map(str::to_string)),
            ("cratopus.route", r.route.as_deref().map(str::to_string)),
            ("cratopus.request_id", r.request_id),
            ("error.type", r.error.map(str::to_string)),
        ];
        attributes.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| KeyValue::new(k, v))));
        p.on_end(SpanData {
            span_context: server_ctx,
            parent_span_id: r.parent_id.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: r.parent_id.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Owned(name),
            start_time: r.start,
            end_time: r.end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            // Server spans mark 5xx as errors; a 4xx is the client's doing (OTel HTTP conventions).
            status: if r.status >= 500 {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// Exports what is queued and stops the exporter. Blocks: call it from a blocking thread.
    pub fn shutdown(&self) {
        if let Some(p) = &self.processor
            && let Err(e) = p.shutdown_with_timeout(self.settings.timeout)
        {
            tracing::warn!(error = %e, "span export did not finish at shutdown");
        }
    }
}

impl Drop for SpanSink {
    /// A sink replaced by a reload exports what it still holds from a thread of its own, as
    /// shutting down blocks until the collector answers.
    fn drop(&mut self) {
        if let Some(p) = self.processor.take() {
            let timeout = self.settings.timeout;
            let _ = std::thread::Builder::new()
                .name("cratopus-span-flush".into())
                .spawn(move || {
                    let _ = p.shutdown_with_timeout(timeout);
                });
        }
    }
}

/// The exporter's HTTP client: each POST runs as a task on the gateway's runtime.
#[derive(Debug)]
struct RuntimeClient {
    client: Client<HttpConnector, Full<Bytes>>,
    handle: tokio::runtime::Handle,
    timeout: Duration,
    failing: std::sync::atomic::AtomicBool,
}

/// A collector's answer is a small protobuf; anything bigger is not read.
const MAX_COLLECTOR_RESPONSE: usize = 1 << 20;

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.handle.spawn(async move {
            let call = async {
                let res = client.request(request.map(Full::new)).await?;
                let (parts, body) = res.into_parts();
                let body = Limited::new(body, MAX_COLLECTOR_RESPONSE).collect().await?.to_bytes();
                Ok::<_, HttpError>(http::Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(HttpError::from("OTLP export timed out")),
            }
        });
        let result = task.await.map_err(HttpError::from).and_then(|r| r);
        self.report(&result);
        result
    }
}

impl RuntimeClient {
    /// Logs a failing collector once when it starts failing and once when it answers again,
    /// not on every batch.
    fn report(&self, result: &Result<http::Response<Bytes>, HttpError>) {
        let failing = match result {
            Ok(r) => !r.status().is_success(),
            Err(_) => true,
        };
        let was = self.failing.swap(failing, std::sync::atomic::Ordering::Relaxed);
        match (was, result) {
            (false, Err(e)) => tracing::warn!(error = %e, "span export failed; retrying with each batch"),
            (false, Ok(r)) if failing => {
                tracing::warn!(status = r.status().as_u16(), "span export refused by the collector")
            }
            (true, _) if !failing => tracing::info!("span export works again"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_needs_a_runtime() {
        let s = SpanSettings {
            endpoint: "http://127.0.0.1:1/v1/traces".into(),
            headers: vec![],
            timeout: Duration::from_secs(1),
            service_name: "t".into(),
            queue: 16,
        };
        assert!(SpanSink::start(s.clone()).is_err());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sink = rt.block_on(async { SpanSink::start(s) }).unwrap();
        assert_eq!(sink.settings().queue, 16);
    }
}
