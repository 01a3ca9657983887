//! A request body fed by the connection that reads it: the gateway's own HTTP/1 server
//! (`cratopus-server`'s `h1` module) decodes the client's bytes and hands each piece over here.
//!
//! The connection reads the socket for the body only when the body is asked for (the engine
//! polled it and found nothing): that is the flow control (a slow upstream slows the client,
//! nothing piles up in between), and it is when `100 Continue` is due (RFC 9110 §10.1.1: a
//! server that never reads the body need not invite it). One piece at a time sits in the slot.
//!
//! The two sides share one small lock, never held across an await.

use crate::body::BoxError;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Slot {
    frame: Option<Frame<Bytes>>,
    /// The body is complete (after `frame`, if one waits).
    ended: bool,
    /// Why the body broke, handed to the reader once.
    failed: Option<BoxError>,
    /// The reader polled and found nothing: the connection should read.
    wanted: bool,
    reader: Option<Waker>,
    feeder: Option<Waker>,
    reader_gone: bool,
    feeder_gone: bool,
}

type Shared = Arc<Mutex<Slot>>;

fn lock(s: &Shared) -> MutexGuard<'_, Slot> {
    // A panic while the lock was held leaves a slot that is still consistent (plain fields).
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The connection's end: it offers each piece once the body asks for one.
pub struct Feeder {
    shared: Shared,
}

/// The body's end, as the engine reads it.
pub struct FedBody {
    shared: Shared,
    /// The bytes still to come, when the request said how many (`Content-Length`).
    remaining: Option<u64>,
}

/// A body of `length` bytes if known (`Content-Length`), `None` for a chunked one.
pub fn channel(length: Option<u64>) -> (Feeder, FedBody) {
    let shared = Arc::new(Mutex::new(Slot::default()));
    (
        Feeder { shared: shared.clone() },
        FedBody {
            shared,
            remaining: length,
        },
    )
}

/// What the body wants from the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A piece: the slot is empty and the reader waits.
    More,
    /// Nothing ever again: the body was dropped unread (the request was answered without it).
    Gone,
}

impl Feeder {
    /// Ready when the body waits for a piece, or is gone.
    pub fn poll_want(&mut self, cx: &mut Context<'_>) -> Poll<Want> {
        let mut s = lock(&self.shared);
        if s.reader_gone {
            return Poll::Ready(Want::Gone);
        }
        if s.wanted && s.frame.is_none() {
            return Poll::Ready(Want::More);
        }
        if !s.feeder.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.feeder = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The slot holds what the reader waited for: wakes it, and it waits no more.
    fn wake_reader(s: &mut Slot) {
        s.wanted = false;
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }

    /// Hands over a piece of data (after [`Feeder::poll_want`] said `More`).
    pub fn data(&mut self, data: Bytes) {
        let mut s = lock(&self.shared);
        s.frame = Some(Frame::data(data));
        Self::wake_reader(&mut s);
    }

    /// Hands over the trailers of a chunked body.
    pub fn trailers(&mut self, trailers: HeaderMap) {
        let mut s = lock(&self.shared);
        s.frame = Some(Frame::trailers(trailers));
        Self::wake_reader(&mut s);
    }

    /// The body is complete.
    pub fn end(self) {
        let mut s = lock(&self.shared);
        s.ended = true;
        Self::wake_reader(&mut s);
    }

    /// The body broke (the client closed early, sent bad framing).
    pub fn fail(self, error: BoxError) {
        let mut s = lock(&self.shared);
        s.failed = Some(error);
        Self::wake_reader(&mut s);
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        s.feeder_gone = true;
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }
}

impl Drop for FedBody {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        s.reader_gone = true;
        if let Some(w) = s.feeder.take() {
            w.wake();
        }
    }
}

/// The connection went away before the body's end.
#[derive(Debug, thiserror::Error)]
#[error("the client's connection closed before its request body ended")]
pub struct Incomplete;

impl Body for FedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut s = lock(&this.shared);
        if let Some(frame) = s.frame.take() {
            if let (Some(left), Some(d)) = (&mut this.remaining, frame.data_ref()) {
                *left = left.saturating_sub(d.len() as u64);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(e) = s.failed.take() {
            s.ended = true;
            return Poll::Ready(Some(Err(e)));
        }
        if s.ended {
            return Poll::Ready(None);
        }
        if s.feeder_gone {
            s.ended = true;
            return Poll::Ready(Some(Err(Box::new(Incomplete))));
        }
        s.wanted = true;
        if !s.reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.reader = Some(cx.waker().clone());
        }
        if let Some(w) = s.feeder.take() {
            w.wake();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        if self.remaining == Some(0) {
            return true;
        }
        let s = lock(&self.shared);
        s.ended && s.frame.is_none() && s.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn pieces_are_read_only_when_asked_for_and_end() {
        let (mut feeder, mut body) = channel(Some(5));
        assert_eq!(body.size_hint().exact(), Some(5));
        let fed = tokio::spawn(async move {
            for piece in [&b"he"[..], b"llo"] {
                let want = std::future::poll_fn(|cx| feeder.poll_want(cx)).await;
                assert_eq!(want, Want::More);
                feeder.data(Bytes::from_static(piece));
            }
            feeder.end();
        });
        let mut got = Vec::new();
        while let Some(f) = body.frame().await {
            got.extend_from_slice(f.unwrap().data_ref().unwrap());
        }
        assert_eq!(got, b"hello");
        assert!(body.is_end_stream());
        fed.await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_body_is_gone_and_a_dropped_feeder_breaks_the_body() {
        let (mut feeder, body) = channel(None);
        drop(body);
        assert_eq!(std::future::poll_fn(|cx| feeder.poll_want(cx)).await, Want::Gone);
        let (feeder, mut body) = channel(None);
        drop(feeder);
        assert!(body.frame().await.unwrap().is_err());
    }
}
