//! Any bytes as a request: the codec must never panic, every range it hands out must lie in
//! the input, and reading the bytes in two pieces must give the same verdict as reading them
//! whole.
#![no_main]

use cratopus_http1::{BodyDecoder, Limits, RequestHead, parse_request};
use libfuzzer_sys::fuzz_target;

fn limits() -> Limits {
    Limits {
        max_head_bytes: 4096,
        max_headers: 32,
        max_request_line: 1024,
        max_header_line: 1024,
        max_chunk_ext_bytes: 256,
    }
}

/// The head and the body read from `input` as one buffer: `Some(body)` if accepted.
fn whole(input: &[u8]) -> Option<(RequestHead, Vec<u8>)> {
    let head = parse_request(input, &limits()).ok()??;
    assert!(head.len <= input.len());
    for h in &head.headers {
        for s in [h.name, h.value, h.line] {
            assert!(s.start <= s.end && (s.end as usize) <= head.len);
        }
    }
    assert!((head.target.end as usize) <= head.len && (head.request_line.end as usize) <= head.len);
    // The runs to forward lie in the field block, in order, without overlap.
    let mut at = head.fields.start;
    for run in head.forwarded_runs(input) {
        assert!(run.start >= at && run.start < run.end && run.end <= head.fields.end);
        at = run.end;
    }
    let mut dec = BodyDecoder::new(head.body, &limits());
    let mut rest = &input[head.len..];
    let mut body = Vec::new();
    loop {
        let step = dec.decode(rest).ok()?;
        assert!(step.consumed <= rest.len() && step.data.end <= step.consumed);
        body.extend_from_slice(&rest[step.data.clone()]);
        rest = &rest[step.consumed..];
        if step.done {
            return Some((head, body));
        }
        if step.data.is_empty() {
            return None;
        }
    }
}

/// The same, the bytes arriving in two reads split at `cut`.
fn split(input: &[u8], cut: usize) -> Option<Vec<u8>> {
    let head = match parse_request(&input[..cut], &limits()) {
        Ok(Some(h)) => h,
        Ok(None) => parse_request(input, &limits()).ok()??,
        Err(_) => return None,
    };
    let mut dec = BodyDecoder::new(head.body, &limits());
    let mut buf = input[head.len..cut.max(head.len)].to_vec();
    let mut fed = cut.max(head.len);
    let mut body = Vec::new();
    loop {
        let step = dec.decode(&buf).ok()?;
        body.extend_from_slice(&buf[step.data.clone()]);
        buf.drain(..step.consumed);
        if step.done {
            return Some(body);
        }
        if step.data.is_empty() {
            if fed == input.len() {
                return None;
            }
            buf.extend_from_slice(&input[fed..]);
            fed = input.len();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let verdict = whole(input);
    let cut = (cut as usize).min(input.len());
    let pieces = split(input, cut);
    assert_eq!(verdict.map(|(_, b)| b), pieces, "split at {cut}");
});
