//! Request body framing: an incremental decoder for `Content-Length` and `chunked` bodies that
//! works on whatever part of the body the buffer holds and hands out data as ranges of it.

use crate::error::{BodyError, ParseError};
use crate::fields::{check_line_ends, classify_field_error};
use crate::request::BodyFraming;
use crate::{Limits, Span};
use bytes::{Buf, Bytes, BytesMut};

/// What one [`BodyDecoder::decode`] call did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    /// Bytes of the input used (framing and data); drop them from the buffer.
    pub consumed: usize,
    /// Body data in the input (inside `..consumed`); empty if none.
    pub data: std::ops::Range<usize>,
    /// The trailer field lines (chunked only, at the end), inside `..consumed`; `None` if none.
    pub trailers: Option<Span>,
    /// The body is complete: a pipelined request begins at `consumed`.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `Content-Length` body: bytes still to come.
    Length(u64),
    /// chunk-size hex digits (how many so far).
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size, before `;` or CRLF.
    SizeWs(u64),
    /// A chunk extension, skipped.
    Ext(u64),
    /// CR seen at the end of the chunk line.
    SizeLf(u64),
    /// Chunk data still to come.
    Data(u64),
    /// After the data: CR, then LF.
    DataCr,
    DataLf,
    /// After the last chunk: the trailer section up to its empty line.
    Trailers,
    Done,
}

/// Decodes one request body; made from the head's [`BodyFraming`].
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    ext_left: usize,
    limits: Limits,
}

/// Leading zeros aside, a u64 has 16 hex digits; a size line longer than this is refused
/// rather than read forever.
const MAX_SIZE_DIGITS: u8 = 32;

impl BodyDecoder {
    pub fn new(framing: BodyFraming, limits: &Limits) -> BodyDecoder {
        let state = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::Size { size: 0, digits: 0 },
        };
        BodyDecoder {
            state,
            ext_left: limits.max_chunk_ext_bytes,
            limits: *limits,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The body bytes still expected, when known (a `Content-Length` body).
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Reads framing from `input` up to the next run of data, which it returns (at most one run
    /// a call: data is contiguous). A step with no data and not `done` has used all it could:
    /// read more bytes, keep the unconsumed ones, and call again.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, BodyError> {
        let mut pos = 0;
        loop {
            if self.state == State::Done {
                return Ok(Step {
                    consumed: pos,
                    done: true,
                    ..Step::default()
                });
            }
            if let State::Length(left) | State::Data(left) = self.state {
                let avail = input.len() - pos;
                if avail == 0 {
                    return Ok(Step {
                        consumed: pos,
                        ..Step::default()
                    });
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(avail);
                let left = left - n as u64;
                self.state = match self.state {
                    State::Length(_) if left == 0 => State::Done,
                    State::Length(_) => State::Length(left),
                    _ if left == 0 => State::DataCr,
                    _ => State::Data(left),
                };
                return Ok(Step {
                    consumed: pos + n,
                    data: pos..pos + n,
                    done: self.state == State::Done,
                    trailers: None,
                });
            }
            if self.state == State::Trailers {
                return self.trailers(input, pos);
            }
            let Some(&b) = input.get(pos) else {
                return Ok(Step {
                    consumed: pos,
                    ..Step::default()
                });
            };
            pos += 1;
            self.state = self.byte(b)?;
        }
    }

    /// One byte of a chunk line or of the CRLF after chunk data.
    fn byte(&mut self, b: u8) -> Result<State, BodyError> {
        Ok(match self.state {
            State::Size { size, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits >= MAX_SIZE_DIGITS {
                        return Err(BodyError::ChunkSizeOverflow);
                    }
                    let d = (b as char).to_digit(16).map_or(0, u64::from);
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(d))
                        .ok_or(BodyError::ChunkSizeOverflow)?;
                    State::Size {
                        size,
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return Err(BodyError::InvalidChunkSize),
                b' ' | b'\t' => State::SizeWs(size),
                b';' => State::Ext(size),
                b'\r' => State::SizeLf(size),
                b'\n' => return Err(BodyError::BareLf),
                _ => return Err(BodyError::InvalidChunkSize),
            },
            State::SizeWs(size) => match b {
                b' ' | b'\t' => State::SizeWs(size),
                b';' => State::Ext(size),
                b'\r' => State::SizeLf(size),
                b'\n' => return Err(BodyError::BareLf),
                _ => return Err(BodyError::InvalidChunkSize),
            },
            State::Ext(size) => match b {
                b'\r' => State::SizeLf(size),
                b'\n' => return Err(BodyError::BareLf),
                b'\t' | 0x20..=0x7e | 0x80..=0xff => {
                    self.ext_left = self.ext_left.checked_sub(1).ok_or(BodyError::ChunkExtensionsTooLong)?;
                    State::Ext(size)
                }
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            State::SizeLf(size) => match b {
                b'\n' if size == 0 => State::Trailers,
                b'\n' => State::Data(size),
                _ => return Err(BodyError::InvalidChunkSize),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                b'\n' => return Err(BodyError::BareLf),
                _ => return Err(BodyError::MissingChunkCrlf),
            },
            State::DataLf => match b {
                b'\n' => State::Size { size: 0, digits: 0 },
                _ => return Err(BodyError::MissingChunkCrlf),
            },
            // Handled by `decode` before a byte is read.
            State::Length(_) | State::Data(_) | State::Trailers | State::Done => self.state,
        })
    }

    /// The trailer section, taken whole once its empty line is in the input.
    fn trailers(&mut self, input: &[u8], pos: usize) -> Result<Step, BodyError> {
        let rest = &input[pos..];
        let need_more = Step {
            consumed: pos,
            ..Step::default()
        };
        match rest {
            [] | [b'\r'] => return Ok(need_more),
            [b'\r', b'\n', ..] => {
                self.state = State::Done;
                return Ok(Step {
                    consumed: pos + 2,
                    done: true,
                    ..Step::default()
                });
            }
            _ => {}
        }
        let Some(end) = memchr::memmem::find(rest, b"\r\n\r\n") else {
            // Refuse a bad line ending as soon as it is seen.
            check_line_ends(rest).map_err(BodyError::InvalidTrailer)?;
            if rest.len() > self.limits.max_head_bytes {
                return Err(BodyError::TrailersTooLarge);
            }
            return Ok(need_more);
        };
        let section = &rest[..end + 4];
        if section.len() > self.limits.max_head_bytes {
            return Err(BodyError::TrailersTooLarge);
        }
        check_line_ends(section).map_err(BodyError::InvalidTrailer)?;
        let mut line_start = 0;
        for end in memchr::memchr_iter(b'\n', section) {
            if end + 1 - line_start > self.limits.max_header_line {
                return Err(BodyError::InvalidTrailer(ParseError::HeaderLineTooLong));
            }
            line_start = end + 1;
        }
        let mut slots = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        match httparse::parse_headers(section, &mut slots) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(BodyError::InvalidTrailer(ParseError::InvalidHeaderName)),
            Err(httparse::Error::TooManyHeaders) => return Err(BodyError::InvalidTrailer(ParseError::TooManyHeaders)),
            Err(e) => return Err(BodyError::InvalidTrailer(classify_field_error(section, 0, e))),
        }
        self.state = State::Done;
        Ok(Step {
            consumed: pos + end + 4,
            data: 0..0,
            trailers: Some(Span::new(pos, pos + end + 2)),
            done: true,
        })
    }

    /// [`decode`](Self::decode) on a `BytesMut`: the framing is dropped from `buf` and the data
    /// split off as `Bytes` sharing its memory (no copy). `Ok(None)`: read more into `buf`
    /// (unless [`is_done`](Self::is_done)). Trailers are dropped (see [`Step::trailers`] to keep
    /// them).
    pub fn decode_bytes(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, BodyError> {
        let step = self.decode(buf)?;
        if step.data.is_empty() {
            buf.advance(step.consumed);
            return Ok(None);
        }
        buf.advance(step.data.start);
        let data = buf.split_to(step.data.len()).freeze();
        buf.advance(step.consumed - step.data.end);
        Ok(Some(data))
    }
}
