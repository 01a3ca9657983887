//! A differential test against hyper 1's HTTP/1 server: request byte strings, valid and
//! mutated, go to `hyper::server::conn::http1` over a `tokio::io::duplex` pair and to this
//! codec; both must agree on accept/refuse and, when both accept, on the method, the target,
//! the fields and the body bytes.
//!
//! Where the codec is deliberately stricter than hyper, the case must be refused with one of
//! the [`STRICTER`] kinds, each with its reason; the tally of those is printed. CI runs a
//! bounded number of cases (`PROPTEST_CASES`, 1,000 by default).

use bytes::Bytes;
use cratopus_http1::{BodyDecoder, BodyError, Limits, ParseError, RequestHead, parse_request};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a parser made of the bytes: the first request, whole, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Accept {
        method: Vec<u8>,
        target: Vec<u8>,
        /// (lower-case name, value), sorted.
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        body: Vec<u8>,
    },
    RejectHead(Option<ParseError>),
    /// The head was taken, the body refused (or, for hyper, cut short: hyper cannot tell
    /// which through its API).
    RejectBody(Option<BodyError>),
    Incomplete,
}

/// Refusals where hyper accepts, on purpose (see the crate docs); each with its reason.
const STRICTER: &[(ParseError, &str)] = &[
    (
        ParseError::BareLf,
        "bare LF ends no line: the smuggling tool of disagreeing parsers",
    ),
    (
        ParseError::ContentLengthAndTransferEncoding,
        "CL+TE refused (RFC 9112 §6.1) rather than TE winning",
    ),
    (
        ParseError::DuplicateContentLength,
        "identical duplicates and lists refused (RFC 9110 §8.6), as nginx does",
    ),
    (
        ParseError::MissingHost,
        "HTTP/1.1 without Host (RFC 9112 §3.2 MUST); hyper does not look",
    ),
    (ParseError::DuplicateHost, "more than one Host (RFC 9112 §3.2 MUST)"),
    (ParseError::InvalidHost, "Host not uri-host[:port] (RFC 9112 §3.2 MUST)"),
    (
        ParseError::UnsupportedTransferCoding,
        "a coding besides chunked is 501 (RFC 9112 §6.1); hyper decodes chunked and drops the rest",
    ),
    (
        ParseError::ChunkedNotFinal,
        "chunked applied twice (RFC 9112 §7: MUST NOT), or no coding at all",
    ),
    (
        ParseError::InvalidTarget,
        "a fragment, userinfo, an absolute URI without a host, authority-form outside CONNECT, CONNECT without a port",
    ),
    (
        ParseError::TargetFormMismatch,
        "asterisk-form without OPTIONS, CONNECT without authority-form",
    ),
];

const STRICTER_BODY: &[(BodyError, &str)] = &[
    (BodyError::BareLf, "bare LF in a chunk line"),
    (BodyError::InvalidChunkExtension, "a control byte in a chunk extension"),
];

fn limits() -> Limits {
    Limits::default()
}

fn ours(bytes: &[u8]) -> Outcome {
    let head: RequestHead = match parse_request(bytes, &limits()) {
        Ok(Some(h)) => h,
        Ok(None) => return Outcome::Incomplete,
        Err(e) => return Outcome::RejectHead(Some(e)),
    };
    let mut dec = BodyDecoder::new(head.body, &limits());
    let mut rest = &bytes[head.len..];
    let mut body = Vec::new();
    loop {
        match dec.decode(rest) {
            Err(e) => return Outcome::RejectBody(Some(e)),
            Ok(step) => {
                body.extend_from_slice(&rest[step.data.clone()]);
                rest = &rest[step.consumed..];
                if step.done {
                    break;
                }
                if step.data.is_empty() {
                    return Outcome::Incomplete;
                }
            }
        }
    }
    accepted(&head, bytes, body)
}

/// What an accepted request came to, comparable with hyper's: header names lowercased, the
/// fields sorted.
fn accepted(head: &RequestHead, bytes: &[u8], body: Vec<u8>) -> Outcome {
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = head
        .header_pairs(bytes)
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
        .collect();
    headers.sort();
    Outcome::Accept {
        method: head.method_bytes(bytes).to_vec(),
        target: head.target_bytes(bytes).to_vec(),
        headers,
        body,
    }
}

/// [`ours`] again, with the bytes arriving `piece` at a time as a connection reads them: the
/// head parsed again on each longer buffer, the body decoded from what is there.
fn ours_in_pieces(bytes: &[u8], piece: usize) -> Outcome {
    let mut have = 0;
    let head = loop {
        have = (have + piece).min(bytes.len());
        match parse_request(&bytes[..have], &limits()) {
            Ok(Some(h)) => break h,
            Ok(None) if have == bytes.len() => return Outcome::Incomplete,
            Ok(None) => {}
            Err(e) => return Outcome::RejectHead(Some(e)),
        }
    };
    let mut dec = BodyDecoder::new(head.body, &limits());
    let mut buf = bytes[head.len..have].to_vec();
    let mut fed = have;
    let mut body = Vec::new();
    loop {
        match dec.decode(&buf) {
            Err(e) => return Outcome::RejectBody(Some(e)),
            Ok(step) => {
                body.extend_from_slice(&buf[step.data.clone()]);
                buf.drain(..step.consumed);
                if step.done {
                    break;
                }
                if step.data.is_empty() {
                    if fed == bytes.len() {
                        return Outcome::Incomplete;
                    }
                    let n = piece.min(bytes.len() - fed);
                    buf.extend_from_slice(&bytes[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }
    accepted(&head, bytes, body)
}

/// Same verdict, whatever the reads: the kinds of refusal may differ (a limit or a bare LF can
/// be seen before the head completes), accept/refuse and what is accepted may not.
fn same_verdict(whole: &Outcome, pieces: &Outcome) -> bool {
    use Outcome::*;
    match (whole, pieces) {
        (RejectHead(_), RejectHead(_)) | (RejectBody(_), RejectBody(_)) | (Incomplete, Incomplete) => true,
        (a @ Accept { .. }, b @ Accept { .. }) => a == b,
        _ => false,
    }
}

type Seen = Result<(http::request::Parts, Result<Bytes, ()>), ()>;

fn hyper_outcome(rt: &tokio::runtime::Runtime, bytes: &[u8]) -> Outcome {
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let tx = tx.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.map(|c| c.to_bytes()).map_err(|_| ());
                let _ = tx.send(Ok((parts, body)));
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<Bytes>::new()))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .max_headers(limits().max_headers)
            // The client half-closes after its bytes; without this hyper drops the request.
            .half_close(true)
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc);
        let input = bytes.to_vec();
        let feed = async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        };
        let (result, ()) = match tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(conn, feed) }).await
        {
            Ok(r) => r,
            Err(_) => return Outcome::Incomplete,
        };
        match rx.try_recv() {
            Ok(Ok((parts, Ok(body)))) => {
                let mut headers: Vec<(Vec<u8>, Vec<u8>)> = parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect();
                headers.sort();
                Outcome::Accept {
                    method: parts.method.as_str().as_bytes().to_vec(),
                    target: parts.uri.to_string().into_bytes(),
                    headers,
                    body: body.to_vec(),
                }
            }
            Ok(_) => Outcome::RejectBody(None),
            Err(_) => match result {
                Err(e) if e.is_incomplete_message() => Outcome::Incomplete,
                Err(_) => Outcome::RejectHead(None),
                Ok(()) => Outcome::Incomplete,
            },
        }
    })
}

/// Compares the two outcomes; `Err` says how they differ. Deliberate differences are tallied.
fn compare(bytes: &[u8], ours: &Outcome, theirs: &Outcome, tally: &mut BTreeMap<String, usize>) -> Result<(), String> {
    use Outcome::*;
    let mut note = |k: String| *tally.entry(k).or_default() += 1;
    match (ours, theirs) {
        (
            Accept {
                method,
                target,
                headers,
                body,
            },
            Accept {
                method: m2,
                target: t2,
                headers: h2,
                body: b2,
            },
        ) => {
            // hyper prints an absolute-form target with a `/` path when it had none.
            let same_target = target == t2 || [target.as_slice(), b"/"].concat() == *t2;
            if method != m2 || !same_target || headers != h2 || body != b2 {
                return Err(format!("both accept, differently:\n ours  {ours:?}\n hyper {theirs:?}"));
            }
            note("agree: accept".into());
        }
        (RejectHead(_), RejectHead(_)) => note("agree: refuse head".into()),
        (RejectBody(_), RejectBody(_)) => note("agree: refuse body".into()),
        (Incomplete, Incomplete) => note("agree: incomplete".into()),
        // hyper cannot tell a body cut short from a bad one.
        (Incomplete, RejectBody(None)) => note("agree: body cut short".into()),
        // hyper skips a Content-Length that follows a Transfer-Encoding without reading it; we
        // read every field (and refuse the pair anyway).
        (
            RejectHead(Some(ParseError::InvalidContentLength | ParseError::DuplicateContentLength)),
            Accept { .. } | RejectBody(None) | Incomplete,
        ) if bytes
            .to_ascii_lowercase()
            .windows(18)
            .any(|w| w == b"transfer-encoding:") =>
        {
            note("stricter: a bad Content-Length beside Transfer-Encoding (hyper ignores it)".into())
        }
        (RejectHead(Some(e)), Accept { .. } | RejectBody(None) | Incomplete) => {
            match STRICTER.iter().find(|(k, _)| k == e) {
                Some((_, why)) => note(format!("stricter: {e:?} ({why})")),
                None => return Err(format!("we refuse {e:?}, hyper: {theirs:?}")),
            }
        }
        (RejectBody(Some(e)), Accept { .. } | Incomplete) => match STRICTER_BODY.iter().find(|(k, _)| k == e) {
            Some((_, why)) => note(format!("stricter body: {e:?} ({why})")),
            None => return Err(format!("we refuse the body {e:?}, hyper: {theirs:?}")),
        },
        (RejectBody(Some(_)), RejectHead(None)) => note("agree: refuse (hyper at the head)".into()),
        _ => return Err(format!("ours {ours:?}, hyper {theirs:?}")),
    }
    Ok(())
}

// ---- the generator ----

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(options).prop_map(str::to_string)
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => pick(&["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH"]),
        1 => pick(&["OPTIONS", "CONNECT", "get", "M-SEARCH", "G(T", "GET GET", "", "X!#$%&'*+-.^_`|~"]),
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => pick(&["/", "/a/b?c=d", "/%20x", "/a;b=c", "/!$&'()*+,;=:@-._~", "/a?b/c?d"]),
        2 => pick(&[
            "*", "http://ex.com/x", "http://ex.com", "https://ex.com:8443/a?b", "http://u@ex.com/", "ex.com:443",
            "/a#f", "/a b", "/é", "a", "//x", "/?", "/{a}|\"^`", "/\\", "http:///", "[::1]:80", "/<>",
        ]),
    ]
}

fn version() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => pick(&["HTTP/1.1"]),
        2 => pick(&["HTTP/1.0"]),
        1 => pick(&["HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1", "HTTP/1.10"]),
    ]
}

fn field() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        4 => pick(&["X-A", "Accept", "User-Agent", "X-Forwarded-For"]),
        4 => pick(&["Host", "Content-Length", "Transfer-Encoding", "Connection", "Expect", "Upgrade", "TE"]),
        1 => pick(&["host", "content-length", "transfer-encoding", "Host ", " X", "X(y)", "", "X_B", "Content-Length\t"]),
    ];
    let sep = prop_oneof![8 => pick(&[": "]), 2 => pick(&[":", ":\t", ":  "])];
    let value = prop_oneof![
        3 => pick(&["a", "example.com", "a:80", "v v", "text/html, */*"]),
        3 => pick(&["5", "0", "05", "3", "chunked", "close", "keep-alive", "100-continue", "websocket", "upgrade"]),
        2 => pick(&[
            "", "5, 5", "5,6", "-1", "+5", "18446744073709551616", "gzip, chunked", "chunked, gzip", "chunked, chunked",
            "CHUNKED", "a, b", "u@h", "a\u{0}b", "é", " x ", "\tx", "\u{7f}", "x\u{b}",
        ]),
    ];
    let eol = prop_oneof![20 => pick(&["\r\n"]), 1 => pick(&["\n", "\r", "\r\n "])];
    (name, sep, value, eol).prop_map(|(n, s, v, e)| format!("{n}{s}{v}{e}"))
}

fn chunked_body() -> impl Strategy<Value = String> {
    let chunk = (
        1usize..20,
        prop_oneof![6 => pick(&[""]), 1 => pick(&[";a=b", "; x", ";\u{1}", " "]), 1 => pick(&[";\"q\""])],
        prop_oneof![20 => pick(&["\r\n"]), 1 => pick(&["\n", "\r"])],
    )
        .prop_map(|(n, ext, eol)| format!("{n:x}{ext}{eol}{}\r\n", "d".repeat(n)));
    (
        proptest::collection::vec(chunk, 0..4),
        prop_oneof![6 => pick(&["0\r\n\r\n"]), 1 => pick(&["0\r\nX-T: 1\r\n\r\n", "0\n\n", "0\r\n", "00\r\n\r\n", "ffffffffffffffffff\r\n"])],
    )
        .prop_map(|(chunks, last)| chunks.concat() + &last)
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => pick(&[""]),
        2 => pick(&["hello", "abc", "hello world, a longer body"]),
        3 => chunked_body(),
    ]
}

/// A request as text, then mutated at the byte level now and then.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let text = (
        method(),
        target(),
        version(),
        proptest::bool::weighted(0.85),
        proptest::collection::vec(field(), 0..5),
        prop_oneof![
            3 => Just(None),
            1 => Just(Some("Content-Length")),
            2 => Just(Some("Transfer-Encoding")),
        ],
        body(),
    )
        .prop_map(|(m, t, v, host, fields, framing, body)| {
            let mut s = format!("{m} {t} {v}\r\n");
            if host {
                s.push_str("Host: h\r\n");
            }
            for f in fields {
                s.push_str(&f);
            }
            match framing {
                Some("Content-Length") => s.push_str(&format!("Content-Length: {}\r\n", body.len())),
                Some(_) => s.push_str("Transfer-Encoding: chunked\r\n"),
                None => {}
            }
            s.push_str("\r\n");
            s.push_str(&body);
            s.into_bytes()
        });
    let mutation = (
        any::<proptest::sample::Index>(),
        0u8..3,
        proptest::sample::select(&b"\r\n \t:,0a\x00\x7f\x80;"[..]),
    );
    (
        text,
        proptest::collection::vec(mutation, 0..3),
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(mut bytes, muts, mutate)| {
            if mutate {
                for (at, op, b) in muts {
                    let i = at.index(bytes.len() + 1);
                    match op {
                        0 if i < bytes.len() => bytes[i] = b,
                        1 if i < bytes.len() => {
                            bytes.remove(i);
                        }
                        _ => bytes.insert(i, b),
                    }
                }
            }
            bytes
        })
}

#[test]
fn agrees_with_hyper() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tally = RefCell::new(BTreeMap::new());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&request(), |bytes| {
        let o = ours(&bytes);
        for piece in [1, 7] {
            let p = ours_in_pieces(&bytes, piece);
            prop_assert!(
                same_verdict(&o, &p),
                "whole: {o:?}\n{piece}-byte reads: {p:?}\n bytes {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let h = hyper_outcome(&rt, &bytes);
        compare(&bytes, &o, &h, &mut tally.borrow_mut())
            .map_err(|e| TestCaseError::fail(format!("{e}\n bytes {:?}", String::from_utf8_lossy(&bytes))))
    });
    eprintln!("{cases} cases:");
    for (k, n) in tally.borrow().iter() {
        eprintln!("  {n:5}  {k}");
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Fixed cases that must agree, one per rule both parsers share.
#[test]
fn shared_rules_agree() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut tally = BTreeMap::new();
    for req in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
    ] {
        compare(req, &ours(req), &hyper_outcome(&rt, req), &mut tally)
            .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(req)));
    }
}

/// PortSwigger's and RFC 9112 §11's smuggling vectors, whole requests with a second one
/// hidden in the body: each must be refused by both, or by this codec alone for a listed
/// reason; the verdicts are printed (`--nocapture`).
#[test]
fn smuggling_vectors_against_hyper() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hidden = "GET /admin HTTP/1.1\r\nHost: h\r\n\r\n";
    let vectors: Vec<(&str, String)> = vec![
        (
            "CL.TE",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "TE.CL",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n{hidden}\r\n0\r\n\r\n"
            ),
        ),
        (
            "TE.TE space before colon",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "TE.TE xchunked",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "TE.TE two fields",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "TE.TE tab",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "TE.TE obs-fold",
            format!("POST / HTTP/1.1\r\nHost: h\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "TE.TE vertical tab",
            format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "TE.TE quoted",
            format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "TE gzip, chunked",
            format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "TE chunked, chunked",
            format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "CL.CL differing",
            format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 33\r\n\r\n{hidden}"),
        ),
        (
            "CL.CL same",
            format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 33\r\nContent-Length: 33\r\n\r\n{hidden}"),
        ),
        (
            "CL list",
            format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 33, 33\r\n\r\n{hidden}"),
        ),
        (
            "CL plus sign",
            format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +33\r\n\r\n{hidden}"),
        ),
        (
            "bare LF before TE",
            format!("POST / HTTP/1.1\r\nHost: h\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "bare CR",
            format!("POST / HTTP/1.1\r\nHost: h\r\nX: y\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "HTTP/1.0 TE",
            format!("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "chunk size overflow",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000021\r\n{hidden}\r\n0\r\n\r\n"
            ),
        ),
        (
            "chunk LF only",
            format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "chunk ext bare LF",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;a\nb\r\nab\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "chunk data longer than size",
            format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "duplicate Host",
            format!("GET / HTTP/1.1\r\nHost: h\r\nHost: evil\r\n\r\n{hidden}"),
        ),
        (
            "absolute-form with other Host",
            format!("GET http://h/ HTTP/1.1\r\nHost: evil\r\n\r\n{hidden}"),
        ),
    ];
    let mut tally = BTreeMap::new();
    let mut failures = Vec::new();
    for (name, req) in &vectors {
        let (o, h) = (ours(req.as_bytes()), hyper_outcome(&rt, req.as_bytes()));
        let before = tally.clone();
        if let Err(e) = compare(req.as_bytes(), &o, &h, &mut tally) {
            failures.push(format!("{name}: {e}"));
            continue;
        }
        let verdict = tally
            .iter()
            .find(|(k, n)| before.get(*k) != Some(n))
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        eprintln!("{name:32} {verdict}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
