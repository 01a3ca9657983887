//! Response compression on a route (`compression:`): gzip, brotli and zstd chosen by the
//! client's `Accept-Encoding`, encoded as the body streams.
//!
//! The request side only reads the head: it negotiates the encoding ([`negotiate`], also what
//! a cache keys on) and notes it in [`RequestCx::compress`]. The response side decides on the
//! final head, as Envoy's compressor and nginx's `gzip` do: never on an answer that is already
//! encoded, that says `Cache-Control: no-transform`, that has no body by its status (1xx, 204,
//! 304), that is a range (206, or a request with `Range`), on `HEAD`, on gRPC, on a media type
//! not listed, or on one whose `Content-Length` is under the minimum (an answer of unknown
//! length is compressed). An eligible answer gets `Vary: Accept-Encoding` even when the client
//! accepted nothing, so that a shared cache does not hand its compressed variant to a client
//! that cannot read it; a compressed one loses its `Content-Length` and has its strong `ETag`
//! weakened (the bytes differ, the meaning does not).
//!
//! The other way: a gzip answer for a client that does not accept gzip (or sent no
//! `Accept-Encoding`) is decoded on the way, as nginx's `gunzip` does. Only gzip: its ratio is
//! bounded (about 1000:1) and is fed to the decoder in small pieces, so one piece cannot
//! become more than half a megabyte; br and zstd answers (whose ratios are not bounded that
//! way) pass as the backend sent them.
//!
//! The encoders stream: each piece of the body is encoded as it arrives and, whenever the
//! backend has nothing more ready, what was encoded is flushed to the client (a sync flush, as
//! Envoy does per data frame). A paced stream (Server-Sent Events) therefore still arrives
//! event by event, while a body the backend sends in one go is encoded in one go.

use crate::chain::RequestCx;
use bytes::Bytes;
use cratopus_config::compress::{Algorithm, CompressionConfig, CompressionLevels};
use cratopus_observe::traffic_log::LogValue;
use cratopus_upstream::body::{BackendBody, BoxError};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A content coding the gateway can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Identity,
    Gzip,
    Br,
    Zstd,
}

impl Encoding {
    /// The name in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<Algorithm> for Encoding {
    fn from(a: Algorithm) -> Encoding {
        match a {
            Algorithm::Gzip => Encoding::Gzip,
            Algorithm::Br => Encoding::Br,
            Algorithm::Zstd => Encoding::Zstd,
        }
    }
}

/// The q-values of a request's `Accept-Encoding`, in thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AcceptEncoding {
    /// Identity, gzip, br, zstd (by [`Encoding::index`]); `None` when not named.
    named: [Option<u16>; 4],
    /// `*`: the codings not named.
    star: Option<u16>,
}

impl AcceptEncoding {
    /// Reads the header; unknown codings and malformed entries are skipped.
    pub fn parse(value: Option<&HeaderValue>) -> AcceptEncoding {
        let mut out = AcceptEncoding::default();
        let Some(text) = value.and_then(|v| v.to_str().ok()) else {
            return out;
        };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let mut q = Some(1000);
            for p in parts {
                let p = p.trim();
                if let Some(v) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                    q = parse_q(v.trim());
                }
            }
            let Some(q) = q else { continue };
            let slot = if name == "*" {
                &mut out.star
            } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                &mut out.named[Encoding::Gzip.index()]
            } else if name.eq_ignore_ascii_case("br") {
                &mut out.named[Encoding::Br.index()]
            } else if name.eq_ignore_ascii_case("zstd") {
                &mut out.named[Encoding::Zstd.index()]
            } else if name.eq_ignore_ascii_case("identity") {
                &mut out.named[Encoding::Identity.index()]
            } else {
                continue;
            };
            *slot = Some(slot.map_or(q, |old: u16| old.max(q)));
        }
        out
    }

    /// The client's q-value for `e` (0: not acceptable). Identity is acceptable unless it is
    /// excluded (`identity;q=0`, or `*;q=0` without an entry of its own).
    pub fn q(&self, e: Encoding) -> u16 {
        match (self.named[e.index()], e) {
            (Some(q), _) => q,
            (None, Encoding::Identity) => self.star.map_or(1000, |q| if q == 0 { 0 } else { 1000 }),
            (None, _) => self.star.unwrap_or(0),
        }
    }

    /// The encoding to answer with: of `allowed` (the server's order of preference), the one
    /// the client gives the highest q-value, the server's preference breaking ties; identity
    /// when none is acceptable or when the client names identity with a higher q-value.
    pub fn choose(&self, allowed: &[Encoding]) -> Encoding {
        let mut best = (0, Encoding::Identity);
        for &e in allowed {
            let q = self.q(e);
            if e != Encoding::Identity && q > best.0 {
                best = (q, e);
            }
        }
        match self.named[Encoding::Identity.index()] {
            Some(iq) if iq > best.0 => Encoding::Identity,
            _ => best.1,
        }
    }
}

/// `0`, `0.5`, `1.000`: thousandths; `None` when malformed.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    let q = whole + thousandths;
    (q <= 1000).then_some(q)
}

/// The encoding for a request's `Accept-Encoding` among `allowed` (in the server's order of
/// preference): what the compression policy answers with, and what a cache keys a compressed
/// variant on.
pub fn negotiate(accept_encoding: Option<&HeaderValue>, allowed: &[Encoding]) -> Encoding {
    if accept_encoding.is_none() {
        return Encoding::Identity;
    }
    AcceptEncoding::parse(accept_encoding).choose(allowed)
}

/// What the policy did to one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Not decided yet, or left as it was.
    Nothing,
    /// Encoded; the length the backend announced, if any.
    Encoded(Encoding, Option<u64>),
    /// A gzip answer decoded for a client that does not accept gzip.
    Gunzipped,
}

/// One request's compression, from the request side to the body (in [`RequestCx::compress`]).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The negotiated encoding (identity: the client accepts none of the route's).
    pub encoding: Encoding,
    /// Whether the client reads gzip (for answers the backend encoded).
    accepts_gzip: bool,
    /// What the response side did.
    pub applied: Applied,
}

/// A media type pattern, lowercase; `*` matches any run of characters.
#[derive(Debug)]
struct TypePattern(Box<[u8]>);

impl TypePattern {
    /// Whether `t` (a media type without parameters, any case) matches.
    fn matches(&self, t: &[u8]) -> bool {
        glob(&self.0, t)
    }
}

/// `*`-only glob matching, ASCII case-insensitive on `text` (the pattern is lowercase): the
/// usual greedy algorithm with one backtrack point.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t].to_ascii_lowercase() {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A route's compiled `compression`.
#[derive(Debug)]
pub struct Compression {
    /// The encodings the route produces, in the server's order of preference.
    algorithms: Box<[Encoding]>,
    types: Box<[TypePattern]>,
    min_size: u64,
    levels: CompressionLevels,
    decompress: bool,
    /// The encodings' names as log values, made once.
    log_names: [LogValue; 4],
}

/// The traffic-log field of an answer the gateway encoded: its encoding.
pub const LOG_FIELD: &str = "compression";
/// The traffic-log field of a gzip answer the gateway decoded (`"gzip"`).
pub const LOG_FIELD_DECODED: &str = "decompressed";

impl Compression {
    /// `None` when the section switches compression off.
    pub fn compile(c: &CompressionConfig) -> Option<Compression> {
        if !c.enabled {
            return None;
        }
        let mut algorithms: Vec<Encoding> = Vec::new();
        for a in &c.algorithms {
            let e = Encoding::from(*a);
            if !algorithms.contains(&e) {
                algorithms.push(e);
            }
        }
        let name = |e: Encoding| LogValue::Str(Arc::from(e.token()));
        Some(Compression {
            algorithms: algorithms.into(),
            types: c
                .content_types
                .iter()
                .map(|t| TypePattern(t.trim().to_ascii_lowercase().into_bytes().into()))
                .collect(),
            min_size: c.min_size.0,
            levels: c.levels,
            decompress: c.decompress,
            log_names: [
                name(Encoding::Identity),
                name(Encoding::Gzip),
                name(Encoding::Br),
                name(Encoding::Zstd),
            ],
        })
    }

    /// The encodings this route produces, in its order of preference (for a cache's key).
    pub fn algorithms(&self) -> &[Encoding] {
        &self.algorithms
    }

    /// The request side: notes the negotiated encoding, or nothing for a request whose answer
    /// is never touched (`HEAD`, `Range`, gRPC, a tunnel, a WebSocket handshake: both of its
    /// forms, HTTP/1.1 `Upgrade` and HTTP/2 extended CONNECT, send `Sec-WebSocket-Version`,
    /// which stays when the hop-by-hop `Upgrade` is gone).
    pub fn on_request(&self, cx: &mut RequestCx, req: &http::request::Parts) {
        if req.method == Method::HEAD
            || req.method == Method::CONNECT
            || req.headers.contains_key(header::RANGE)
            || req.headers.contains_key(header::SEC_WEBSOCKET_VERSION)
            || cratopus_upstream::grpc::is_grpc(&req.headers)
        {
            cx.compress = None;
            return;
        }
        let accept = AcceptEncoding::parse(req.headers.get(header::ACCEPT_ENCODING));
        let encoding = if req.headers.contains_key(header::ACCEPT_ENCODING) {
            accept.choose(&self.algorithms)
        } else {
            Encoding::Identity
        };
        cx.compress = Some(Plan {
            encoding,
            accepts_gzip: accept.q(Encoding::Gzip) > 0,
            applied: Applied::Nothing,
        });
    }

    /// The response side, on the final head: decides, and rewrites the head for it.
    pub fn on_response(&self, cx: &mut RequestCx, res: &mut http::response::Parts) {
        let Some(plan) = &mut cx.compress else { return };
        let status = res.status;
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::PARTIAL_CONTENT
        {
            return;
        }
        let headers = &mut res.headers;
        if headers.contains_key(header::CONTENT_RANGE) || has_no_transform(headers) {
            return;
        }
        if let Some(ce) = headers.get(header::CONTENT_ENCODING) {
            let ce = ce.as_bytes().trim_ascii();
            if ce.eq_ignore_ascii_case(b"identity") {
                headers.remove(header::CONTENT_ENCODING);
            } else {
                // Encoded already: never twice; decoded for a client that cannot read gzip.
                let gzip = ce.eq_ignore_ascii_case(b"gzip") || ce.eq_ignore_ascii_case(b"x-gzip");
                if gzip && self.decompress && !plan.accepts_gzip {
                    headers.remove(header::CONTENT_ENCODING);
                    headers.remove(header::CONTENT_LENGTH);
                    weaken_etag(headers);
                    add_vary(headers);
                    plan.applied = Applied::Gunzipped;
                    cx.log_fields
                        .push((LOG_FIELD_DECODED, self.log_names[Encoding::Gzip.index()].clone()));
                }
                return;
            }
        }
        if !self.compresses_type(headers) {
            return;
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if length.is_some_and(|n| n < self.min_size) {
            return;
        }
        add_vary(headers);
        let encoding = plan.encoding;
        if encoding == Encoding::Identity {
            return;
        }
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
        headers.remove(header::CONTENT_LENGTH);
        weaken_etag(headers);
        plan.applied = Applied::Encoded(encoding, length);
        cx.log_fields
            .push((LOG_FIELD, self.log_names[encoding.index()].clone()));
    }

    /// The body as the client gets it: encoded or decoded as `on_response` decided.
    pub fn wrap_response_body(&self, cx: &RequestCx, body: BackendBody) -> BackendBody {
        let Some(plan) = &cx.compress else { return body };
        let coder = match plan.applied {
            Applied::Nothing => return body,
            Applied::Encoded(e, length) => Coder::encoder(e, &self.levels, length),
            Applied::Gunzipped => Ok(Coder::Gunzip(flate2::write::MultiGzDecoder::new(Vec::new()))),
        };
        match coder {
            Ok(coder) => body.wrap(|inner| Coded::new(inner, coder)),
            // zstd could not set up its context (out of memory): the head already says the
            // body is encoded, so the body fails rather than arriving unencoded.
            Err(e) => body.wrap(|_| Failed(Some(e))),
        }
    }

    /// Whether the answer's media type is one the route compresses (never gRPC's).
    fn compresses_type(&self, headers: &HeaderMap) -> bool {
        let Some(ct) = headers.get(header::CONTENT_TYPE) else {
            return false;
        };
        let bytes = ct.as_bytes();
        let media = bytes.split(|&b| b == b';').next().unwrap_or(bytes).trim_ascii();
        if media.len() >= 16 && media[..16].eq_ignore_ascii_case(b"application/grpc") {
            return false;
        }
        self.types.iter().any(|p| p.matches(media))
    }
}

/// `Cache-Control: no-transform` (RFC 9111 5.2.2.6): intermediaries must not change the
/// content.
fn has_no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
    })
}

static ACCEPT_ENCODING: &str = "Accept-Encoding";

/// Adds `Accept-Encoding` to `Vary`, merged into one value with what is there; `*` and an
/// existing `Accept-Encoding` are left alone.
fn add_vary(headers: &mut HeaderMap) {
    let mut existing: Vec<&str> = Vec::new();
    for v in headers.get_all(header::VARY) {
        let Ok(v) = v.to_str() else { return };
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" || name.eq_ignore_ascii_case(ACCEPT_ENCODING) {
                return;
            }
            existing.push(name);
        }
    }
    let value = if existing.is_empty() {
        HeaderValue::from_static(ACCEPT_ENCODING)
    } else {
        existing.push(ACCEPT_ENCODING);
        match HeaderValue::from_str(&existing.join(", ")) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    headers.insert(header::VARY, value);
}

/// A strong `ETag` becomes weak: the encoded bytes differ from the backend's, so a byte-range
/// or strong comparison against them would be wrong (RFC 9110 8.8.1; Envoy and nginx do the
/// same).
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(tag) = headers.get(header::ETAG) else { return };
    if tag.as_bytes().starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(tag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(tag.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&weak) {
        headers.insert(header::ETAG, v);
    }
}

/// An encoder or decoder writing into a buffer the body drains.
enum Coder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Gunzip(flate2::write::MultiGzDecoder<Vec<u8>>),
}

/// Brotli's window: 256 KiB (Envoy's default), instead of 4 MiB, for the memory of many
/// streams at once; a known length shrinks it further.
const BROTLI_LGWIN: i32 = 18;

impl Coder {
    fn encoder(e: Encoding, levels: &CompressionLevels, length: Option<u64>) -> io::Result<Coder> {
        Ok(match e {
            Encoding::Gzip => Coder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(levels.gzip),
            )),
            Encoding::Br => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: levels.br as i32,
                    lgwin: BROTLI_LGWIN,
                    size_hint: length.map_or(0, |n| usize::try_from(n).unwrap_or(0)),
                    ..Default::default()
                };
                Coder::Br(Box::new(brotli::CompressorWriter::with_params(
                    Vec::new(),
                    4096,
                    &params,
                )))
            }
            Encoding::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(Vec::new(), levels.zstd)?;
                // A known length lets zstd size its tables to the body (a 20 KiB answer needs
                // no 2 MiB window); the body is exactly that long, or it already failed.
                z.set_pledged_src_size(length)?;
                Coder::Zstd(z)
            }
            Encoding::Identity => return Err(io::Error::other("identity is not an encoding")),
        })
    }

    /// How much of a piece is written at once: all of it, but a decoder's input in small
    /// pieces, so that its output is bounded between two hand-overs.
    fn piece(&self) -> usize {
        match self {
            Coder::Gunzip(_) => 512,
            _ => usize::MAX,
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Coder::Gzip(w) => w.write_all(data),
            Coder::Br(w) => w.write_all(data),
            Coder::Zstd(w) => w.write_all(data),
            Coder::Gunzip(w) => w.write_all(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Coder::Gzip(w) => w.flush(),
            Coder::Br(w) => w.flush(),
            Coder::Zstd(w) => w.flush(),
            Coder::Gunzip(w) => w.flush(),
        }
    }

    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Coder::Gzip(w) => w.get_mut(),
            Coder::Br(w) => w.get_mut(),
            Coder::Zstd(w) => w.get_mut(),
            Coder::Gunzip(w) => w.get_mut(),
        }
    }

    /// Ends the stream: the last bytes.
    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Coder::Gzip(w) => w.finish(),
            Coder::Br(w) => Ok(w.into_inner()),
            Coder::Zstd(w) => w.finish(),
            Coder::Gunzip(w) => w.finish(),
        }
    }
}

/// Handed to the client once this much has been encoded, flushed or not.
const HAND_OVER: usize = 32 * 1024;

/// A body encoded (or decoded) as it streams.
struct Coded<B> {
    inner: B,
    coder: Option<Coder>,
    /// Of the backend's last piece, what is not written to the coder yet.
    input: Bytes,
    /// Written since the last flush.
    dirty: bool,
    /// The backend's trailers, sent after the last bytes.
    trailers: Option<HeaderMap>,
    /// The backend's body has ended.
    ended: bool,
}

impl<B> Coded<B> {
    fn new(inner: B, coder: Coder) -> Coded<B> {
        Coded {
            inner,
            coder: Some(coder),
            input: Bytes::new(),
            dirty: false,
            trailers: None,
            ended: false,
        }
    }

    /// The coder's output so far, if any.
    fn take(&mut self) -> Option<Bytes> {
        let out = self.coder.as_mut()?.out();
        (!out.is_empty()).then(|| Bytes::from(std::mem::take(out)))
    }

    /// Ends the coder: its last bytes, if any.
    fn finish(&mut self) -> io::Result<Option<Bytes>> {
        self.ended = true;
        match self.coder.take() {
            Some(c) => c.finish().map(|v| (!v.is_empty()).then(|| Bytes::from(v))),
            None => Ok(None),
        }
    }
}

impl<B> Body for Coded<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(coder) = &mut this.coder {
                while !this.input.is_empty() {
                    let n = this.input.len().min(coder.piece());
                    let piece = this.input.split_to(n);
                    coder.write_all(&piece)?;
                    this.dirty = true;
                    if coder.out().len() >= HAND_OVER {
                        let out = Bytes::from(std::mem::take(coder.out()));
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
            }
            if this.ended {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.input = data,
                    Err(frame) => {
                        // Trailers end the body: the last bytes go first.
                        this.trailers = frame.into_trailers().ok();
                        if let Some(last) = this.finish()? {
                            return Poll::Ready(Some(Ok(Frame::data(last))));
                        }
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    if let Some(last) = this.finish()? {
                        return Poll::Ready(Some(Ok(Frame::data(last))));
                    }
                }
                Poll::Pending => {
                    // Nothing more ready: what was encoded goes now.
                    if this.dirty
                        && let Some(c) = &mut this.coder
                    {
                        c.flush()?;
                        this.dirty = false;
                    }
                    return match this.take() {
                        Some(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A body that fails at once (an encoder that could not be made).
struct Failed(Option<io::Error>);

impl Body for Failed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.take().map(|e| Err(e.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Read;

    const ALL: [Encoding; 3] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip];

    fn pick(accept: &str, allowed: &[Encoding]) -> Encoding {
        negotiate(Some(&HeaderValue::from_str(accept).unwrap()), allowed)
    }

    #[test]
    fn negotiation_honours_q_values_identity_and_star() {
        assert_eq!(negotiate(None, &ALL), Encoding::Identity);
        assert_eq!(pick("gzip, deflate, br, zstd", &ALL), Encoding::Br);
        assert_eq!(
            pick("gzip, deflate, br, zstd", &[Encoding::Gzip, Encoding::Zstd]),
            Encoding::Gzip
        );
        assert_eq!(pick("gzip;q=1, br;q=0.5", &ALL), Encoding::Gzip);
        assert_eq!(pick("br;q=0, *", &ALL), Encoding::Zstd);
        assert_eq!(pick("br;q=0, *;q=0.1, gzip;q=0.2", &ALL), Encoding::Gzip);
        assert_eq!(pick("*;q=0", &ALL), Encoding::Identity);
        assert_eq!(pick("identity", &ALL), Encoding::Identity);
        assert_eq!(pick("", &ALL), Encoding::Identity);
        assert_eq!(pick("gzip;q=0.5, identity", &ALL), Encoding::Identity);
        assert_eq!(pick("gzip;q=0.5, identity;q=0.2", &ALL), Encoding::Gzip);
        assert_eq!(pick("br", &[Encoding::Gzip]), Encoding::Identity);
        assert_eq!(pick("X-GZIP", &ALL), Encoding::Gzip);
        assert_eq!(pick("Br ; Q=0.800 , gzip;q=0.799", &ALL), Encoding::Br);
        // Malformed entries are skipped, not taken as q=1.
        assert_eq!(pick("br;q=2, gzip;q=0.5x, zstd;q=1.5", &ALL), Encoding::Identity);
        let a = AcceptEncoding::parse(Some(&HeaderValue::from_static("*;q=0")));
        assert_eq!(a.q(Encoding::Identity), 0);
        let a = AcceptEncoding::parse(Some(&HeaderValue::from_static("br")));
        assert_eq!((a.q(Encoding::Gzip), a.q(Encoding::Identity)), (0, 1000));
    }

    #[test]
    fn media_type_patterns_match_case_blind() {
        let p = |s: &str| TypePattern(s.as_bytes().into());
        assert!(p("text/*").matches(b"Text/HTML"));
        assert!(p("application/*+json").matches(b"application/problem+json"));
        assert!(!p("application/*+json").matches(b"application/json"));
        assert!(p("*").matches(b"image/png"));
        assert!(p("a*b*c").matches(b"axxbyybc"));
        assert!(!p("text/html").matches(b"text/htm"));
    }

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn vary_is_merged_and_etags_weakened() {
        let mut h = head(&[("vary", "Origin"), ("vary", "Accept-Language"), ("etag", "\"abc\"")]);
        add_vary(&mut h);
        weaken_etag(&mut h);
        assert_eq!(h.get_all("vary").iter().count(), 1);
        assert_eq!(h["vary"], "Origin, Accept-Language, Accept-Encoding");
        assert_eq!(h["etag"], "W/\"abc\"");
        let mut h = head(&[("vary", "accept-encoding"), ("etag", "W/\"x\"")]);
        add_vary(&mut h);
        weaken_etag(&mut h);
        assert_eq!(
            (h["vary"].to_str().unwrap(), h["etag"].to_str().unwrap()),
            ("accept-encoding", "W/\"x\"")
        );
        assert!(has_no_transform(&head(&[("cache-control", "max-age=3, No-Transform")])));
        assert!(!has_no_transform(&head(&[("cache-control", "no-cache")])));
    }

    fn decode(e: Encoding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match e {
            Encoding::Gzip => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).map(|_| ()),
            Encoding::Br => brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out).map(|_| ()),
            Encoding::Zstd => zstd::stream::read::Decoder::new(bytes)
                .and_then(|mut d| d.read_to_end(&mut out))
                .map(|_| ()),
            Encoding::Identity => {
                out.extend_from_slice(bytes);
                Ok(())
            }
        }
        .unwrap_or_else(|err| panic!("{e:?}: {err}"));
        out
    }

    type Feed = tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>;

    /// A body fed by the test, frame by frame.
    struct Fed(Feed);

    impl Body for Fed {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx)
        }
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"a\",\"b\"]}}\n"))
            .collect::<String>()
            .into_bytes()
    }

    #[tokio::test]
    async fn every_encoder_round_trips_pieces_and_trailers() {
        let original = text(3000);
        for e in ALL {
            for length in [None, Some(original.len() as u64)] {
                let (tx, rx) = tokio::sync::mpsc::channel(64);
                for piece in original.chunks(7000) {
                    tx.send(Ok(Frame::data(Bytes::copy_from_slice(piece)))).await.unwrap();
                }
                let mut trailers = HeaderMap::new();
                trailers.insert("x-done", HeaderValue::from_static("1"));
                tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
                drop(tx);
                let coder = Coder::encoder(e, &CompressionLevels::default(), length).unwrap();
                let got = Coded::new(Fed(rx), coder).collect().await.unwrap();
                assert_eq!(
                    got.trailers().map(|t| &t["x-done"]),
                    Some(&HeaderValue::from_static("1"))
                );
                let bytes = got.to_bytes();
                assert!(bytes.len() < original.len() / 4, "{e:?}: {} bytes", bytes.len());
                assert!(decode(e, &bytes) == original, "{e:?} {length:?}");
            }
        }
    }

    /// The decoded prefix of a stream cut anywhere after a flush.
    fn partial(e: Encoding, bytes: &[u8]) -> Vec<u8> {
        fn run<W: Write>(mut w: W, bytes: &[u8], out: impl FnOnce(&mut W) -> Vec<u8>) -> Vec<u8> {
            w.write_all(bytes).unwrap();
            w.flush().unwrap();
            out(&mut w)
        }
        match e {
            Encoding::Gzip => run(flate2::write::GzDecoder::new(Vec::new()), bytes, |w| {
                w.get_mut().clone()
            }),
            Encoding::Br => run(brotli::DecompressorWriter::new(Vec::new(), 4096), bytes, |w| {
                w.get_mut().clone()
            }),
            _ => run(zstd::stream::write::Decoder::new(Vec::new()).unwrap(), bytes, |w| {
                w.get_mut().clone()
            }),
        }
    }

    /// What arrived is handed on as soon as the backend has nothing more ready, decodable up to
    /// that point: a paced stream is not held back.
    #[tokio::test]
    async fn a_paused_stream_is_flushed_piece_by_piece() {
        for e in ALL {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let coder = Coder::encoder(e, &CompressionLevels::default(), None).unwrap();
            let mut body = Coded::new(Fed(rx), coder);
            let mut so_far = Vec::new();
            let mut sent = String::new();
            for i in 0..5 {
                let event = format!("data: {{\"n\":{i}}}\n\n");
                sent.push_str(&event);
                tx.send(Ok(Frame::data(Bytes::from(event)))).await.unwrap();
                let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
                so_far.extend_from_slice(&frame);
                assert_eq!(
                    String::from_utf8_lossy(&partial(e, &so_far)),
                    sent,
                    "{e:?}: event {i} held back"
                );
            }
            drop(tx);
            while let Some(f) = body.frame().await {
                so_far.extend_from_slice(&f.unwrap().into_data().unwrap());
            }
            assert_eq!(decode(e, &so_far), sent.as_bytes(), "{e:?}");
        }
    }

    #[tokio::test]
    async fn a_gzip_answer_is_decoded_and_a_broken_one_fails() {
        let original = text(2000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&original).unwrap();
        let zipped = gz.finish().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        for piece in zipped.chunks(999) {
            tx.send(Ok(Frame::data(Bytes::copy_from_slice(piece)))).await.unwrap();
        }
        drop(tx);
        let coder = Coder::Gunzip(flate2::write::MultiGzDecoder::new(Vec::new()));
        let got = Coded::new(Fed(rx), coder).collect().await.unwrap().to_bytes();
        assert!(got == original);

        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(Ok(Frame::data(Bytes::copy_from_slice(&zipped[..zipped.len() / 2]))))
            .await
            .unwrap();
        drop(tx);
        let coder = Coder::Gunzip(flate2::write::MultiGzDecoder::new(Vec::new()));
        assert!(Coded::new(Fed(rx), coder).collect().await.is_err());
    }
}
