//! Why a request was refused: one kind per rule, each with the status the best servers answer
//! it with, so that the log line says which rule a client broke.

use std::fmt;

/// A request head the codec refuses. After any of these the connection must be closed: the
/// codec no longer knows where the next request would begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseError {
    // ---- 400 Bad Request: the request line ----
    /// Not `method SP request-target SP HTTP-version CRLF` (a missing or doubled space, an
    /// empty target, a control byte).
    MalformedRequestLine,
    /// The method is not a token.
    InvalidMethod,
    /// A byte outside RFC 9112's `request-target` (a fragment `#`, userinfo `@` in an
    /// authority, a bad authority), or a target not valid in its form.
    InvalidTarget,
    /// A target form the method does not allow: authority-form without CONNECT, CONNECT
    /// without authority-form, asterisk-form without OPTIONS.
    TargetFormMismatch,
    /// The version is not `HTTP/` DIGIT `.` DIGIT.
    InvalidVersion,
    // ---- 400: field lines ----
    /// A line ended by LF alone (RFC 9112 §2.2 lets a server accept it; we do not: it is the
    /// first tool of request smuggling between parsers that disagree).
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// A field line starting with whitespace: obsolete line folding (RFC 9112 §5.2).
    ObsFold,
    /// Whitespace between a field name and its colon (RFC 9112 §5.1: MUST be rejected).
    WhitespaceBeforeColon,
    /// A byte that is not a token character in a field name, or a line without a colon.
    InvalidHeaderName,
    /// A control byte (other than HTAB) in a field value.
    InvalidHeaderValue,
    /// An HTTP/1.1 request without Host (RFC 9112 §3.2).
    MissingHost,
    /// More than one Host field line.
    DuplicateHost,
    /// A Host value that is not `uri-host [ ":" port ]`.
    InvalidHost,
    /// Content-Length and Transfer-Encoding together (RFC 9112 §6.1 lets a server reject this;
    /// it is the classic CL.TE / TE.CL smuggling vector).
    ContentLengthAndTransferEncoding,
    /// More than one Content-Length field line, or a list (`1, 1` included; see the crate docs).
    DuplicateContentLength,
    /// A Content-Length that is not `1*DIGIT` or does not fit in a u64.
    InvalidContentLength,
    /// A Transfer-Encoding whose final coding is not `chunked`, that applies `chunked` twice,
    /// or that is empty (RFC 9112 §6.3: 400 and close).
    ChunkedNotFinal,
    /// Transfer-Encoding on an HTTP/1.0 request (RFC 9112 §6.1: the framing is faulty).
    TransferEncodingHttp10,
    // ---- 501 Not Implemented ----
    /// A transfer coding other than `chunked` (RFC 9112 §6.1: SHOULD answer 501).
    UnsupportedTransferCoding,
    // ---- 505 HTTP Version Not Supported ----
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1.
    UnsupportedVersion,
    // ---- 414 URI Too Long ----
    /// The request line is longer than [`crate::Limits::max_request_line`].
    RequestLineTooLong,
    // ---- 431 Request Header Fields Too Large ----
    /// The head is larger than [`crate::Limits::max_head_bytes`].
    HeadTooLarge,
    /// More field lines than [`crate::Limits::max_headers`].
    TooManyHeaders,
    /// A field line longer than [`crate::Limits::max_header_line`].
    HeaderLineTooLong,
}

impl ParseError {
    /// The status to answer with (the connection closes after it).
    pub fn status(self) -> u16 {
        use ParseError::*;
        match self {
            UnsupportedTransferCoding => 501,
            UnsupportedVersion => 505,
            RequestLineTooLong => 414,
            HeadTooLarge | TooManyHeaders | HeaderLineTooLong => 431,
            _ => 400,
        }
    }

    /// A short stable name for logs and metrics.
    pub fn code(self) -> &'static str {
        use ParseError::*;
        match self {
            MalformedRequestLine => "malformed_request_line",
            InvalidMethod => "invalid_method",
            InvalidTarget => "invalid_target",
            TargetFormMismatch => "target_form_mismatch",
            InvalidVersion => "invalid_version",
            BareLf => "bare_lf",
            BareCr => "bare_cr",
            ObsFold => "obs_fold",
            WhitespaceBeforeColon => "whitespace_before_colon",
            InvalidHeaderName => "invalid_header_name",
            InvalidHeaderValue => "invalid_header_value",
            MissingHost => "missing_host",
            DuplicateHost => "duplicate_host",
            InvalidHost => "invalid_host",
            ContentLengthAndTransferEncoding => "content_length_and_transfer_encoding",
            DuplicateContentLength => "duplicate_content_length",
            InvalidContentLength => "invalid_content_length",
            ChunkedNotFinal => "chunked_not_final",
            TransferEncodingHttp10 => "transfer_encoding_http10",
            UnsupportedTransferCoding => "unsupported_transfer_coding",
            UnsupportedVersion => "unsupported_version",
            RequestLineTooLong => "request_line_too_long",
            HeadTooLarge => "head_too_large",
            TooManyHeaders => "too_many_headers",
            HeaderLineTooLong => "header_line_too_long",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.status())
    }
}

impl std::error::Error for ParseError {}

/// A request body the codec refuses (chunked framing only: a Content-Length body cannot be
/// malformed). The connection must be closed; a 400 can be answered if no response began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyError {
    /// A chunk-size line that does not start with a hex digit or has a stray byte.
    InvalidChunkSize,
    /// A chunk size that does not fit in a u64.
    ChunkSizeOverflow,
    /// A chunk line or trailer line ended by LF alone.
    BareLf,
    /// A control byte in a chunk extension.
    InvalidChunkExtension,
    /// More chunk-extension bytes in this body than [`crate::Limits::max_chunk_ext_bytes`].
    ChunkExtensionsTooLong,
    /// Chunk data not followed by CRLF.
    MissingChunkCrlf,
    /// A trailer section larger than [`crate::Limits::max_head_bytes`].
    TrailersTooLarge,
    /// A trailer field line broke the rules of a header field line.
    InvalidTrailer(ParseError),
}

impl BodyError {
    /// The status to answer with, if the response has not begun.
    pub fn status(self) -> u16 {
        match self {
            BodyError::TrailersTooLarge => 431,
            BodyError::InvalidTrailer(e) => e.status(),
            _ => 400,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyError::InvalidTrailer(e) => return write!(f, "invalid trailer: {e}"),
            BodyError::InvalidChunkSize => "a chunk size is not hexadecimal",
            BodyError::ChunkSizeOverflow => "a chunk size does not fit in 64 bits",
            BodyError::BareLf => "a chunk line ends in LF without CR",
            BodyError::InvalidChunkExtension => "a chunk extension has a control byte",
            BodyError::ChunkExtensionsTooLong => "the chunk extensions are too long",
            BodyError::MissingChunkCrlf => "chunk data is not followed by CRLF",
            BodyError::TrailersTooLarge => "the trailers are too large",
        })
    }
}

impl std::error::Error for BodyError {}
