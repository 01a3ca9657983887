//! The errors the gateway answers itself, each with its status and a stable `code`.

use bytes::Bytes;
use cratopus_policies::graphql::{GraphqlRefusal, Kind as GraphqlKind};
use cratopus_policies::validation::Violation;
use http::{HeaderValue, Response, StatusCode, header};
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("no organization serves host `{0}`")]
    UnknownHost(String),
    #[error("no route matches this path")]
    NoRoute,
    #[error("this route does not allow method {0}")]
    MethodNotAllowed(String, HeaderValue),
    #[error("the request body is larger than the {0} bytes this route accepts")]
    BodyTooLarge(u64),
    #[error(
        "the request body could not be read: its chunked framing is malformed, or the client closed the connection before its end"
    )]
    BadRequestBody,
    #[error("the client stopped sending its request body")]
    ClientBodyTimeout,
    #[error("the request headers are larger than the {0} bytes the gateway accepts")]
    HeadersTooLarge(usize),
    #[error("no healthy target in upstream `{0}`")]
    NoHealthyTarget(String),
    #[error("the upstream could not be reached")]
    UpstreamUnreachable,
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    #[error("the upstream failed to answer")]
    UpstreamFailed,
    #[error(
        "the TLS handshake with the upstream failed (its certificate could not be verified, or it does not speak TLS)"
    )]
    UpstreamTls,
    #[error("this organization requires a client certificate")]
    ClientCertRequired,
    #[error(
        "this host is served with a different client certificate policy than the connection was made for; connect with its own name"
    )]
    MisdirectedRequest,
    #[error("{0}")]
    BadRequest(String),
    #[error("requests from this address are blocked")]
    Blocked,
    #[error("this route is switched off for now")]
    RouteDisabled,
    #[error("too many requests; retry after {0} s")]
    RateLimited(u64),
    #[error("the quota of this route is used up; it resets in {0} s")]
    QuotaExceeded(u64),
    #[error("the rate-limit store is unreachable and this gateway fails closed")]
    LimitsUnavailable,
    #[error("too many requests in flight on this route or upstream")]
    Overloaded,
    #[error("authentication failed: {detail}")]
    Unauthenticated {
        code: &'static str,
        detail: &'static str,
        challenge: HeaderValue,
    },
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    #[error("requests from this address are not allowed here")]
    IpDenied,
    #[error("{message}")]
    Cors { code: &'static str, message: String },
    #[error("{}", .0.message)]
    Invalid(Arc<Violation>),
    /// A GraphQL guard's refusal: answered as GraphQL errors, not the gateway's JSON error.
    #[error("{0}")]
    Graphql(Arc<GraphqlRefusal>),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::UnknownHost(_) | GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BadRequestBody => StatusCode::BAD_REQUEST,
            GatewayError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::NoHealthyTarget(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamUnreachable | GatewayError::UpstreamFailed | GatewayError::UpstreamTls => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::ClientCertRequired => StatusCode::UNAUTHORIZED,
            GatewayError::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Blocked => StatusCode::FORBIDDEN,
            GatewayError::RouteDisabled => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::RateLimited(_) | GatewayError::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::LimitsUnavailable | GatewayError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden(_) | GatewayError::IpDenied | GatewayError::Cors { .. } => StatusCode::FORBIDDEN,
            GatewayError::Invalid(v) => v.kind.status(),
            GatewayError::Graphql(g) => StatusCode::from_u16(g.kind.status()).unwrap_or(StatusCode::BAD_REQUEST),
        }
    }

    /// A stable machine-readable name, also written to the traffic log.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::UnknownHost(_) => "unknown_host",
            GatewayError::NoRoute => "no_route",
            GatewayError::MethodNotAllowed(..) => "method_not_allowed",
            GatewayError::BodyTooLarge(_) => "body_too_large",
            GatewayError::BadRequestBody => "bad_request_body",
            GatewayError::ClientBodyTimeout => "client_body_timeout",
            GatewayError::HeadersTooLarge(_) => "headers_too_large",
            GatewayError::NoHealthyTarget(_) => "no_healthy_target",
            GatewayError::UpstreamUnreachable => "upstream_unreachable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::UpstreamFailed => "upstream_failed",
            GatewayError::UpstreamTls => "upstream_tls_failed",
            GatewayError::ClientCertRequired => "client_certificate_required",
            GatewayError::MisdirectedRequest => "misdirected_request",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::Blocked => "ip_blocked",
            GatewayError::RouteDisabled => "route_disabled",
            GatewayError::RateLimited(_) => "rate_limited",
            GatewayError::QuotaExceeded(_) => "quota_exceeded",
            GatewayError::LimitsUnavailable => "limits_unavailable",
            GatewayError::Overloaded => "overloaded",
            GatewayError::Unauthenticated { code, .. } => code,
            GatewayError::Forbidden(_) => "forbidden",
            GatewayError::IpDenied => "ip_denied",
            GatewayError::Cors { code, .. } => code,
            GatewayError::Invalid(v) => v.kind.code(),
            GatewayError::Graphql(g) => g.kind.name(),
        }
    }

    /// `{"error": {"status", "code", "message", "request_id"}}`, with `Allow` on a 405 and
    /// `Retry-After` on a 429.
    pub fn to_response(&self, request_id: &HeaderValue) -> Response<Bytes> {
        let body = match self {
            // A validation failure lists what was wrong, where.
            GatewayError::Invalid(v) => {
                let doc = serde_json::json!({"error": {
                    "status": self.status().as_u16(),
                    "code": self.code(),
                    "message": v.message,
                    "request_id": request_id.to_str().unwrap_or(""),
                    "details": v.details(),
                }});
                let mut b = serde_json::to_vec(&doc).unwrap_or_default();
                b.push(b'\n');
                Bytes::from(b)
            }
            // GraphQL clients read `{"errors": [{"message", "extensions": {"code"}}]}`.
            GatewayError::Graphql(g) => Bytes::from(g.body()),
            _ => error_body(self.status(), self.code(), &self.to_string(), request_id),
        };
        let mut res = Response::new(body);
        *res.status_mut() = self.status();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            GatewayError::MethodNotAllowed(_, allow) => {
                res.headers_mut().insert(header::ALLOW, allow.clone());
            }
            GatewayError::Unauthenticated { challenge, .. } => {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.clone());
            }
            GatewayError::RateLimited(secs) | GatewayError::QuotaExceeded(secs) => {
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            GatewayError::Graphql(g) => match g.kind {
                GraphqlKind::Method => {
                    res.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                }
                // The client sends the query next; no cache may keep this answer (as Apollo
                // Router answers it).
                GraphqlKind::PersistedNotFound => {
                    res.headers_mut().insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("private, no-cache, must-revalidate"),
                    );
                }
                _ => {}
            },
            _ => {}
        }
        res
    }
}

impl GatewayError {
    /// The gRPC status of this error (grpc/doc/statuscodes.md), for a gRPC request: what a
    /// gRPC client can act on (UNAVAILABLE is retried by gRPC clients, RESOURCE_EXHAUSTED
    /// backs off). Errors the spec's HTTP-to-gRPC table covers map as it says (400 → INTERNAL,
    /// 404 → UNIMPLEMENTED, 502/503/504 → UNAVAILABLE), refined where the gateway knows more.
    pub fn grpc_status(&self) -> u8 {
        const INVALID_ARGUMENT: u8 = 3;
        const DEADLINE_EXCEEDED: u8 = 4;
        const PERMISSION_DENIED: u8 = 7;
        const RESOURCE_EXHAUSTED: u8 = 8;
        const UNIMPLEMENTED: u8 = 12;
        const INTERNAL: u8 = 13;
        const UNAVAILABLE: u8 = 14;
        const UNAUTHENTICATED: u8 = 16;
        match self {
            GatewayError::UnknownHost(_) | GatewayError::NoRoute | GatewayError::MethodNotAllowed(..) => UNIMPLEMENTED,
            GatewayError::BodyTooLarge(_) | GatewayError::HeadersTooLarge(_) => RESOURCE_EXHAUSTED,
            GatewayError::BadRequestBody | GatewayError::BadRequest(_) => INTERNAL,
            GatewayError::ClientBodyTimeout | GatewayError::UpstreamTimeout => DEADLINE_EXCEEDED,
            GatewayError::NoHealthyTarget(_)
            | GatewayError::UpstreamUnreachable
            | GatewayError::UpstreamFailed
            | GatewayError::UpstreamTls
            | GatewayError::RouteDisabled
            | GatewayError::LimitsUnavailable
            | GatewayError::Overloaded
            | GatewayError::MisdirectedRequest => UNAVAILABLE,
            GatewayError::RateLimited(_) | GatewayError::QuotaExceeded(_) => RESOURCE_EXHAUSTED,
            GatewayError::Unauthenticated { .. } | GatewayError::ClientCertRequired => UNAUTHENTICATED,
            GatewayError::Forbidden(_) | GatewayError::IpDenied | GatewayError::Blocked | GatewayError::Cors { .. } => {
                PERMISSION_DENIED
            }
            // A GraphQL refusal on a gRPC request is unlikely but possible (one route, both
            // kinds of client): the operation was refused as invalid.
            GatewayError::Invalid(_) | GatewayError::Graphql(_) => INVALID_ARGUMENT,
        }
    }

    /// The error as a gRPC answer: a Trailers-Only response (HTTP 200, `content-type:
    /// application/grpc`, `grpc-status` and `grpc-message` in the one header block, which ends
    /// the stream), the form the gRPC spec gives a call that fails before any message and the
    /// one Envoy and linkerd answer with. Its status is in the head, so a retry policy or a
    /// gRPC-Web client over HTTP/1.1 (which cannot read trailers) sees it too. `Retry-After`
    /// and `WWW-Authenticate` stay as HTTP headers, for the callers that read them.
    pub fn to_grpc_response(&self) -> Response<Bytes> {
        use cratopus_upstream::grpc::{GRPC_MESSAGE, GRPC_STATUS, message_value};
        let mut res = Response::new(Bytes::new());
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert(GRPC_STATUS.clone(), HeaderValue::from(u16::from(self.grpc_status())));
        h.insert(GRPC_MESSAGE.clone(), message_value(&self.to_string()));
        match self {
            GatewayError::Unauthenticated { challenge, .. } => {
                h.insert(header::WWW_AUTHENTICATE, challenge.clone());
            }
            GatewayError::RateLimited(secs) | GatewayError::QuotaExceeded(secs) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            _ => {}
        }
        res
    }
}

/// The JSON error body every gateway error uses.
pub fn error_body(status: StatusCode, code: &str, message: &str, request_id: &HeaderValue) -> Bytes {
    let doc = serde_json::json!({"error": {
        "status": status.as_u16(),
        "code": code,
        "message": message,
        "request_id": request_id.to_str().unwrap_or(""),
    }});
    let mut v = serde_json::to_vec(&doc).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

impl GatewayError {
    /// The answer to a request whose body the client broke (`limit`: the route's body limit).
    pub fn from_fault(f: cratopus_upstream::BodyFault, limit: u64) -> GatewayError {
        use cratopus_upstream::BodyFault;
        match f {
            BodyFault::TooLarge => GatewayError::BodyTooLarge(limit),
            BodyFault::Broken => GatewayError::BadRequestBody,
            BodyFault::Stalled => GatewayError::ClientBodyTimeout,
        }
    }
}

/// A policy's refusal as the gateway answers it.
impl From<cratopus_policies::chain::Refusal> for GatewayError {
    fn from(r: cratopus_policies::chain::Refusal) -> GatewayError {
        use cratopus_policies::chain::Refusal;
        match r {
            Refusal::IpDenied => GatewayError::IpDenied,
            Refusal::Unauthenticated {
                code,
                detail,
                challenge,
            } => GatewayError::Unauthenticated {
                code,
                detail,
                challenge,
            },
            Refusal::Forbidden(why) => GatewayError::Forbidden(why),
            Refusal::Hidden => GatewayError::NoRoute,
            Refusal::RateLimited(s) => GatewayError::RateLimited(s),
            Refusal::QuotaExceeded(s) => GatewayError::QuotaExceeded(s),
            Refusal::LimitsUnavailable => GatewayError::LimitsUnavailable,
            Refusal::Overloaded => GatewayError::Overloaded,
            Refusal::BodyTooLarge(n) => GatewayError::BodyTooLarge(n),
            Refusal::Invalid(v) => GatewayError::Invalid(v),
            Refusal::Graphql(g) => GatewayError::Graphql(g),
        }
    }
}
