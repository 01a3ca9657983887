//! One request and its response on an HTTP/1 connection, driven by one poll loop over the one
//! socket: the request body is read as the engine asks for it, the response is written as its
//! body comes, and both go on at once (a backend may stream its answer while the client is
//! still sending). While the engine has no answer yet, the socket is watched for the client
//! going away, which cancels the request (its log line then says 499), as hyper does.

use super::message::{self, CONTINUE, Written};
use crate::listener::ServedBody;
use bytes::{Buf, Bytes, BytesMut};
use cratopus_http1::response::{CHUNK_END, ChunkHead, LAST_CHUNK, ResponseFraming, encode_last_chunk};
use cratopus_http1::{BodyDecoder, Method, Version, pool};
use cratopus_upstream::fed_body::{Feeder, Incomplete, Want};
use http_body::Body;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite};

/// The engine's answer, boxed so that an idle connection keeps no room for it.
pub(super) type Answer = Pin<Box<dyn Future<Output = http::Response<cratopus_core::body::ResponseBody>> + Send>>;

/// Bytes of body read at once once a body is being read (the head's buffer is smaller).
const BODY_READ: usize = 16 * 1024;
/// Body pieces up to this size are copied behind the head or the chunk line so that they go
/// out in the same write; larger ones are written from their own memory.
const COPY_MAX: usize = 4 * 1024;
/// Bytes queued for the socket before the body is polled for more.
const QUEUE_HIGH: usize = 64 * 1024;
/// While the engine works, bytes of a next (pipelined) request read ahead at most.
const READ_AHEAD: usize = pool::SMALL;

/// How the exchange ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The response is out and the next request may follow on the connection.
    KeepAlive,
    /// The response is out (or could not be); the connection closes.
    Close,
    /// The client went away before the answer: nothing was written.
    Gone,
    /// A `101` is out: the connection belongs to the upgrade now.
    Upgrade,
}

/// The request side.
enum Read {
    /// The body is being read for the engine.
    Body { feeder: Feeder, decoder: BodyDecoder },
    /// The request is whole: the socket is watched for the client going away.
    Watch,
    /// The engine dropped the body unread, or it broke: the connection cannot be reused.
    Abandoned,
    /// The client ended its side (or the read failed).
    Ended,
    /// Nothing more is read (read-ahead full).
    Paused,
}

/// The response side. (The exchange lives in one allocation per request and passes through
/// these states once; boxing the body would only add a second allocation.)
#[allow(clippy::large_enum_variant)]
enum Write {
    Waiting(Answer),
    Body {
        body: ServedBody,
        framing: ResponseFraming,
        left: Option<u64>,
    },
    /// Everything is queued; the exchange ends when the queue is out.
    Flushing,
}

/// Bytes on their way to the socket: small pieces gathered in `staged`, large ones written
/// from their own memory, in order.
#[derive(Default)]
struct Queue {
    segments: VecDeque<Bytes>,
    staged: BytesMut,
}

impl Queue {
    fn stage(&mut self) -> &mut BytesMut {
        if self.staged.capacity() == 0 {
            self.staged = pool::take();
        }
        &mut self.staged
    }

    /// Bytes not written yet (a handful of segments at most: each is over [`COPY_MAX`] and
    /// the queue is filled only up to [`QUEUE_HIGH`]).
    fn len(&self) -> usize {
        self.staged.len() + self.segments.iter().map(Bytes::len).sum::<usize>()
    }

    fn push_bytes(&mut self, b: &[u8]) {
        self.stage().extend_from_slice(b);
    }

    fn push_owned(&mut self, b: Bytes) {
        if b.len() <= COPY_MAX {
            self.push_bytes(&b);
            return;
        }
        if !self.staged.is_empty() {
            let staged = self.staged.split().freeze();
            self.segments.push_back(staged);
        }
        self.segments.push_back(b);
    }

    fn poll_flush<S: AsyncWrite + Unpin>(&mut self, io: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let n = if let Some(front) = self.segments.front_mut() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, front))?;
                front.advance(n);
                if front.is_empty() {
                    self.segments.pop_front();
                }
                n
            } else if !self.staged.is_empty() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.staged))?;
                self.staged.advance(n);
                n
            } else {
                return Pin::new(&mut *io).poll_flush(cx);
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
        }
    }

    /// Gives the staging buffer back to the pool.
    fn release(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        if staged.capacity() > 0 {
            pool::give(staged);
        }
    }
}

/// One request's exchange on the connection `io`, whose read buffer is `buf`.
pub(super) struct Exchange<'c, S> {
    io: &'c mut S,
    buf: &'c mut Option<BytesMut>,
    read: Read,
    write: Write,
    queue: Queue,
    method: Method,
    version: Version,
    /// The request allows keeping the connection.
    keep_alive: bool,
    /// The server stopping: read once, when the response head is written (its `Connection`).
    stopping: &'c tokio::sync::watch::Receiver<bool>,
    /// `Expect: 100-continue` not answered yet.
    continue_due: bool,
    written: Option<Written>,
    /// The response could not be written whole: the connection closes.
    broken: bool,
}

impl<'c, S: AsyncRead + AsyncWrite + Unpin> Exchange<'c, S> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        io: &'c mut S,
        buf: &'c mut Option<BytesMut>,
        body: Option<(Feeder, BodyDecoder)>,
        answer: Answer,
        method: Method,
        version: Version,
        keep_alive: bool,
        expect_continue: bool,
        stopping: &'c tokio::sync::watch::Receiver<bool>,
    ) -> Exchange<'c, S> {
        Exchange {
            io,
            buf,
            read: match body {
                Some((feeder, decoder)) => Read::Body { feeder, decoder },
                None => Read::Watch,
            },
            write: Write::Waiting(answer),
            queue: Queue::default(),
            method,
            version,
            keep_alive,
            stopping,
            continue_due: expect_continue,
            written: None,
            broken: false,
        }
    }

    /// Runs the exchange to its end. (Not an `async fn`: its future would keep the exchange
    /// twice, as the argument and as the local the poll borrows, 1,024 bytes against 504.)
    pub(super) fn run(mut self) -> impl Future<Output = Outcome> {
        std::future::poll_fn(move |cx| self.poll(cx))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        loop {
            let mut progressed = self.poll_read(cx);
            if matches!(self.read, Read::Ended) && !matches!(self.write, Write::Flushing) {
                // The client's end before the response's: gone (as hyper takes it; a
                // half-closed client is not told apart). Dropping the engine's future cancels
                // the request (499); dropping a body being sent logs it cut short.
                self.queue.release();
                return Poll::Ready(Outcome::Gone);
            }
            progressed |= self.poll_write(cx);
            let queued = self.queue.len();
            let flushed = self.queue.poll_flush(self.io, cx);
            // Room made in the queue is progress: the body, not polled while the queue was
            // full, must be polled again (nothing else would wake the task for it).
            progressed |= self.queue.len() < queued;
            match flushed {
                Poll::Ready(Ok(())) => {
                    if matches!(self.write, Write::Flushing) {
                        self.queue.release();
                        return Poll::Ready(self.outcome());
                    }
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "writing the response failed");
                    self.queue.release();
                    return Poll::Ready(match self.write {
                        Write::Waiting(_) => Outcome::Gone,
                        _ => Outcome::Close,
                    });
                }
                Poll::Pending => {}
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }

    fn outcome(&self) -> Outcome {
        let Some(w) = self.written else {
            return Outcome::Close;
        };
        if w.upgrade {
            return Outcome::Upgrade;
        }
        let request_whole = matches!(self.read, Read::Watch | Read::Paused);
        if w.keep_alive && self.keep_alive && !self.broken && request_whole {
            Outcome::KeepAlive
        } else {
            Outcome::Close
        }
    }

    /// Reads what the request side needs; true if anything moved.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.read {
            Read::Body { feeder, decoder } => {
                match feeder.poll_want(cx) {
                    Poll::Pending => return false,
                    Poll::Ready(Want::Gone) => {
                        self.read = Read::Abandoned;
                        return true;
                    }
                    Poll::Ready(Want::More) => {}
                }
                if std::mem::take(&mut self.continue_due) && matches!(self.write, Write::Waiting(_)) {
                    self.queue.push_bytes(CONTINUE);
                }
                let buf = self.buf.get_or_insert_with(pool::take);
                if !buf.is_empty() {
                    match decoder.decode(buf) {
                        Ok(step) if step.consumed > 0 || step.done => {
                            let taken = buf.split_to(step.consumed).freeze();
                            if !step.data.is_empty() {
                                feeder.data(taken.slice(step.data.clone()));
                            } else if let Some(t) = step.trailers {
                                feeder.trailers(message::trailers(t.of(&taken)));
                            }
                            if step.done
                                && let Read::Body { feeder, .. } = std::mem::replace(&mut self.read, Read::Watch)
                            {
                                feeder.end();
                            }
                            return true;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if let Read::Body { feeder, .. } = std::mem::replace(&mut self.read, Read::Abandoned) {
                                feeder.fail(Box::new(e));
                            }
                            return true;
                        }
                    }
                }
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(BODY_READ);
                }
                match tokio_util::io::poll_read_buf(Pin::new(&mut *self.io), cx, buf) {
                    Poll::Pending => false,
                    Poll::Ready(Ok(n)) if n > 0 => true,
                    Poll::Ready(r) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "reading the request body failed");
                        }
                        if let Read::Body { feeder, .. } = std::mem::replace(&mut self.read, Read::Ended) {
                            feeder.fail(Box::new(Incomplete));
                        }
                        true
                    }
                }
            }
            Read::Watch => {
                let buf = self.buf.get_or_insert_with(pool::take);
                if buf.len() >= READ_AHEAD {
                    self.read = Read::Paused;
                    return false;
                }
                if buf.capacity() == buf.len() {
                    buf.reserve(READ_AHEAD);
                }
                match tokio_util::io::poll_read_buf(Pin::new(&mut *self.io), cx, buf) {
                    Poll::Pending => false,
                    Poll::Ready(Ok(n)) if n > 0 => true,
                    Poll::Ready(_) => {
                        self.read = Read::Ended;
                        true
                    }
                }
            }
            Read::Abandoned | Read::Ended | Read::Paused => false,
        }
    }

    /// Moves the response along; true if anything moved.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.write {
            Write::Waiting(answer) => {
                let Poll::Ready(res) = answer.as_mut().poll(cx) else {
                    return false;
                };
                self.start(res.map(ServedBody::h1));
                // The body's first piece, when it is there already (a whole answer), goes out
                // in the same write as the head: one syscall (one TLS record), and a client
                // that reads the head finds the response complete.
                self.poll_write(cx);
                true
            }
            Write::Body { body, framing, left } => {
                let mut progressed = false;
                while self.queue.len() < QUEUE_HIGH {
                    match Pin::new(&mut *body).poll_frame(cx) {
                        Poll::Pending => break,
                        Poll::Ready(Some(Ok(frame))) => {
                            progressed = true;
                            match frame.into_data() {
                                Ok(data) => {
                                    if data.is_empty() {
                                        continue;
                                    }
                                    match framing {
                                        ResponseFraming::Chunked => {
                                            self.queue.push_bytes(ChunkHead::new(data.len()).as_bytes());
                                            self.queue.push_owned(data);
                                            self.queue.push_bytes(CHUNK_END);
                                        }
                                        ResponseFraming::Length(_) => {
                                            let n = data.len() as u64;
                                            let allowed = left.unwrap_or(0);
                                            if n > allowed {
                                                // More than the head announced: what fits goes,
                                                // then the connection closes.
                                                let fit = usize::try_from(allowed).unwrap_or(0);
                                                self.queue.push_owned(data.slice(..fit));
                                                *left = Some(0);
                                                self.broken = true;
                                                self.write = Write::Flushing;
                                                return true;
                                            }
                                            *left = Some(allowed - n);
                                            self.queue.push_owned(data);
                                        }
                                        ResponseFraming::Close => self.queue.push_owned(data),
                                        ResponseFraming::NoBody => {}
                                    }
                                }
                                Err(frame) => {
                                    if let (Ok(trailers), ResponseFraming::Chunked) = (frame.into_trailers(), *framing)
                                    {
                                        let mut end = BytesMut::new();
                                        let fields =
                                            trailers.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
                                        if encode_last_chunk(&mut end, fields).is_err() {
                                            // Header maps hold no field that breaks a head;
                                            // were one there, the trailers are left out.
                                            end.clear();
                                            end.extend_from_slice(LAST_CHUNK);
                                        }
                                        self.queue.push_bytes(&end);
                                        // Trailers end the body.
                                        *framing = ResponseFraming::NoBody;
                                        self.end_body();
                                        return true;
                                    }
                                }
                            }
                        }
                        Poll::Ready(Some(Err(e))) => {
                            // The body broke: the client must see the response cut, not
                            // complete; the connection closes after what was queued.
                            tracing::debug!(error = %e, "the response body failed before its end");
                            self.broken = true;
                            self.write = Write::Flushing;
                            return true;
                        }
                        Poll::Ready(None) => {
                            match framing {
                                ResponseFraming::Chunked => self.queue.push_bytes(LAST_CHUNK),
                                ResponseFraming::Length(_) if left.is_some_and(|l| l > 0) => self.broken = true,
                                _ => {}
                            }
                            self.end_body();
                            return true;
                        }
                    }
                }
                progressed
            }
            Write::Flushing => false,
        }
    }

    fn end_body(&mut self) {
        if let Write::Body { body, .. } = std::mem::replace(&mut self.write, Write::Flushing) {
            drop(body);
        }
    }

    /// The answer arrived: its head is queued, its body next.
    fn start(&mut self, res: http::Response<ServedBody>) {
        let (parts, body) = res.into_parts();
        // The invitation was not taken up: the client learns from the answer instead.
        self.continue_due = false;
        // A server that is stopping closes the connection after this answer, and says so.
        if *self.stopping.borrow() {
            self.keep_alive = false;
        }
        let written = message::response_head(
            self.queue.stage(),
            &parts,
            body.size_hint().exact(),
            self.method,
            self.version,
            self.keep_alive,
        );
        self.written = Some(written);
        self.write = match written.framing {
            ResponseFraming::NoBody => Write::Flushing,
            framing => Write::Body {
                body,
                framing,
                left: match framing {
                    ResponseFraming::Length(n) => Some(n),
                    _ => None,
                },
            },
        };
    }
}
