//! The bodies the cache wraps (`BackendBody::wrap`, so the upstream connection and the attempt
//! are settled as they would be): [`Tee`] relays a miss to the client as it arrives and keeps a
//! copy, stored when the body ends whole; [`Replaced`] answers with a stored body instead of the
//! backend's (a 304 that refreshed an entry, a 5xx answered stale), reading the backend's to its
//! end first so that its connection goes back to the pool.

use super::store::{CacheStore, FlightGuard};
use super::stored::Stored;
use bytes::{Bytes, BytesMut};
use cratopus_upstream::body::{BoxError, Frames};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What to store once the body is whole.
pub struct Pending {
    pub store: Arc<CacheStore>,
    pub key: Arc<str>,
    /// The answer with an empty body; the body is filled in at the end.
    pub answer: Stored,
    pub max_body: u64,
    /// The miss this request leads: released (waking the requests that wait) once stored.
    pub flight: Option<Arc<FlightGuard>>,
}

pub struct Tee {
    inner: Frames,
    /// `None` once storing was given up (too large, trailers, an error).
    pending: Option<Box<Pending>>,
    copy: BytesMut,
}

impl Tee {
    pub fn new(inner: Frames, pending: Box<Pending>) -> Tee {
        let mut tee = Tee {
            inner,
            pending: Some(pending),
            copy: BytesMut::new(),
        };
        // An empty body (a 204) is never polled: it is whole already.
        if tee.inner.is_end_stream() {
            tee.finish();
        }
        tee
    }

    /// The body is whole: stored, and the requests waiting for it woken.
    fn finish(&mut self) {
        if let Some(p) = self.pending.take() {
            let Pending {
                store,
                key,
                mut answer,
                flight,
                ..
            } = *p;
            answer.body = std::mem::take(&mut self.copy).freeze();
            store.put(key, Arc::new(answer));
            drop(flight); // after the answer is in the store: the waiters find it
        }
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) => {
                    if let Some(p) = &this.pending {
                        if (this.copy.len() + data.len()) as u64 > p.max_body {
                            this.pending = None; // too large: streams through uncached
                            this.copy = BytesMut::new();
                        } else {
                            this.copy.extend_from_slice(data);
                        }
                    }
                    // The last frame: the client may not poll again once the body says so.
                    if this.inner.is_end_stream() {
                        this.finish();
                    }
                }
                // Trailers are not stored: such an answer is not cached.
                None => this.pending = None,
            },
            Poll::Ready(Some(Err(_))) => this.pending = None,
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stored body in place of the backend's.
pub struct Replaced {
    inner: Option<Frames>,
    body: Option<Bytes>,
    /// The backend's body broke: this body never says it ended whole, so that the connection
    /// is not handed back to the pool.
    broken: bool,
}

impl Replaced {
    pub fn new(inner: Frames, body: Option<Bytes>) -> Replaced {
        Replaced {
            inner: Some(inner),
            body: body.filter(|b| !b.is_empty()),
            broken: false,
        }
    }
}

impl Body for Replaced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        while let Some(inner) = &mut this.inner {
            match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(None) => this.inner = None,
                // Broken: not what the client gets, so not its error either.
                Poll::Ready(Some(Err(_))) => {
                    this.inner = None;
                    this.broken = true;
                }
            }
        }
        Poll::Ready(this.body.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        !self.broken && self.inner.is_none() && self.body.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.body.as_ref().map_or(0, |b| b.len() as u64))
    }
}
