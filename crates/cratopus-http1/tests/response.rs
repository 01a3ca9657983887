//! What the response side writes reads back: heads through httparse's response parser (what
//! hyper's client uses), chunked bodies through the codec's own decoder.

use bytes::BytesMut;
use cratopus_http1::response::{HeadWriter, ResponseFraming, encode_chunk, encode_last_chunk};
use cratopus_http1::{BodyDecoder, BodyFraming, Limits, Version};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn value() -> impl Strategy<Value = String> {
    // field-vchar with inner spaces and tabs; leading and trailing whitespace is not part of a
    // value, so none is generated there.
    "([!-~]([ \t!-~]{0,20}[!-~])?)?"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn heads_read_back(
        status in 100u16..=599,
        fields in proptest::collection::vec((token(), value()), 0..8),
        framing in prop_oneof![
            Just(ResponseFraming::NoBody),
            (0u64..1_000_000).prop_map(ResponseFraming::Length),
            Just(ResponseFraming::Chunked),
            Just(ResponseFraming::Close),
        ],
        keep_alive in any::<bool>(),
        http10 in any::<bool>(),
    ) {
        let client = if http10 { Version::Http10 } else { Version::Http11 };
        let mut dst = BytesMut::new();
        let mut w = HeadWriter::new(&mut dst, status, None).unwrap();
        for (n, v) in &fields {
            w.field(n.as_bytes(), v.as_bytes()).unwrap();
        }
        w.finish(framing, keep_alive, client);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut res = httparse::Response::new(&mut headers);
        let parsed = res.parse(&dst).unwrap();
        prop_assert_eq!(parsed, httparse::Status::Complete(dst.len()));
        prop_assert_eq!(res.code, Some(status));
        let got: Vec<(String, Vec<u8>)> = res.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect();
        for (i, (n, v)) in fields.iter().enumerate() {
            prop_assert_eq!(&got[i].0, n);
            prop_assert_eq!(&got[i].1, v.as_bytes());
        }
        let extra: Vec<String> = got[fields.len()..].iter().map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v))).collect();
        let mut want = Vec::new();
        match framing {
            ResponseFraming::Length(n) => want.push(format!("content-length: {n}")),
            ResponseFraming::Chunked => want.push("transfer-encoding: chunked".to_string()),
            _ => {}
        }
        let keep = keep_alive && framing != ResponseFraming::Close;
        if !keep {
            want.push("connection: close".to_string());
        } else if http10 {
            want.push("connection: keep-alive".to_string());
        }
        prop_assert_eq!(extra, want);
    }

    #[test]
    fn chunked_bodies_read_back(pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
        let mut wire = BytesMut::new();
        for p in &pieces {
            encode_chunk(&mut wire, p);
        }
        encode_last_chunk(&mut wire, [(&b"x-check"[..], &b"1"[..])]).unwrap();
        let mut dec = BodyDecoder::new(BodyFraming::Chunked, &Limits::default());
        let mut body = Vec::new();
        let mut rest = &wire[..];
        loop {
            let step = dec.decode(rest).unwrap();
            body.extend_from_slice(&rest[step.data.clone()]);
            rest = &rest[step.consumed..];
            if step.done {
                break;
            }
            prop_assert!(!step.data.is_empty(), "stalled");
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(body, pieces.concat());
    }
}
