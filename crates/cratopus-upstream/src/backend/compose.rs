//! A composed endpoint as a backend (KrakenD's endpoint with several backends): each request
//! calls every backend — concurrently, or one after the other when the endpoint is sequential
//! and later URLs take fields of earlier answers — each through its own [`Backend`] (an
//! [`super::UpstreamCall`]: balancing, breakers, retries, pooled connections, all reused),
//! reads each answer whole, and hands the bodies to `cratopus-compose`, which decodes, shapes,
//! merges and encodes them.
//!
//! Status behaviour is KrakenD's: any backend answered → 200 with what answered, and
//! `X-Cratopus-Completed: false` when not every one did (KrakenD's `X-KrakenD-Completed`); none
//! answered → 500 with no body. A `no-op` endpoint streams its single backend's answer through
//! untouched, as a plain route does.

use super::{Backend, BackendError, Call};
use crate::body::{BackendBody, BodyFault, RequestBody, fault_of};
use bytes::Bytes;
use cratopus_compose::Endpoint;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The completion header: `true` when every backend answered, else `false`.
pub const COMPLETED: HeaderName = HeaderName::from_static("x-cratopus-completed");

/// The largest backend answer read into memory; a larger one counts as that backend's failure.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// One backend of a composed endpoint: where its calls go, with what method and time.
#[derive(Debug)]
pub struct ComposeBackend {
    /// The upstream call (or in-process service) this backend is answered by.
    pub backend: Backend,
    /// The method of the call; `None`: the client's (a `no-op` endpoint) or `GET`.
    pub method: Option<Method>,
    /// The longest this backend may take, head and body.
    pub timeout: Duration,
    /// The error policy: where a failing answer's status and body go, if anywhere.
    pub errors: ErrorPolicy,
    /// Static changes to the call's request and answer (martian modifiers, basic auth).
    pub modifier: Option<Arc<dyn CallModifier>>,
    /// Hedged calls: how many calls of this backend run at once, the first good answer
    /// winning (KrakenD's `concurrent_calls`); 1 (or 0) is a single call.
    pub hedge: u32,
    /// The backend's proxy rate limit, all requests together: one cell per call.
    pub limit: Option<ProxyLimit>,
}

/// A backend's proxy rate limit (KrakenD's `qos/ratelimit/proxy`): a token bucket kept in
/// this process (GCRA), one cell per call, hedged calls included.
#[derive(Clone)]
pub struct ProxyLimit {
    pub limiter: Arc<cratopus_state::LocalLimiter>,
    pub rate: cratopus_state::Rate,
}

impl std::fmt::Debug for ProxyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyLimit").field("rate", &self.rate).finish()
    }
}

impl ProxyLimit {
    /// `max_rate` calls per `every`, with a bucket of `burst`.
    pub fn new(max_rate: f64, every: Duration, burst: u32) -> ProxyLimit {
        // One cell every `every / max_rate`; `burst` cells may go at once.
        let period = Duration::from_secs_f64((every.as_secs_f64() / max_rate).clamp(1e-9, 1e9));
        ProxyLimit {
            limiter: Arc::new(cratopus_state::LocalLimiter::new()),
            rate: cratopus_state::Rate {
                limit: 1,
                period,
                burst: burst.max(1),
            },
        }
    }

    fn allows(&self) -> bool {
        self.limiter.check("", std::slice::from_ref(&self.rate)).allowed
    }
}

/// Static changes to one composition backend's request and answer: KrakenD's martian
/// modifiers and basic authentication towards the backend. The upstream crate only calls it
/// (it does not know the config); `cratopus-policies`' `martian` implements it with the route
/// modifiers' header and query engine.
pub trait CallModifier: Send + Sync + std::fmt::Debug {
    /// Edits the request's head before the call; `Some` replaces its body.
    fn on_request(&self, req: &mut http::request::Parts) -> Option<Bytes>;
    /// Whether [`CallModifier::on_response`] can change anything, so that answers are left
    /// alone otherwise.
    fn modifies_responses(&self) -> bool;
    /// Edits the answer's head (`query`: the request's query, for query filters); `Some`
    /// replaces its body.
    fn on_response(&self, query: Option<&str>, res: &mut http::response::Parts) -> Option<Bytes>;
}

/// What the client learns of a backend that answered with a failing status (KrakenD's
/// `backend/http` options). By default nothing: KrakenD hides backend details.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ErrorPolicy {
    #[default]
    Hide,
    /// `return_error_details`: under this key (`error_<name>`), as
    /// `{"http_status_code": 404, "http_body": "..."}`.
    Details(Arc<str>),
    /// `return_error_code`: the endpoint answers with the backend's status and body.
    Code,
}

/// A composed endpoint: its compiled shaping and its backends, index for index.
#[derive(Debug)]
pub struct Compose {
    pub endpoint: Endpoint,
    pub backends: Box<[ComposeBackend]>,
    /// The endpoint's timeout: no backend is waited for longer than this from the request's
    /// start (KrakenD's endpoint `timeout`).
    pub timeout: Duration,
    /// The backends' upstreams joined by `+`, for logs and `cratopus routes`.
    pub name: Arc<str>,
    /// The client's query (as the route's `forward` policy left it) goes on to every backend
    /// after its `url_pattern`'s own parameters (KrakenD's `input_query_strings`); without
    /// such a list the backends get no client query, as in KrakenD.
    pub pass_query: bool,
}

/// Why one backend added nothing to the merge (logged), with its failing answer when its error
/// policy shows it to the client.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) reason: String,
    answer: Option<FailedAnswer>,
}

#[derive(Debug)]
struct FailedAnswer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure { reason, answer: None }
    }
}

impl Compose {
    pub async fn call(
        &self,
        call: &mut Call,
        req: Request<RequestBody>,
    ) -> Result<Response<BackendBody>, BackendError> {
        if self.endpoint.is_pass_through() {
            return self.pass_through(call, req).await;
        }
        let started = call.begin();
        call.upstream = Some(self.name.clone());
        let deadline = Instant::now() + self.timeout;
        let (parts, body) = req.into_parts();
        // The client's body, if any, goes to every backend: read it once, bounded by the
        // route's limit or else [`MAX_ANSWER_BYTES`], and share it by reference count.
        let body = if body.is_end_stream() {
            None
        } else {
            let limit = call
                .body_limit
                .map_or(MAX_ANSWER_BYTES, |l| usize::try_from(l).unwrap_or(usize::MAX));
            match Limited::new(body, limit).collect().await {
                Ok(b) => Some(b.to_bytes()),
                Err(e) if e.is::<LengthLimitError>() => return Err(BackendError::Client(BodyFault::TooLarge)),
                Err(_) => {
                    return Err(BackendError::Client(
                        fault_of(call.body.as_ref()).unwrap_or(BodyFault::Broken),
                    ));
                }
            }
        };
        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut answers = self.endpoint.aggregate::<Failure>();
        let params = std::mem::take(&mut call.params);
        if self.endpoint.is_sequential() {
            for (i, b) in self.endpoint.backends().iter().enumerate() {
                let url = match b.url().render(params.as_slice(), &answers.answers()) {
                    Ok(u) => u,
                    Err(e) => {
                        // KrakenD stops the chain at a missing field: nothing further is called.
                        tracing::debug!(backend = i, error = %e, "composition: sequential chain stopped");
                        answers.failed(i, e.to_string().into());
                        break;
                    }
                };
                match self.call_one(i, call, &parts, body.clone(), url, deadline).await {
                    Ok(data) => answers.answered(i, data),
                    Err(e) => {
                        answers.failed(i, e);
                        break;
                    }
                }
            }
        } else {
            let calls = self.endpoint.backends().iter().enumerate().map(|(i, b)| {
                let url = b.url().render(params.as_slice(), &[]);
                let body = body.clone();
                let parts = &parts;
                let call = &*call;
                async move {
                    let url = url.map_err(|e| Failure::from(e.to_string()))?;
                    self.call_one(i, call, parts, body, url, deadline).await
                }
            });
            for (i, r) in futures_util::future::join_all(calls).await.into_iter().enumerate() {
                match r {
                    Ok(data) => answers.answered(i, data),
                    Err(e) => answers.failed(i, e),
                }
            }
        }
        call.params = params;
        let merged = self.endpoint.finish(answers);
        call.elapsed = Some(started.elapsed());
        call.whole = true;
        if !merged.failures.is_empty() {
            // For the traffic log: `0: timed out; 2: status 503`.
            let text: Vec<String> = merged
                .failures
                .iter()
                .map(|(i, e)| format!("{i}: {}", e.reason))
                .collect();
            call.log_fields.push(("compose_failed", text.join("; ").into()));
        }
        let completed = HeaderValue::from_static(if merged.complete { "true" } else { "false" });
        let mut merged = merged;
        let mut details = false;
        for (i, f) in &mut merged.failures {
            let Some(a) = f.answer.take() else { continue };
            match &self.backends[*i].errors {
                ErrorPolicy::Hide => {}
                ErrorPolicy::Code => {
                    // The endpoint's only backend: its failing answer is the endpoint's.
                    let mut res = Response::new(BackendBody::full(a.body));
                    *res.status_mut() = a.status;
                    if let Some(t) = a.content_type {
                        res.headers_mut().insert(header::CONTENT_TYPE, t);
                    }
                    res.headers_mut().insert(COMPLETED, completed);
                    return Ok(res);
                }
                ErrorPolicy::Details(key) => {
                    details = true;
                    merged.data.insert(
                        key.to_string(),
                        serde_json::json!({
                            "http_status_code": a.status.as_u16(),
                            "http_body": String::from_utf8_lossy(&a.body),
                        }),
                    );
                }
            }
        }
        if merged.is_failure() && !details {
            // KrakenD: nothing to return is a 500 with no body.
            let mut res = Response::new(BackendBody::empty());
            *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            res.headers_mut().insert(COMPLETED, completed);
            return Ok(res);
        }
        let out = self
            .endpoint
            .encode(&merged.data, accept.as_deref())
            .map_err(|_| BackendError::Failed)?;
        let mut res = Response::new(BackendBody::full(out.body));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(out.content_type));
        res.headers_mut().insert(COMPLETED, completed);
        Ok(res)
    }

    /// The backend URL: the rendered `url_pattern`, then the client's query when it passes.
    fn with_query(&self, mut url: String, query: Option<&str>) -> String {
        if let Some(q) = query.filter(|q| self.pass_query && !q.is_empty()) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(q);
        }
        url
    }

    /// Backend `i`'s answer, read whole and shaped; any failure as a sentence. With hedged
    /// calls, the calls run together in this task and the first good answer wins; dropping
    /// the others cancels them (their connections are closed, not reused).
    async fn call_one(
        &self,
        i: usize,
        parent: &Call,
        parts: &http::request::Parts,
        body: Option<Bytes>,
        url: String,
        deadline: Instant,
    ) -> Result<Map<String, Value>, Failure> {
        let b = &self.backends[i];
        let url = self.with_query(url, parts.uri.query());
        let until = deadline.min(Instant::now() + b.timeout);
        let attempts = b.hedge.max(1);
        let read = async {
            if attempts == 1 {
                return self.attempt(i, parent, parts, body, &url).await;
            }
            let calls = (0..attempts).map(|_| Box::pin(self.attempt(i, parent, parts, body.clone(), &url)));
            match futures_util::future::select_ok(calls).await {
                Ok((data, _losers)) => Ok(data),
                Err(last) => Err(last),
            }
        };
        tokio::time::timeout_at(until, read)
            .await
            .map_err(|_| Failure::from("timed out".to_string()))?
    }

    /// One call of backend `i`, to its decoded and shaped answer.
    async fn attempt(
        &self,
        i: usize,
        parent: &Call,
        parts: &http::request::Parts,
        body: Option<Bytes>,
        url: &str,
    ) -> Result<Map<String, Value>, Failure> {
        let b = &self.backends[i];
        if let Some(limit) = &b.limit
            && !limit.allows()
        {
            // KrakenD's proxy rate limit: the call fails without reaching the backend.
            return Err(Failure::from("proxy rate limit exceeded".to_string()));
        }
        let keep_error = b.errors != ErrorPolicy::Hide;
        let mut req = Request::new(body.map_or_else(RequestBody::empty, RequestBody::full));
        *req.method_mut() = b.method.clone().unwrap_or(Method::GET);
        *req.uri_mut() = url.parse::<Uri>().map_err(|e| format!("url `{url}`: {e}"))?;
        let headers = req.headers_mut();
        for (name, value) in &parts.headers {
            if !matches!(
                *name,
                header::CONTENT_LENGTH
                    | header::TRANSFER_ENCODING
                    | header::HOST
                    | header::ACCEPT_ENCODING
                    | header::EXPECT
            ) {
                headers.append(name.clone(), value.clone());
            }
        }
        // Answers are read by the gateway, which decodes gzip and deflate (as KrakenD's Go
        // client asks for gzip): smaller answers on the wire, nothing else to support.
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate"));
        let req = modify_request(b.modifier.as_deref(), req);
        // A response filter on the query reads the query the backend was sent, as martian's do.
        let sent_query = b
            .modifier
            .as_ref()
            .filter(|m| m.modifies_responses())
            .and_then(|_| req.uri().query().map(str::to_owned));
        let mut call = Call::new(parent.client, parent.peer);
        call.client_host = parent.client_host.clone();
        call.consumer = parent.consumer.clone();
        let read = async {
            let res = b.backend.call(&mut call, req).await.map_err(|e| e.to_string())?;
            let status = res.status();
            if !status.is_success() {
                let reason = format!("status {}", status.as_u16());
                if !keep_error {
                    return Err(Failure::from(reason));
                }
                let content_type = res.headers().get(header::CONTENT_TYPE).cloned();
                let coding = res.headers().get(header::CONTENT_ENCODING).cloned();
                let body = read_whole(res.into_body()).await.unwrap_or_default();
                // Shown to the client as text: decoded like any answer (a body that does not
                // decode is shown as nothing rather than as compressed bytes).
                let body = match coding {
                    None => body,
                    Some(c) => super::decompress::decode(c.as_bytes(), &body, MAX_ANSWER_BYTES).unwrap_or_default(),
                };
                return Err(Failure {
                    reason,
                    answer: Some(FailedAnswer {
                        status,
                        content_type,
                        body,
                    }),
                });
            }
            let (mut head, body) = res.into_parts();
            let bytes = read_whole(body).await.map_err(Failure::from)?;
            let bytes = match head.headers.get(header::CONTENT_ENCODING) {
                None => bytes,
                Some(coding) => super::decompress::decode(coding.as_bytes(), &bytes, MAX_ANSWER_BYTES)?,
            };
            match &b.modifier {
                Some(m) if m.modifies_responses() => {
                    Ok(m.on_response(sent_query.as_deref(), &mut head).unwrap_or(bytes))
                }
                _ => Ok(bytes),
            }
        };
        let bytes: Bytes = read.await?;
        self.endpoint.backends()[i]
            .read(&bytes)
            .map_err(|e| Failure::from(e.to_string()))
    }

    /// `no-op`: the single backend's answer streams through as it is, only its URL rendered.
    async fn pass_through(
        &self,
        call: &mut Call,
        mut req: Request<RequestBody>,
    ) -> Result<Response<BackendBody>, BackendError> {
        let (Some(b), Some(cb)) = (self.endpoint.backends().first(), self.backends.first()) else {
            return Err(BackendError::Failed);
        };
        let url = b
            .url()
            .render(call.params.as_slice(), &[])
            .map_err(|_| BackendError::Failed)?;
        let url = self.with_query(url, req.uri().query());
        *req.uri_mut() = url.parse::<Uri>().map_err(|_| BackendError::Failed)?;
        if let Some(m) = &cb.method {
            *req.method_mut() = m.clone();
        }
        let req = modify_request(cb.modifier.as_deref(), req);
        let query = cb
            .modifier
            .as_ref()
            .filter(|m| m.modifies_responses())
            .and_then(|_| req.uri().query().map(str::to_owned));
        if let Some(limit) = &cb.limit
            && !limit.allows()
        {
            return Err(BackendError::Overloaded);
        }
        let res = cb.backend.call(call, req).await?;
        match &cb.modifier {
            Some(m) if m.modifies_responses() => {
                let (mut head, body) = res.into_parts();
                Ok(match m.on_response(query.as_deref(), &mut head) {
                    None => Response::from_parts(head, body),
                    Some(new) => {
                        // The backend's body is replaced: its framing and coding go with it.
                        drop(body);
                        head.headers.remove(header::CONTENT_LENGTH);
                        head.headers.remove(header::CONTENT_ENCODING);
                        head.headers.remove(header::TRANSFER_ENCODING);
                        Response::from_parts(head, BackendBody::full(new))
                    }
                })
            }
            _ => Ok(res),
        }
    }
}

/// The request as a backend's [`CallModifier`] leaves it; a replaced body takes its own
/// framing (the old `Content-Length` goes).
fn modify_request(m: Option<&dyn CallModifier>, req: Request<RequestBody>) -> Request<RequestBody> {
    let Some(m) = m else { return req };
    let (mut head, body) = req.into_parts();
    match m.on_request(&mut head) {
        None => Request::from_parts(head, body),
        Some(new) => {
            head.headers.remove(header::CONTENT_LENGTH);
            head.headers.remove(header::TRANSFER_ENCODING);
            Request::from_parts(head, RequestBody::full(new))
        }
    }
}

/// An answer's body read whole, up to [`MAX_ANSWER_BYTES`], then settled as the engine's
/// response body settles a streamed one: read whole, its connection goes back to the pool and
/// the breaker and outlier detection judge the attempt; cut by the target, it counts against it.
async fn read_whole(mut body: BackendBody) -> Result<Bytes, String> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else { continue };
                len += data.len();
                if len > MAX_ANSWER_BYTES {
                    body.settle(false);
                    return Err(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"));
                }
                chunks.push(data);
            }
            Some(Err(e)) => {
                body.settle(true);
                return Err(format!("reading the answer: {e}"));
            }
        }
    }
    body.settle(false);
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    })
}

impl Compose {
    pub fn new(endpoint: Endpoint, backends: Vec<ComposeBackend>, timeout: Duration) -> Compose {
        let names: Vec<&str> = backends.iter().map(|b| b.backend.name()).collect();
        Compose {
            name: names.join("+").into(),
            endpoint,
            backends: backends.into(),
            timeout,
            pass_query: false,
        }
    }
}
