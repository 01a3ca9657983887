//! The gateway's own HTTP/1 **server-side** codec (issue 16, stage one).
//!
//! Why not hyper: hyper keeps about 16 KiB of read and write buffers in every connection, idle
//! or not, with no way to give them back, and rebuilds every header it forwards. This crate is
//! the parsing and framing half of a replacement; it does no I/O, so the connection loop that
//! uses it (stage two, in `cratopus-server`) decides when a buffer is taken from the [`pool`]
//! and when it goes back — an idle keep-alive connection then holds none.
//!
//! - [`parse_request`] reads a request head from a borrowed buffer with `httparse` and returns a
//!   [`RequestHead`] of byte ranges into that buffer ([`Span`]): method, target, version and
//!   every field line as it came, so that a proxy can forward the bytes instead of rebuilding
//!   them. It applies RFC 9112 strictly (see [`ParseError`] for each rule and its status).
//! - [`BodyDecoder`] frames the body (`Content-Length` or `chunked`) incrementally over
//!   whatever part of it the buffer holds, handing out data as ranges (or `Bytes`) without
//!   copying, and says where the request ends so that a pipelined one can follow.
//! - [`response`] writes status lines and heads, chunked bodies, and knows which responses have
//!   no body.
//! - [`pool`] lends fixed-size buffers per thread.
//!
//! Decisions where RFC 9112 leaves a choice (each is a test in `tests/grammar.rs`):
//! - bare LF ends no line (httparse accepts it; we refuse with [`ParseError::BareLf`]);
//! - `Content-Length` appears at most once and is never a list: `Content-Length: 1, 1` and two
//!   identical lines are refused (RFC 9110 §8.6 allows either; nginx refuses, hyper merges);
//! - `Transfer-Encoding` must be exactly `chunked` (final, once); any other coding is 501;
//! - `Transfer-Encoding` with `Content-Length` is refused (400) rather than letting TE win;
//! - HTTP/1.1 needs exactly one valid `Host`, in every target form; with an absolute-form target
//!   the target's authority is the one that counts ([`RequestHead::authority`], RFC 9112 §3.2.2);
//! - a fragment (`#`) in the target and userinfo (`user@`) in an absolute-form authority are
//!   refused; HTTP/1.2 and later minors are 505 like HTTP/2.0 (RFC 9110 §2.5 would treat them
//!   as 1.1; no client sends them).
//!
//! How a connection loop uses it (stage two's shape, without the I/O):
//!
//! ```
//! use cratopus_http1::response::{HeadWriter, ResponseFraming, framing};
//! use cratopus_http1::{BodyDecoder, Limits, parse_request, pool};
//!
//! let limits = Limits::default();
//! // Bytes arrive: only now does the connection take a buffer.
//! let mut buf = pool::take();
//! buf.extend_from_slice(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
//! buf.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
//! let mut out = pool::take();
//! let mut served = Vec::new();
//! while !buf.is_empty() {
//!     let Some(head) = parse_request(&buf, &limits)? else {
//!         break; // read more into `buf`, then parse again
//!     };
//!     served.push(head.target_bytes(&buf).to_vec());
//!     let keep_alive = head.keep_alive;
//!     let (method, version) = (head.method, head.version);
//!     // The head's ranges point into `buf`: forward or convert them before dropping it.
//!     let _ = buf.split_to(head.len);
//!     let mut body = BodyDecoder::new(head.body, &limits);
//!     while let Some(data) = body.decode_bytes(&mut buf)? {
//!         assert_eq!(&data[..], b"hi"); // `Bytes` sharing `buf`'s memory
//!     }
//!     assert!(body.is_done()); // else: read more, decode again
//!     let mut w = HeadWriter::new(&mut out, 200, None).expect("a valid status");
//!     w.finish(framing(method, version, 200, Some(0)), keep_alive, version);
//!     // ... write `out` to the socket, then:
//!     out.clear();
//! }
//! assert_eq!(served, [b"/a".to_vec(), b"/b".to_vec()]);
//! // The request is done and nothing else arrived: the buffers go back, the connection idles
//! // without any.
//! pool::give(buf);
//! pool::give(out);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod body;
mod error;
mod fields;
pub mod pool;
mod request;
pub mod response;
mod target;

pub use body::{BodyDecoder, Step};
pub use error::{BodyError, ParseError};
pub use fields::is_reg_name_byte;
pub use request::{BodyFraming, HeaderKind, HeaderSpan, Method, RequestHead, TargetForm, Version, parse_request};

/// The bounds of a request head, set by the caller (from the gateway's `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole head, request line to the empty line; also bounds a chunked body's trailers.
    pub max_head_bytes: usize,
    /// Field lines in the head (and in the trailers).
    pub max_headers: usize,
    /// The request line with its CRLF (414 past it).
    pub max_request_line: usize,
    /// One field line with its CRLF (431 past it).
    pub max_header_line: usize,
    /// All chunk-extension bytes of one body (hyper's bound, 16 KiB, by default): extensions are
    /// skipped, and without a bound a client could send them forever for a few bytes of data.
    pub max_chunk_ext_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_request_line: 8 * 1024,
            max_header_line: 8 * 1024,
            max_chunk_ext_bytes: 16 * 1024,
        }
    }
}

/// A byte range in the buffer a head was parsed from. `u32` ends keep a [`HeaderSpan`] at 16
/// bytes; heads are bounded far below 4 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        // Heads are bounded by `Limits::max_head_bytes`, so these never saturate in practice;
        // saturating keeps a nonsense limit from panicking.
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    /// The range's bytes in `buf` (the buffer the head was parsed from); empty if `buf` is not
    /// that buffer and is too short.
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize).unwrap_or(&[])
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
