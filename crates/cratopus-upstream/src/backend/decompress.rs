//! Decoding a composition backend's answer that came compressed (`Content-Encoding: gzip` or
//! `deflate`), bounded after decompression: a small answer that inflates past the limit (a
//! zip bomb) is that backend's clear failure, never the gateway's memory.
//!
//! The compressed bytes are already in memory and bounded (`MAX_ANSWER_BYTES`); decoding
//! stops as soon as one byte more than the limit comes out.

use super::compose::Failure;
use bytes::Bytes;
use std::io::Read;

/// The answer's bytes decoded per its `Content-Encoding` (`gzip`, `x-gzip`, `deflate`,
/// `identity`, or a list of them applied in order); an unknown coding, a broken stream or an
/// answer that grows past `limit` bytes is a failure with a sentence.
pub(super) fn decode(coding: &[u8], bytes: &Bytes, limit: usize) -> Result<Bytes, Failure> {
    if bytes.is_empty() {
        // A 204, or an empty answer a server labelled anyway: nothing to decode.
        return Ok(Bytes::new());
    }
    let text = String::from_utf8_lossy(coding);
    let mut out = bytes.clone();
    // Codings are listed in the order they were applied: undo them from the last.
    for c in text.split(',').map(str::trim).filter(|c| !c.is_empty()).rev() {
        out = match c.to_ascii_lowercase().as_str() {
            "identity" => out,
            "gzip" | "x-gzip" => inflate(flate2::read::MultiGzDecoder::new(&out[..]), limit, "gzip")?,
            "deflate" => inflate(flate2::read::ZlibDecoder::new(&out[..]), limit, "deflate")?,
            other => {
                return Err(Failure::from(format!(
                    "the answer is encoded as `{other}`, which the gateway does not decode (gzip and deflate only)"
                )));
            }
        };
    }
    Ok(out)
}

fn inflate(decoder: impl Read, limit: usize, name: &str) -> Result<Bytes, Failure> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| Failure::from(format!("the {name} answer is broken: {e}")))?;
    if out.len() > limit {
        return Err(Failure::from(format!(
            "the {name} answer is larger than {limit} bytes once decompressed"
        )));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn gzip_and_deflate_are_decoded() {
        let body = br#"{"a": 1}"#;
        assert_eq!(&decode(b"gzip", &gzip(body), 100).unwrap()[..], body);
        assert_eq!(&decode(b"x-gzip", &gzip(body), 100).unwrap()[..], body);
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(body).unwrap();
        let z = Bytes::from(z.finish().unwrap());
        assert_eq!(&decode(b"deflate", &z, 100).unwrap()[..], body);
        assert_eq!(&decode(b"identity", &Bytes::from_static(body), 100).unwrap()[..], body);
        assert!(
            decode(b"gzip", &Bytes::new(), 100).unwrap().is_empty(),
            "an empty answer stays empty"
        );
        // Several codings are undone from the last applied.
        let twice = gzip(&z);
        assert_eq!(&decode(b"deflate, gzip", &twice, 100).unwrap()[..], body);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![b'0'; 10 << 20]);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let e = decode(b"gzip", &bomb, 1 << 20).unwrap_err();
        assert!(
            e.reason.contains("larger than 1048576 bytes once decompressed"),
            "{}",
            e.reason
        );
        // Exactly at the limit is fine.
        assert_eq!(decode(b"gzip", &gzip(&[b'1'; 64]), 64).unwrap().len(), 64);
    }

    #[test]
    fn broken_and_unknown_codings_fail_with_a_sentence() {
        let e = decode(b"gzip", &Bytes::from_static(b"not gzip"), 100).unwrap_err();
        assert!(e.reason.contains("the gzip answer is broken"), "{}", e.reason);
        let e = decode(b"br", &Bytes::from_static(b"x"), 100).unwrap_err();
        assert!(e.reason.contains("`br`"), "{}", e.reason);
    }
}
