//! gRPC-Web on a route (`grpc_web: true`): browsers' gRPC, translated to gRPC for the upstream
//! and back, as Envoy's `grpc_web` filter does (grpc/doc/PROTOCOL-WEB.md).
//!
//! A request of `application/grpc-web[+proto]` or `application/grpc-web-text[+proto]` (over
//! HTTP/1.1 or HTTP/2) goes on as `application/grpc[+proto]` with `te: trailers`; a `-text`
//! body is base64 and is decoded as it streams. The answer goes back with the gRPC-Web content
//! type, its messages as they are, and its trailers — which browsers cannot read as HTTP
//! trailers — as one last length-prefixed frame with flag `0x80` whose payload is the trailers
//! as an HTTP/1 header block; for `-text` the whole answer is base64, encoded as it streams.
//! A Trailers-Only answer (the status in the head, no body) passes as it is: gRPC-Web clients
//! read the status from the head. CORS answers also expose `grpc-status` and `grpc-message`,
//! which a browser's script must read.
//!
//! Other requests of the route (plain gRPC included) pass untouched; routes without
//! `grpc_web` have no such step at all.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};
use cratopus_upstream::body::{BackendBody, BoxError, RequestBody};
use http::header::{self, HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// How a gRPC-Web request's bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `application/grpc-web`: the gRPC framing as it is.
    Binary,
    /// `application/grpc-web-text`: the same bytes, base64.
    Text,
}

static TE_TRAILERS: HeaderValue = HeaderValue::from_static("trailers");
const EXPOSED: &str = "grpc-status, grpc-message, grpc-status-details-bin";

/// Reads a request's gRPC-Web content type and turns the head into a gRPC request's.
/// `None` (and the head untouched) for any other request.
pub fn on_request(headers: &mut HeaderMap) -> Option<Mode> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let lower = ct.to_ascii_lowercase();
    let (mode, rest) = if let Some(rest) = lower.strip_prefix("application/grpc-web-text") {
        (Mode::Text, rest)
    } else if let Some(rest) = lower.strip_prefix("application/grpc-web") {
        (Mode::Binary, rest)
    } else {
        return None;
    };
    if !(rest.is_empty() || rest.starts_with('+') || rest.starts_with(';')) {
        return None;
    }
    let grpc = HeaderValue::from_str(&format!("application/grpc{rest}")).ok()?;
    headers.insert(header::CONTENT_TYPE, grpc);
    headers.insert(header::TE, TE_TRAILERS.clone());
    if mode == Mode::Text {
        // base64 is longer than the bytes it carries; the body streams without a length.
        headers.remove(header::CONTENT_LENGTH);
    }
    Some(mode)
}

/// Turns the answer's head back into gRPC-Web: its content type, and CORS exposing the gRPC
/// status headers when the answer carries CORS headers (the CORS step ran before).
pub fn on_response(mode: Mode, headers: &mut HeaderMap) {
    let web = match mode {
        Mode::Binary => "application/grpc-web",
        Mode::Text => "application/grpc-web-text",
    };
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if let Some(rest) = ct.and_then(|c| {
        c.to_ascii_lowercase()
            .strip_prefix("application/grpc")
            .map(str::to_string)
    }) && let Ok(v) = HeaderValue::from_str(&format!("{web}{rest}"))
    {
        headers.insert(header::CONTENT_TYPE, v);
    }
    // The body's length changes (a trailer frame, base64).
    headers.remove(header::CONTENT_LENGTH);
    if headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        let exposed = match headers
            .get(header::ACCESS_CONTROL_EXPOSE_HEADERS)
            .and_then(|v| v.to_str().ok())
        {
            Some(e) if !e.trim().is_empty() => format!("{e}, {EXPOSED}"),
            _ => EXPOSED.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&exposed) {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
}

/// The request body as the upstream gets it.
pub fn request_body(mode: Mode, body: RequestBody) -> RequestBody {
    match mode {
        Mode::Binary => body,
        Mode::Text => body.wrap(|b| DecodeText {
            inner: b,
            pending: BytesMut::new(),
            done: false,
        }),
    }
}

/// The answer's body as the browser gets it.
pub fn response_body(mode: Mode, body: BackendBody) -> BackendBody {
    body.wrap(|frames| EncodeWeb {
        inner: frames,
        mode,
        pending: BytesMut::new(),
        done: false,
    })
}

/// A malformed `-text` body.
#[derive(Debug, thiserror::Error)]
#[error("the gRPC-Web text body is not valid base64")]
pub struct BadBase64;

/// Decodes a base64 body as it streams: whole groups of four characters are decoded as they
/// come (each may end in padding: clients may send several padded pieces back to back), the
/// rest waits for the next piece.
struct DecodeText<B> {
    inner: B,
    pending: BytesMut,
    done: bool,
}

impl<B> Body for DecodeText<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.pending.extend(data.iter().filter(|b| !b.is_ascii_whitespace()));
                        let whole = this.pending.len() / 4 * 4;
                        if whole == 0 {
                            continue;
                        }
                        let chars = this.pending.split_to(whole);
                        return Poll::Ready(Some(decode_groups(&chars).map(Frame::data)));
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.done = true;
                    if this.pending.is_empty() {
                        return Poll::Ready(None);
                    }
                    // A last group without its padding.
                    let rest = std::mem::take(&mut this.pending);
                    return Poll::Ready(Some(
                        base64::engine::general_purpose::STANDARD_NO_PAD
                            .decode(&rest)
                            .map(|b| Frame::data(Bytes::from(b)))
                            .map_err(|_| BadBase64.into()),
                    ));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// Decodes whole groups of four characters, each of which may be padded.
fn decode_groups(chars: &[u8]) -> Result<Bytes, BoxError> {
    // One decode when no group before the last is padded (the usual case).
    let pad_inside = chars[..chars.len() - 4].contains(&b'=');
    if !pad_inside {
        return STANDARD.decode(chars).map(Bytes::from).map_err(|_| BadBase64.into());
    }
    let mut out = Vec::with_capacity(chars.len() / 4 * 3);
    for group in chars.chunks(4) {
        STANDARD.decode_vec(group, &mut out).map_err(|_| BadBase64)?;
    }
    Ok(Bytes::from(out))
}

/// Writes an answer as gRPC-Web: its messages as they come, its trailers as a last frame with
/// flag `0x80`, everything base64 for `-text` (in groups of three bytes as they stream, padded
/// once at the end).
struct EncodeWeb<B> {
    inner: B,
    mode: Mode,
    /// `-text`: bytes not yet encoded (fewer than three between pieces).
    pending: BytesMut,
    done: bool,
}

impl<B> EncodeWeb<B> {
    /// The bytes to send of `data`: as they are, or as much of them as encodes without
    /// padding (`last`: all of it, padded).
    fn out(&mut self, data: Bytes, last: bool) -> Option<Bytes> {
        match self.mode {
            Mode::Binary => (!data.is_empty()).then_some(data),
            Mode::Text => {
                self.pending.extend_from_slice(&data);
                let n = if last {
                    self.pending.len()
                } else {
                    self.pending.len() / 3 * 3
                };
                if n == 0 {
                    return None;
                }
                let bytes = self.pending.split_to(n);
                Some(Bytes::from(STANDARD.encode(&bytes)))
            }
        }
    }
}

/// The trailers as gRPC-Web's last frame: flag `0x80`, the length, `name:value\r\n` lines.
pub fn trailer_frame(trailers: &HeaderMap) -> Bytes {
    let mut block = BytesMut::new();
    for (name, value) in trailers {
        block.put_slice(name.as_str().as_bytes());
        block.put_slice(b":");
        block.put_slice(value.as_bytes());
        block.put_slice(b"\r\n");
    }
    let mut frame = BytesMut::with_capacity(5 + block.len());
    frame.put_u8(0x80);
    frame.put_u32(block.len() as u32);
    frame.put_slice(&block);
    frame.freeze()
}

impl<B> Body for EncodeWeb<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let Some(out) = this.out(data, false) {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        let Ok(trailers) = frame.into_trailers() else { continue };
                        this.done = true;
                        let last = trailer_frame(&trailers);
                        if let Some(out) = this.out(last, true) {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.done = true;
                    if let Some(out) = this.out(Bytes::new(), true) {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type Frames = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>;

    fn stream(pieces: Vec<Frame<Bytes>>) -> StreamBody<Frames> {
        StreamBody::new(futures_util::stream::iter(
            pieces.into_iter().map(Ok).collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn heads_are_translated_both_ways() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc-web-text+proto"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(on_request(&mut h), Some(Mode::Text));
        assert_eq!(h[header::CONTENT_TYPE], "application/grpc+proto");
        assert_eq!(h[header::TE], "trailers");
        assert!(!h.contains_key(header::CONTENT_LENGTH));

        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc-web"));
        assert_eq!(on_request(&mut h), Some(Mode::Binary));
        assert_eq!(h[header::CONTENT_TYPE], "application/grpc");

        for other in ["application/grpc", "application/json", "application/grpc-webby"] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(other));
            assert_eq!(on_request(&mut h), None, "{other}");
            assert_eq!(h[header::CONTENT_TYPE], other);
        }

        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id"),
        );
        on_response(Mode::Text, &mut h);
        assert_eq!(h[header::CONTENT_TYPE], "application/grpc-web-text+proto");
        assert_eq!(
            h[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            format!("x-request-id, {EXPOSED}")
        );
    }

    #[tokio::test]
    async fn text_bodies_are_decoded_across_pieces_and_paddings() {
        let raw = b"\x00\x00\x00\x00\x05hello";
        let text = STANDARD.encode(raw); // 14 characters with padding
        let (a, b) = text.split_at(5);
        // Two padded pieces back to back, as some clients send them.
        let second = STANDARD.encode(b"xy");
        let body = DecodeText {
            inner: stream(vec![
                Frame::data(Bytes::from(a.to_string())),
                Frame::data(Bytes::from(format!("{b}{second}"))),
            ]),
            pending: BytesMut::new(),
            done: false,
        };
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"\x00\x00\x00\x00\x05helloxy");

        let bad = DecodeText {
            inner: stream(vec![Frame::data(Bytes::from_static(b"!!!!"))]),
            pending: BytesMut::new(),
            done: false,
        };
        assert!(bad.collect().await.is_err());
    }

    #[tokio::test]
    async fn answers_end_with_a_trailer_frame() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("x-custom", HeaderValue::from_static("yes"));
        let message = Bytes::from_static(b"\x00\x00\x00\x00\x02hi");
        for mode in [Mode::Binary, Mode::Text] {
            let body = EncodeWeb {
                inner: stream(vec![Frame::data(message.clone()), Frame::trailers(trailers.clone())]),
                mode,
                pending: BytesMut::new(),
                done: false,
            };
            let got = body.collect().await.unwrap().to_bytes();
            let got = match mode {
                Mode::Binary => got.to_vec(),
                Mode::Text => {
                    // Encoded in pieces: decode as a client does, group by group.
                    decode_groups(&got).unwrap().to_vec()
                }
            };
            let block = b"grpc-status:0\r\nx-custom:yes\r\n";
            let mut want = message.to_vec();
            want.push(0x80);
            want.extend_from_slice(&(block.len() as u32).to_be_bytes());
            want.extend_from_slice(block);
            assert_eq!(got, want, "{mode:?}");
        }
    }
}
