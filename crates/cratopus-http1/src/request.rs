//! The request head: parsed in place with httparse, kept as byte ranges, and checked against
//! RFC 9112's framing rules.

use crate::error::ParseError;
use crate::fields::{self, check_line_ends, classify_field_error, content_length, list, valid_authority};
use crate::{Limits, Span, target};
use std::mem::MaybeUninit;

/// The request method. The common ones are told apart (the codec's rules and a proxy's
/// routing need them); any other token is `Other`, its bytes at [`RequestHead::method_span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Other,
}

impl Method {
    fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Http10,
    Http11,
}

/// The form of the request-target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `scheme://authority/path?query` (to a proxy; a server must accept it too).
    Absolute { authority: Span },
    /// `host:port`, CONNECT only.
    Authority,
    /// `*`, OPTIONS only.
    Asterisk,
}

/// How the request's body is framed (RFC 9112 §6.3); a request with neither field has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
}

/// The fields the codec reads or that a proxy must not forward (hop-by-hop), told once at
/// parse so that forwarding skips them without comparing names again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderKind {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    Expect,
}

impl HeaderKind {
    /// Hop-by-hop by RFC 9110 §7.6.1 (plus Proxy-Connection, which some clients still send);
    /// the names listed in `Connection` are hop-by-hop too and are the caller's to drop.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            HeaderKind::Connection
                | HeaderKind::KeepAlive
                | HeaderKind::ProxyConnection
                | HeaderKind::Te
                | HeaderKind::Trailer
                | HeaderKind::TransferEncoding
                | HeaderKind::Upgrade
        )
    }
}

/// One field line as it came: the name, the value (without surrounding whitespace) and the
/// whole line with its CRLF, to be copied as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
    pub line: Span,
    pub kind: HeaderKind,
}

/// A parsed request head: ranges into the buffer it was parsed from, and what the codec
/// concluded from its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes the head takes in the buffer, from its start to after the empty line (empty lines
    /// before the request line included): the body, or the next request, begins there.
    pub len: usize,
    /// The request line with its CRLF.
    pub request_line: Span,
    pub method: Method,
    pub method_span: Span,
    pub target: Span,
    pub target_form: TargetForm,
    pub version: Version,
    /// Every field line, in order.
    pub headers: Vec<HeaderSpan>,
    /// The field lines as one block (first line to the last CRLF; empty if none).
    pub fields: Span,
    pub body: BodyFraming,
    /// The connection may carry another request after this one (RFC 9112 §9.3): HTTP/1.1
    /// without `Connection: close`, HTTP/1.0 with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (an HTTP/1.0 one's is ignored,
    /// RFC 9110 §10.1.1): send [`crate::response::CONTINUE`] before reading a body
    /// ([`RequestHead::has_body`]), unless the final answer comes first.
    pub expect_continue: bool,
    /// An `Expect` other than 100-continue: the caller may answer 417.
    pub expect_other: bool,
    /// The index in `headers` of Host.
    pub host: Option<usize>,
    /// The index in `headers` of the (last) Upgrade field of an HTTP/1.1 request. Whether to
    /// upgrade is the caller's decision; `connection_upgrade` says whether `Connection` named it.
    pub upgrade: Option<usize>,
    pub connection_upgrade: bool,
}

impl RequestHead {
    pub fn method_bytes<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.method_span.of(buf)
    }

    pub fn target_bytes<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.target.of(buf)
    }

    /// Each field's name and value.
    pub fn header_pairs<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.headers.iter().map(move |h| (h.name.of(buf), h.value.of(buf)))
    }

    /// The authority the request is for (RFC 9112 §3.2.2, RFC 9110 §7.2): an absolute-form
    /// target's, whatever Host says; else a CONNECT's target; else Host's value (possibly
    /// empty); `None` for an HTTP/1.0 request without Host.
    pub fn authority<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        match self.target_form {
            TargetForm::Absolute { authority } => Some(authority.of(buf)),
            TargetForm::Authority => Some(self.target.of(buf)),
            _ => self.host.map(|i| self.headers[i].value.of(buf)),
        }
    }

    /// The field lines a proxy forwards as they came, in runs of consecutive lines (one copy
    /// each): hop-by-hop fields ([`HeaderKind::is_hop_by_hop`]) and the fields `Connection`
    /// names are left out. Host, Content-Length and Expect are kept: whether to pass them is
    /// the proxy's choice (a proxy that re-frames the body drops Content-Length itself; one that
    /// forwards an upgrade writes its own `Connection: upgrade` and `Upgrade`).
    pub fn forwarded_runs<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = Span> + 'a {
        // Names listed in Connection besides the codec's own tokens; rarely any, so no
        // allocation in the common case.
        let listed: Vec<&[u8]> = self
            .headers
            .iter()
            .filter(|h| h.kind == HeaderKind::Connection)
            .flat_map(|h| list(h.value.of(buf)))
            .filter(|t| {
                !matches!(
                    fields::kind_of(t),
                    HeaderKind::Connection | HeaderKind::KeepAlive | HeaderKind::Upgrade
                )
            })
            .filter(|t| !t.eq_ignore_ascii_case(b"close"))
            .collect();
        let kept = move |h: &&HeaderSpan| {
            !h.kind.is_hop_by_hop() && !listed.iter().any(|t| t.eq_ignore_ascii_case(h.name.of(buf)))
        };
        let mut lines = self.headers.iter().filter(kept).peekable();
        std::iter::from_fn(move || {
            let first = lines.next()?;
            let mut run = first.line;
            while let Some(next) = lines.next_if(|n| n.line.start == run.end) {
                run.end = next.line.end;
            }
            Some(run)
        })
    }

    /// The body of a request is never close-delimited: a head that says nothing has none.
    pub fn has_body(&self) -> bool {
        !matches!(self.body, BodyFraming::Empty | BodyFraming::Length(0))
    }
}

/// httparse's header slots, on the stack (uninitialised, so free) up to this many: the default
/// limit of 100 fields must not cost an allocation per request.
const STACK_HEADERS: usize = 128;

/// Parses the request head at the start of `buf`. `Ok(None)`: the head is not complete yet
/// (read more and call again with the longer buffer), unless `buf` is already past a limit,
/// which is an error. On success the body (or a pipelined request) starts at
/// [`RequestHead::len`].
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, ParseError> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap;
    // One slot more than allowed, so that "one too many" is told from httparse's own limit.
    let wanted = limits.max_headers.saturating_add(1);
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if wanted <= STACK_HEADERS {
        &mut stack[..wanted]
    } else {
        heap = vec![MaybeUninit::uninit(); wanted];
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots);
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial(buf, limits).map(|()| None),
        Err(e) => return Err(explain(buf, &req, e, limits)),
    };
    if len > limits.max_head_bytes {
        return Err(ParseError::HeadTooLarge);
    }
    let head = &buf[..len];
    let offset = |s: &[u8]| s.as_ptr() as usize - buf.as_ptr() as usize;
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ParseError::MalformedRequestLine);
    };
    let line_start = offset(method.as_bytes());
    let line_end = line_start + memchr::memchr(b'\n', &head[line_start..]).map_or(0, |i| i + 1);
    // httparse refuses a CR not followed by LF but takes a bare LF. In a complete head an LF
    // can only end a line, so looking before each line's end is enough: the empty lines
    // before the request line, the request line, each field line (below) and the last.
    let crlf_before = |end: usize| end >= 2 && head[end - 2] == b'\r';
    check_line_ends(&head[..line_start])?;
    if !crlf_before(line_end) || !crlf_before(len) {
        return Err(ParseError::BareLf);
    }
    if line_end - line_start > limits.max_request_line {
        return Err(ParseError::RequestLineTooLong);
    }
    if req.headers.len() > limits.max_headers {
        return Err(ParseError::TooManyHeaders);
    }
    let method_span = Span::new(line_start, line_start + method.len());
    let method = Method::from_bytes(method.as_bytes());
    let target_start = offset(path.as_bytes());
    let target = Span::new(target_start, target_start + path.len());
    let target_form = target::classify(path.as_bytes(), target_start, method)?;
    let version = if minor == 1 { Version::Http11 } else { Version::Http10 };

    let mut out = Framing::new(version);
    let mut headers = Vec::with_capacity(req.headers.len());
    let count = req.headers.len();
    for (i, h) in req.headers.iter().enumerate() {
        let name_start = offset(h.name.as_bytes());
        let name = Span::new(name_start, name_start + h.name.len());
        let value_start = offset(h.value);
        let value = Span::new(value_start, value_start + h.value.len());
        // A line ends where the next begins; the last one two bytes before the head's end.
        let line_end = match req.headers.get(i + 1) {
            Some(next) => offset(next.name.as_bytes()),
            None => len - 2,
        };
        if !crlf_before(line_end) {
            return Err(ParseError::BareLf);
        }
        if line_end - name_start > limits.max_header_line {
            return Err(ParseError::HeaderLineTooLong);
        }
        let kind = fields::kind_of(h.name.as_bytes());
        out.field(kind, h.value, i)?;
        headers.push(HeaderSpan {
            name,
            value,
            line: Span::new(name_start, line_end),
            kind,
        });
    }
    let fields = match (headers.first(), headers.last()) {
        (Some(first), Some(last)) => Span::new(first.line.start as usize, last.line.end as usize),
        _ => Span::new(line_end, line_end),
    };
    debug_assert_eq!(headers.len(), count);
    let body = out.finish()?;
    Ok(Some(RequestHead {
        len,
        request_line: Span::new(line_start, line_end),
        method,
        method_span,
        target,
        target_form,
        version,
        headers,
        fields,
        body,
        keep_alive: out.keep_alive(),
        expect_continue: out.expect_continue,
        expect_other: out.expect_other,
        host: out.host,
        upgrade: out.upgrade,
        connection_upgrade: out.connection_upgrade,
    }))
}

/// What the fields say about framing and the connection, gathered line by line.
struct Framing {
    version: Version,
    host: Option<usize>,
    content_length: Option<u64>,
    /// Transfer-Encoding seen; how many codings and how many of them chunked; whether the
    /// last one so far is chunked.
    te: bool,
    te_codings: usize,
    te_chunked: usize,
    te_last_chunked: bool,
    te_empty: bool,
    close: bool,
    keep_alive_token: bool,
    connection_upgrade: bool,
    upgrade: Option<usize>,
    expect_continue: bool,
    expect_other: bool,
}

impl Framing {
    fn new(version: Version) -> Framing {
        Framing {
            version,
            host: None,
            content_length: None,
            te: false,
            te_codings: 0,
            te_chunked: 0,
            te_last_chunked: false,
            te_empty: false,
            close: false,
            keep_alive_token: false,
            connection_upgrade: false,
            upgrade: None,
            expect_continue: false,
            expect_other: false,
        }
    }

    fn field(&mut self, kind: HeaderKind, value: &[u8], index: usize) -> Result<(), ParseError> {
        match kind {
            HeaderKind::Host => {
                if self.host.is_some() {
                    return Err(ParseError::DuplicateHost);
                }
                if !valid_authority(value, false) {
                    return Err(ParseError::InvalidHost);
                }
                self.host = Some(index);
            }
            HeaderKind::ContentLength => {
                if self.content_length.is_some() || value.contains(&b',') {
                    return Err(ParseError::DuplicateContentLength);
                }
                self.content_length = Some(content_length(value)?);
            }
            HeaderKind::TransferEncoding => {
                self.te = true;
                // An empty element (`chunked,`, an empty line) is refused: RFC 9110 §5.6.1 says to
                // skip it, hyper refuses it, and two parsers must not disagree on framing.
                if value.split(|&b| b == b',').any(|e| fields::trim_ows(e).is_empty()) {
                    self.te_empty = true;
                }
                // Codings accumulate over lines (RFC 9110 §5.3); only the last may be chunked.
                for coding in list(value) {
                    // chunked takes no parameters: `chunked;x=y` is some other coding.
                    let chunked = coding.eq_ignore_ascii_case(b"chunked");
                    self.te_codings += 1;
                    self.te_chunked += usize::from(chunked);
                    self.te_last_chunked = chunked;
                }
            }
            HeaderKind::Connection => {
                for token in list(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive_token = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        self.connection_upgrade = true;
                    }
                }
            }
            HeaderKind::Expect if self.version == Version::Http11 => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                } else {
                    self.expect_other = true;
                }
            }
            HeaderKind::Upgrade if self.version == Version::Http11 => self.upgrade = Some(index),
            _ => {}
        }
        Ok(())
    }

    fn finish(&self) -> Result<BodyFraming, ParseError> {
        if self.version == Version::Http11 && self.host.is_none() {
            return Err(ParseError::MissingHost);
        }
        if self.te {
            if self.version == Version::Http10 {
                return Err(ParseError::TransferEncodingHttp10);
            }
            if self.content_length.is_some() {
                return Err(ParseError::ContentLengthAndTransferEncoding);
            }
            // RFC 9112 §6.3: chunked not final (or applied twice, or no coding at all) is 400;
            // a coding we do not implement, with chunked final, is 501 (§6.1).
            if !self.te_last_chunked || self.te_chunked > 1 || self.te_empty {
                return Err(ParseError::ChunkedNotFinal);
            }
            if self.te_codings > 1 {
                return Err(ParseError::UnsupportedTransferCoding);
            }
            return Ok(BodyFraming::Chunked);
        }
        Ok(match self.content_length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::Empty,
        })
    }

    fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive_token && !self.close,
        }
    }
}

/// A head not complete yet: fine unless it is already past a limit.
fn partial(buf: &[u8], limits: &Limits) -> Result<(), ParseError> {
    // Empty lines before the request line are skipped (RFC 9112 §2.2), within the head's bound.
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line_end = memchr::memchr(b'\n', &buf[start..]);
    // Bare LF is refused as soon as it is seen, not after the head completes.
    check_line_ends(&buf[..start + line_end.map_or(buf.len() - start, |i| i + 1)])?;
    match line_end {
        None if buf.len() - start > limits.max_request_line => Err(ParseError::RequestLineTooLong),
        _ if buf.len() > limits.max_head_bytes => Err(ParseError::HeadTooLarge),
        Some(_) => {
            // The field line being received.
            let last = memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1);
            if buf.len() - last > limits.max_header_line {
                Err(ParseError::HeaderLineTooLong)
            } else {
                Ok(())
            }
        }
        None => Ok(()),
    }
}

/// Why httparse refused `buf`.
fn explain(buf: &[u8], req: &httparse::Request<'_, '_>, e: httparse::Error, limits: &Limits) -> ParseError {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line_len = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len() - start, |i| i + 1);
    let line = &buf[start..start + line_len];
    if line_len > limits.max_request_line {
        return ParseError::RequestLineTooLong;
    }
    if let Err(le) = check_line_ends(&buf[..start + line_len]) {
        return le;
    }
    match e {
        httparse::Error::Token if req.method.is_none() => {
            // A method of token bytes then something else than SP is a malformed line; a
            // non-token byte in the method is a bad method.
            let end = line
                .iter()
                .position(|&b| !fields::httparse_token(b))
                .unwrap_or(line.len());
            if end == line.len() || matches!(line.get(end), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                ParseError::MalformedRequestLine
            } else {
                ParseError::InvalidMethod
            }
        }
        httparse::Error::Token => {
            // After the method: an empty target, a second space, or a bad byte in the target.
            let after = &line[req.method.map_or(0, str::len) + 1..];
            match after.first() {
                None | Some(b' ' | b'\t' | b'\r' | b'\n') => ParseError::MalformedRequestLine,
                _ => {
                    let end = after.iter().position(|&b| b == b' ').unwrap_or(after.len());
                    if after[..end].iter().any(|&b| b < 0x21 || b == 0x7f) {
                        ParseError::MalformedRequestLine
                    } else {
                        ParseError::InvalidTarget
                    }
                }
            }
        }
        httparse::Error::Version => version_error(line),
        _ if req.version.is_none() || !(line.ends_with(b" HTTP/1.1\r\n") || line.ends_with(b" HTTP/1.0\r\n")) => {
            ParseError::MalformedRequestLine
        }
        _ => classify_field_error(buf, start + line_len, e),
    }
}

/// `HTTP/` DIGIT `.` DIGIT other than 1.0 and 1.1 is a version we do not speak (505); anything
/// else in its place is malformed (400).
fn version_error(line: &[u8]) -> ParseError {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(_), Some(_), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return ParseError::MalformedRequestLine;
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            ParseError::UnsupportedVersion
        }
        _ => ParseError::InvalidVersion,
    }
}
