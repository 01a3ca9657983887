//! Writing responses: the status line and head into a (pooled) buffer, the framing a response
//! gets, and the chunked encoding of a body without a length.

use crate::request::{Method, Version};
use bytes::{BufMut, BytesMut};

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body at all (HEAD, 1xx, 204, 304, a CONNECT's 2xx): no framing field is written
    /// (except a HEAD's or 304's own Content-Length, which the caller may pass as a field).
    NoBody,
    Length(u64),
    Chunked,
    /// Until the connection closes: an HTTP/1.0 client and a body of unknown length.
    Close,
}

/// Whether a response to `method` with `status` has a body (RFC 9112 §6.3 items 1–2): not for
/// HEAD, 1xx, 204, 304, nor a 2xx to CONNECT (the tunnel begins instead).
pub fn has_body(method: Method, status: u16) -> bool {
    !(method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (method == Method::Connect && (200..300).contains(&status)))
}

/// The framing of a response to a request of `method` and `version`, whose body has
/// `length` bytes when known. Chunked needs HTTP/1.1; an HTTP/1.0 client gets a
/// close-delimited body instead.
pub fn framing(method: Method, version: Version, status: u16, length: Option<u64>) -> ResponseFraming {
    if !has_body(method, status) {
        return ResponseFraming::NoBody;
    }
    match (length, version) {
        (Some(n), _) => ResponseFraming::Length(n),
        (None, Version::Http11) => ResponseFraming::Chunked,
        (None, Version::Http10) => ResponseFraming::Close,
    }
}

/// A field name or value that would break the head (a CR, LF or other control byte, a
/// non-token name): the bytes a response-splitting attack needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidField;

impl std::fmt::Display for InvalidField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid response field")
    }
}

impl std::error::Error for InvalidField {}

/// Writes a response head into `dst`: [`HeadWriter::new`] writes the status line, each
/// [`field`](HeadWriter::field) a line, [`raw`](HeadWriter::raw) lines already checked (an
/// upstream's head, forwarded as it came), and [`finish`](HeadWriter::finish) the framing and
/// connection fields and the empty line.
pub struct HeadWriter<'a> {
    dst: &'a mut BytesMut,
}

impl<'a> HeadWriter<'a> {
    /// `HTTP/1.1 <status> <reason>`: a server answers with its own version (RFC 9110 §2.5)
    /// whatever the request's; `reason` defaults to the status's usual phrase.
    pub fn new(dst: &'a mut BytesMut, status: u16, reason: Option<&[u8]>) -> Result<HeadWriter<'a>, InvalidField> {
        if !(100..=999).contains(&status) {
            return Err(InvalidField);
        }
        let reason = reason.unwrap_or_else(|| reason_phrase(status).as_bytes());
        if reason.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
            return Err(InvalidField);
        }
        dst.reserve(64);
        dst.put_slice(b"HTTP/1.1 ");
        let digits = [
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ];
        dst.put_slice(&digits);
        dst.put_u8(b' ');
        dst.put_slice(reason);
        dst.put_slice(b"\r\n");
        Ok(HeadWriter { dst })
    }

    /// One field line; refused if it would break the head.
    pub fn field(&mut self, name: &[u8], value: &[u8]) -> Result<&mut Self, InvalidField> {
        if name.is_empty()
            || !name.iter().all(|&b| crate::fields::httparse_token(b))
            || value.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f))
        {
            return Err(InvalidField);
        }
        self.dst.reserve(name.len() + value.len() + 4);
        self.dst.put_slice(name);
        self.dst.put_slice(b": ");
        self.dst.put_slice(value);
        self.dst.put_slice(b"\r\n");
        Ok(self)
    }

    /// Field lines already in wire form, each ending in CRLF (a parsed head's
    /// [`HeaderSpan::line`](crate::HeaderSpan)s): copied as they are, unchecked.
    pub fn raw(&mut self, lines: &[u8]) -> &mut Self {
        self.dst.put_slice(lines);
        self
    }

    /// The framing field, `Connection: close` when the connection will not be kept (or
    /// `Connection: keep-alive` to an HTTP/1.0 client that keeps it), and the empty line.
    pub fn finish(self, framing: ResponseFraming, keep_alive: bool, client: Version) {
        let dst = self.dst;
        match framing {
            ResponseFraming::Length(n) => {
                dst.put_slice(b"content-length: ");
                let mut digits = [0u8; 20];
                dst.put_slice(decimal(n, &mut digits));
                dst.put_slice(b"\r\n");
            }
            ResponseFraming::Chunked => dst.put_slice(b"transfer-encoding: chunked\r\n"),
            ResponseFraming::NoBody | ResponseFraming::Close => {}
        }
        let keep = keep_alive && framing != ResponseFraming::Close;
        match (keep, client) {
            (false, _) => dst.put_slice(b"connection: close\r\n"),
            (true, Version::Http10) => dst.put_slice(b"connection: keep-alive\r\n"),
            (true, Version::Http11) => {}
        }
        dst.put_slice(b"\r\n");
    }
}

fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The chunk-size line for `len` bytes of data (`len` > 0), to be sent before them; the data
/// may then go out as it is (a `writev`), followed by [`CHUNK_END`].
#[derive(Debug, Clone, Copy)]
pub struct ChunkHead {
    bytes: [u8; 18],
    len: u8,
}

impl ChunkHead {
    pub fn new(len: usize) -> ChunkHead {
        let mut bytes = [0u8; 18];
        let hex = b"0123456789abcdef";
        let digits = if len == 0 {
            1
        } else {
            (usize::BITS - len.leading_zeros()).div_ceil(4) as usize
        };
        for i in 0..digits {
            bytes[digits - 1 - i] = hex[(len >> (4 * i)) & 0xf];
        }
        bytes[digits] = b'\r';
        bytes[digits + 1] = b'\n';
        ChunkHead {
            bytes,
            len: (digits + 2) as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// What follows each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk with no trailers: the body's end.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends `data` as one chunk to `dst`; nothing for empty data (an empty chunk would end the
/// body).
pub fn encode_chunk(dst: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let head = ChunkHead::new(data.len());
    dst.reserve(head.as_bytes().len() + data.len() + 2);
    dst.put_slice(head.as_bytes());
    dst.put_slice(data);
    dst.put_slice(CHUNK_END);
}

/// Appends the last chunk, with trailer fields (checked like head fields).
pub fn encode_last_chunk<'t>(
    dst: &mut BytesMut,
    trailers: impl IntoIterator<Item = (&'t [u8], &'t [u8])>,
) -> Result<(), InvalidField> {
    dst.put_slice(b"0\r\n");
    for (name, value) in trailers {
        if name.is_empty()
            || !name.iter().all(|&b| crate::fields::httparse_token(b))
            || value.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f))
        {
            return Err(InvalidField);
        }
        dst.put_slice(name);
        dst.put_slice(b": ");
        dst.put_slice(value);
        dst.put_slice(b"\r\n");
    }
    dst.put_slice(b"\r\n");
    Ok(())
}

/// The usual reason phrase of `status` (empty for one without).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The interim answer to `Expect: 100-continue`, sent before reading the body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_heads() {
        assert_eq!(ChunkHead::new(1).as_bytes(), b"1\r\n");
        assert_eq!(ChunkHead::new(255).as_bytes(), b"ff\r\n");
        assert_eq!(ChunkHead::new(4096).as_bytes(), b"1000\r\n");
        assert_eq!(ChunkHead::new(usize::MAX).as_bytes(), b"ffffffffffffffff\r\n");
    }

    #[test]
    fn head_with_length_and_close() {
        let mut dst = BytesMut::new();
        let mut w = HeadWriter::new(&mut dst, 200, None).unwrap();
        w.field(b"content-type", b"text/plain").unwrap();
        w.finish(ResponseFraming::Length(12), false, Version::Http11);
        assert_eq!(
            &dst[..],
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn refuses_response_splitting() {
        let mut dst = BytesMut::new();
        let mut w = HeadWriter::new(&mut dst, 200, None).unwrap();
        assert_eq!(w.field(b"x", b"a\r\nset-cookie: evil").err(), Some(InvalidField));
        assert_eq!(w.field(b"x y", b"a").err(), Some(InvalidField));
        assert!(HeadWriter::new(&mut BytesMut::new(), 200, Some(b"OK\r\nx: y")).is_err());
        assert!(HeadWriter::new(&mut BytesMut::new(), 1000, None).is_err());
    }

    #[test]
    fn which_responses_have_bodies() {
        assert!(!has_body(Method::Head, 200));
        assert!(!has_body(Method::Get, 101));
        assert!(!has_body(Method::Get, 204));
        assert!(!has_body(Method::Get, 304));
        assert!(!has_body(Method::Connect, 200));
        assert!(has_body(Method::Connect, 407));
        assert!(has_body(Method::Get, 200));
        assert_eq!(framing(Method::Get, Version::Http10, 200, None), ResponseFraming::Close);
        assert_eq!(
            framing(Method::Get, Version::Http11, 200, None),
            ResponseFraming::Chunked
        );
        assert_eq!(
            framing(Method::Head, Version::Http11, 200, Some(5)),
            ResponseFraming::NoBody
        );
    }

    #[test]
    fn chunks_and_trailers() {
        let mut dst = BytesMut::new();
        encode_chunk(&mut dst, b"hello");
        encode_chunk(&mut dst, b"");
        encode_last_chunk(&mut dst, [(&b"grpc-status"[..], &b"0"[..])]).unwrap();
        assert_eq!(&dst[..], b"5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n");
    }
}
