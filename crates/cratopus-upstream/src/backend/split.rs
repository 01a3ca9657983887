//! A weighted split as a backend: one backend per arm, the arm chosen per request by the
//! split's runtime state ([`crate::split::SplitState`]: override header, sticky key, weights),
//! and each arm's answer recorded for the rollback monitor.

use super::{Backend, BackendError, Call};
use crate::body::BackendBody;
use crate::body::RequestBody;
use crate::split::SplitState;
use http::{Request, Response};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A route's split: its runtime state (carried over reloads) and a backend per arm (rebuilt
/// with each snapshot, in the order of the state's arms).
pub struct Split {
    pub state: Arc<SplitState>,
    pub arms: Box<[Backend]>,
}

impl Split {
    pub fn new(state: Arc<SplitState>, arms: Vec<Backend>) -> Split {
        debug_assert_eq!(state.settings().arms.len(), arms.len());
        Split {
            state,
            arms: arms.into(),
        }
    }

    /// Calls the chosen arm. Its answer counts as a failure for the rollback monitor when it is
    /// a 5xx or no answer at all (the gateway then says 502, 503 or 504); a call the client
    /// broke (its body too large, cut or stalled) counts for neither side.
    pub async fn call(
        &self,
        call: &mut Call,
        req: Request<RequestBody>,
    ) -> Result<Response<BackendBody>, BackendError> {
        let (arm, _) = self.state.choose(req.headers(), call.client, call.consumer.as_deref());
        let Some(backend) = self.arms.get(arm) else {
            return Err(BackendError::Failed);
        };
        // An upstream arm is awaited in place (no box on the canary's path); services and
        // shadows answer through their own boxed futures. The compile never makes a split an
        // arm of a split, which would make this future contain itself.
        let res = match backend {
            Backend::Upstream(u) => u.call(call, req).await,
            Backend::Service(s) => s.call(call, req).await,
            Backend::Shadow(s) => s.call(call, req).await,
            Backend::ByService(b) => b.call(call, req).await,
            Backend::Split(_) | Backend::Compose(_) => Err(BackendError::Failed),
        };
        let error = match &res {
            Ok(r) => Some(r.status().is_server_error()),
            Err(BackendError::Client(_)) => None,
            Err(_) => Some(true),
        };
        if let Some(error) = error.filter(|_| !call.client_fault) {
            // The upstream call timed itself: its start and time to the head are reused rather
            // than read from the clock twice more per request.
            let (head_time, now) = match (call.started, call.elapsed) {
                (Some(started), Some(took)) => (took, started + took),
                _ => (Duration::ZERO, Instant::now()),
            };
            self.state.record(arm, error, head_time, now);
        }
        res
    }
}
