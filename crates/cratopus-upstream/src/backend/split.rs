//! A weighted split as a backend: one backend per arm, the arm chosen per request by the
//! split's runtime state ([`crate::split::SplitState`]: override header, sticky key, weights),
//! and each arm's answer recorded for the rollback monitor.

use super::{Answer, Backend, BackendError, Call};
use crate::body::RequestBody;
use crate::split::SplitState;
use http::Request;
use std::sync::Arc;
use std::time::Instant;

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
    pub fn call<'a>(&'a self, call: &'a mut Call, req: Request<RequestBody>) -> Answer<'a> {
        Box::pin(async move {
            let (arm, _) = self.state.choose(req.headers(), call.client, call.consumer.as_deref());
            let Some(backend) = self.arms.get(arm) else {
                return Err(BackendError::Failed);
            };
            let began = Instant::now();
            let res = backend.call(call, req).await;
            let error = match &res {
                Ok(r) => Some(r.status().is_server_error()),
                Err(BackendError::Client(_)) => None,
                Err(_) => Some(true),
            };
            if let Some(error) = error.filter(|_| !call.client_fault) {
                let now = Instant::now();
                self.state.record(arm, error, now.saturating_duration_since(began), now);
            }
            res
        })
    }
}
