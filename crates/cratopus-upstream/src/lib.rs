//! Upstream pools: the targets of an upstream (one per resolved address), how one is chosen
//! for a request ([`balancer`]), and the background work that keeps the set current: DNS
//! re-resolution and active health checks ([`health`]).
//!
//! A pool outlives config reloads when its upstream's config did not change, so health state
//! and in-flight counts carry over. Its background task holds only a `Weak` reference and ends
//! when the last snapshot using the pool is gone.

pub mod balancer;
pub mod breaker;
pub mod bulkhead;
pub mod discovery;
pub mod grpc;
pub mod grpc_health;
pub mod health;
pub mod outlier;
pub mod pool;
pub mod retry;
pub mod shared_state;
pub mod split;
pub mod target;
pub mod tls;

pub use breaker::{Breaker, BreakerSettings, BreakerState};
pub use bulkhead::{Bulkhead, BulkheadPermit};
pub use outlier::{OutlierDetector, OutlierSettings};
pub use pool::{TargetSet, UpstreamPool};
pub use retry::{RetryBudget, RetryPolicy};
pub use split::{SplitSettings, SplitState};
pub use target::{InflightGuard, Target, TargetKind};
pub use tls::UpstreamTls;
pub mod backend;
pub mod body;
pub mod conn_pool;
pub mod fed_body;
pub mod forwarded;
pub mod h1_client;
pub mod headers;
pub mod resilience;

pub use backend::{
    Backend, BackendError, ByService, COMPLETED, Call, CallModifier, Compose, ComposeBackend, ErrorPolicy,
    MAX_ANSWER_BYTES, ProxyLimit, Service, Split, Upstream, UpstreamCall,
};
pub use body::{BackendBody, BodyFault, BodyStats, ClientBody, RequestBody};
