//! Just enough of HTTP/2's framing to time a client's header blocks.
//!
//! hyper (through the `h2` crate) waits as long as it takes for a header block to complete: a
//! HEADERS frame without END_HEADERS, or a frame cut short, holds the connection for good. The
//! connection's IO sees every byte the client sends, so it follows the frame boundaries here
//! (the 9-byte frame header gives each frame's length, type and flags; payloads are skipped,
//! never copied) and tells when a header block is open, for the header-read timeout.

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: what an HTTP/2 connection begins with.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// What a run of bytes did to the header block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Nothing changed.
    Same,
    /// A header block began (a HEADERS frame's header arrived).
    Opened,
    /// The open header block ended (its last frame arrived whole).
    Closed,
}

/// Follows the frames of a client's byte stream after the preface.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// The frame header being read, and how much of it has arrived.
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to come.
    rest: usize,
    /// The current frame ends its header block when its payload is complete.
    ends_block: bool,
    /// A header block is open (from its HEADERS frame to the frame with END_HEADERS).
    open: bool,
}

impl FrameScanner {
    /// Whether a header block is open now.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Feeds bytes as they arrive; says whether they leave a header block open that began in
    /// them, or closed the one that was open. (A block that opens and completes within the same
    /// bytes changes nothing, which is the common case: a whole HEADERS frame in one read.)
    pub fn feed(&mut self, mut bytes: &[u8]) -> Block {
        let was_open = self.open;
        let mut opened = false;
        while !bytes.is_empty() {
            if self.rest > 0 {
                let n = self.rest.min(bytes.len());
                self.rest -= n;
                bytes = &bytes[n..];
                if self.rest == 0 {
                    self.frame_done();
                }
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < 9 {
                break;
            }
            self.have = 0;
            let h = &self.header;
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let (kind, flags) = (h[3], h[4]);
            if kind == HEADERS && !self.open {
                self.open = true;
                opened = true;
            }
            self.ends_block = (kind == HEADERS || kind == CONTINUATION) && flags & END_HEADERS != 0;
            self.rest = len;
            if len == 0 {
                self.frame_done();
            }
        }
        if opened && self.open {
            Block::Opened
        } else if was_open && !self.open {
            Block::Closed
        } else {
            Block::Same
        }
    }

    fn frame_done(&mut self) {
        if self.ends_block {
            self.open = false;
            self.ends_block = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_whole_header_block_in_one_read_changes_nothing() {
        let mut s = FrameScanner::default();
        let mut bytes = frame(0x4, 0, &[]); // SETTINGS
        bytes.extend(frame(HEADERS, END_HEADERS | 0x1, &[0x82, 0x86, 0x84]));
        assert_eq!(s.feed(&bytes), Block::Same);
        assert!(!s.is_open());
    }

    #[test]
    fn a_block_stays_open_until_its_last_continuation_is_whole() {
        let mut s = FrameScanner::default();
        assert_eq!(s.feed(&frame(HEADERS, 0x1, &[0x82])), Block::Opened);
        let cont = frame(CONTINUATION, END_HEADERS, &[0x86, 0x84]);
        // Byte by byte: open until the last payload byte arrives.
        for (i, b) in cont.iter().enumerate() {
            let last = i == cont.len() - 1;
            assert_eq!(s.feed(&[*b]), if last { Block::Closed } else { Block::Same });
            assert_eq!(s.is_open(), !last);
        }
    }

    #[test]
    fn a_frame_cut_short_keeps_its_block_open() {
        let mut s = FrameScanner::default();
        let f = frame(HEADERS, END_HEADERS, &[0x82, 0x86, 0x84]);
        assert_eq!(s.feed(&f[..10]), Block::Opened);
        assert!(s.is_open());
        assert_eq!(s.feed(&f[10..]), Block::Closed);
    }

    #[test]
    fn data_frames_are_skipped() {
        let mut s = FrameScanner::default();
        let mut bytes = frame(0x0, 0, &[HEADERS; 20]); // DATA whose payload looks like headers
        bytes.extend(frame(0x0, 0x1, &[]));
        assert_eq!(s.feed(&bytes), Block::Same);
        assert!(!s.is_open());
    }
}
