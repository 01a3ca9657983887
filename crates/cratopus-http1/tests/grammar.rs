//! RFC 9112's request grammar, enumerated: each request-line and field-line variant the tests
//! can name, and each request-smuggling vector of RFC 9112 §6–§11 and PortSwigger's lists, with
//! the outcome expected of the codec (accepted with its framing, or the exact refusal).

use cratopus_http1::{
    BodyDecoder, BodyError, BodyFraming, Limits, Method, ParseError, ParseError::*, TargetForm, Version, parse_request,
};

/// The outcome of parsing `req` whole: the framing, or the refusal.
fn outcome(req: &[u8]) -> Result<BodyFraming, ParseError> {
    match parse_request(req, &Limits::default()) {
        Ok(Some(h)) => Ok(h.body),
        Ok(None) => panic!("incomplete: {}", String::from_utf8_lossy(req)),
        Err(e) => Err(e),
    }
}

fn check(cases: &[(&str, Result<BodyFraming, ParseError>)]) {
    let mut failures = Vec::new();
    for (req, want) in cases {
        let got = outcome(req.as_bytes());
        if &got != want {
            failures.push(format!("{req:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const E: Result<BodyFraming, ParseError> = Ok(BodyFraming::Empty);

#[test]
fn methods_are_tokens() {
    let mut cases = vec![];
    let ok = [
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "OPTIONS",
        "TRACE",
        "PATCH",
        "PROPFIND",
        "M-SEARCH",
        "get",
        "X!#$%&'*+-.^_`|~9",
    ];
    let reqs: Vec<String> = ok
        .iter()
        .map(|m| format!("{m} / HTTP/1.1\r\nHost: a\r\n\r\n"))
        .collect();
    for r in &reqs {
        cases.push((r.as_str(), E));
    }
    cases.extend([
        ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", Err(InvalidMethod)),
        ("GE\"T / HTTP/1.1\r\nHost: a\r\n\r\n", Err(InvalidMethod)),
        ("G\x7fT / HTTP/1.1\r\nHost: a\r\n\r\n", Err(InvalidMethod)),
        ("GÉT / HTTP/1.1\r\nHost: a\r\n\r\n", Err(InvalidMethod)),
        (" GET / HTTP/1.1\r\nHost: a\r\n\r\n", Err(MalformedRequestLine)),
        ("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", Err(MalformedRequestLine)),
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Err(MalformedRequestLine)),
        ("GET\r\n\r\n", Err(MalformedRequestLine)),
    ]);
    check(&cases);
}

#[test]
fn target_forms() {
    check(&[
        // origin-form
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", E),
        ("GET /a/b?c=d&e=%20f HTTP/1.1\r\nHost: a\r\n\r\n", E),
        ("GET /!$&'()*+,;=:@-._~ HTTP/1.1\r\nHost: a\r\n\r\n", E),
        ("GET /a?b/c?d HTTP/1.1\r\nHost: a\r\n\r\n", E),
        ("GET /ünï HTTP/1.1\r\nHost: a\r\n\r\n", E),
        ("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", Err(InvalidTarget)),
        ("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", Err(MalformedRequestLine)),
        ("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", Err(MalformedRequestLine)),
        ("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", Err(MalformedRequestLine)),
        ("GET /é HTTP/1.1\r\nHost: a\r\n\r\n", E),
        ("GET  HTTP/1.1\r\nHost: a\r\n\r\n", Err(MalformedRequestLine)),
        ("GET a HTTP/1.1\r\nHost: a\r\n\r\n", Err(InvalidTarget)),
        // absolute-form
        ("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", E),
        ("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", E),
        ("GET https://example.com:8443/a?b HTTP/1.1\r\nHost: x\r\n\r\n", E),
        ("GET http://[::1]:80/ HTTP/1.1\r\nHost: x\r\n\r\n", E),
        (
            "GET http://user@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
            Err(InvalidTarget),
        ),
        ("GET http:///a HTTP/1.1\r\nHost: x\r\n\r\n", Err(InvalidTarget)),
        ("GET http:example.com/ HTTP/1.1\r\nHost: x\r\n\r\n", Err(InvalidTarget)),
        ("GET 1http://a/ HTTP/1.1\r\nHost: x\r\n\r\n", Err(InvalidTarget)),
        // authority-form: CONNECT only, port required
        ("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", E),
        ("CONNECT [::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n", E),
        ("CONNECT example.com HTTP/1.1\r\nHost: x\r\n\r\n", Err(InvalidTarget)),
        ("CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n", Err(TargetFormMismatch)),
        ("CONNECT http://a/ HTTP/1.1\r\nHost: x\r\n\r\n", Err(InvalidTarget)),
        ("GET example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", Err(InvalidTarget)),
        // asterisk-form: OPTIONS only
        ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", E),
        ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", Err(TargetFormMismatch)),
        ("OPTIONS ** HTTP/1.1\r\nHost: a\r\n\r\n", Err(InvalidTarget)),
    ]);
}

#[test]
fn non_utf8_bytes() {
    let l = Limits::default();
    // A target must be UTF-8 (httparse's rule; hyper's too), a field value may hold any obs-text.
    assert_eq!(
        parse_request(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", &l),
        Err(InvalidTarget)
    );
    assert!(
        parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nX: \x80\xff\r\n\r\n", &l)
            .unwrap()
            .is_some()
    );
}

#[test]
fn target_forms_are_told() {
    let l = Limits::default();
    let req = b"GET http://example.com:81/x HTTP/1.1\r\nHost: other\r\n\r\n";
    let h = parse_request(req, &l).unwrap().unwrap();
    assert!(matches!(h.target_form, TargetForm::Absolute { .. }));
    // RFC 9112 §3.2.2: the target's authority wins over Host.
    assert_eq!(h.authority(req), Some(&b"example.com:81"[..]));
    let req = b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n";
    let h = parse_request(req, &l).unwrap().unwrap();
    assert_eq!((h.method, h.target_form), (Method::Connect, TargetForm::Authority));
    let req = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
    let h = parse_request(req, &l).unwrap().unwrap();
    assert_eq!(h.target_form, TargetForm::Asterisk);
    assert_eq!(h.authority(req), Some(&b"h"[..]));
}

#[test]
fn versions() {
    check(&[
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", E),
        ("GET / HTTP/1.0\r\n\r\n", E),
        ("GET / HTTP/1.2\r\nHost: a\r\n\r\n", Err(UnsupportedVersion)),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(UnsupportedVersion)),
        ("GET / HTTP/0.9\r\n\r\n", Err(UnsupportedVersion)),
        ("GET / HTTP/1\r\nHost: a\r\n\r\n", Err(InvalidVersion)),
        ("GET / http/1.1\r\nHost: a\r\n\r\n", Err(InvalidVersion)),
        ("GET / HTTP/1.10\r\nHost: a\r\n\r\n", Err(MalformedRequestLine)),
        ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", Err(MalformedRequestLine)),
        ("GET /\r\nHost: a\r\n\r\n", Err(MalformedRequestLine)),
    ]);
}

#[test]
fn line_endings() {
    check(&[
        // RFC 9112 §2.2: empty lines before the request line are skipped.
        ("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", E),
        ("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Err(BareLf)),
        ("GET / HTTP/1.1\nHost: a\r\n\r\n", Err(BareLf)),
        ("GET / HTTP/1.1\r\nHost: a\n\r\n", Err(BareLf)),
        ("GET / HTTP/1.1\r\nHost: a\r\n\n", Err(BareLf)),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: b\n\r\n", Err(BareLf)),
        ("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", Err(BareCr)),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n", Err(BareCr)),
        ("GET / HTTP/1.1\rHost: a\r\n\r\n", Err(BareCr)),
    ]);
}

#[test]
fn field_lines() {
    check(&[
        // OWS around the value is not part of it; any OWS amount is fine.
        ("GET / HTTP/1.1\r\nHost:a\r\nX:b\r\n\r\n", E),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: \t b \t \r\n\r\n", E),
        ("GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n", E),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a b\tc\r\n\r\n", E),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: é obs-text\r\n\r\n", E),
        ("GET / HTTP/1.1\r\nHost: a\r\nX!#$%&'*+-.^_`|~: v\r\n\r\n", E),
        // RFC 9112 §5.1: whitespace before the colon MUST be refused.
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", Err(WhitespaceBeforeColon)),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n",
            Err(WhitespaceBeforeColon),
        ),
        // RFC 9112 §5.2: obs-fold.
        ("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", Err(ObsFold)),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", Err(ObsFold)),
        ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", Err(ObsFold)),
        // Bad names and values.
        ("GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n", Err(InvalidHeaderName)),
        ("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", Err(InvalidHeaderName)),
        ("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", Err(InvalidHeaderName)),
        ("GET / HTTP/1.1\r\nHost: a\r\nX\x00: b\r\n\r\n", Err(InvalidHeaderName)),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: b\x00c\r\n\r\n",
            Err(InvalidHeaderValue),
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: b\x7fc\r\n\r\n",
            Err(InvalidHeaderValue),
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: b\x1bc\r\n\r\n",
            Err(InvalidHeaderValue),
        ),
    ]);
}

#[test]
fn host_rules() {
    check(&[
        ("GET / HTTP/1.1\r\n\r\n", Err(MissingHost)),
        ("GET / HTTP/1.0\r\n\r\n", E),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Err(DuplicateHost)),
        ("GET / HTTP/1.1\r\nHost: a\r\nhOsT: b\r\n\r\n", Err(DuplicateHost)),
        ("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", Err(InvalidHost)),
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Err(InvalidHost)),
        ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Err(InvalidHost)),
        ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Err(InvalidHost)),
        ("GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", Err(InvalidHost)),
        ("GET / HTTP/1.1\r\nHost:\r\n\r\n", E),
        ("GET / HTTP/1.1\r\nHost: a:8080\r\n\r\n", E),
        ("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n", E),
        ("GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n", E),
        // Host is required in absolute-form too (RFC 9112 §3.2), and not compared with it.
        ("GET http://a/ HTTP/1.1\r\n\r\n", Err(MissingHost)),
        ("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", E),
    ]);
}

#[test]
fn content_length_rules() {
    check(&[
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
            Ok(BodyFraming::Length(5)),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            Ok(BodyFraming::Length(0)),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n",
            Ok(BodyFraming::Length(7)),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
            Ok(BodyFraming::Length(u64::MAX)),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
            Err(InvalidContentLength),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            Err(InvalidContentLength),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            Err(InvalidContentLength),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
            Err(InvalidContentLength),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n",
            Err(InvalidContentLength),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
            Err(InvalidContentLength),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n",
            Err(InvalidContentLength),
        ),
        // Duplicates, identical or not, and lists (RFC 9110 §8.6: we take the "reject" choice).
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            Err(DuplicateContentLength),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            Err(DuplicateContentLength),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            Err(DuplicateContentLength),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,6\r\n\r\n",
            Err(DuplicateContentLength),
        ),
    ]);
}

#[test]
fn transfer_encoding_rules() {
    let c = Ok(BodyFraming::Chunked);
    check(&[
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", c),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n", c),
        // Empty list elements: skipped by RFC 9110 §5.6.1, refused here as hyper does.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Err(UnsupportedTransferCoding),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            Err(UnsupportedTransferCoding),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;a=b\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Err(TransferEncodingHttp10),
        ),
    ]);
}

/// PortSwigger's request-smuggling vectors (CL.TE, TE.CL, TE.TE obfuscations) and RFC 9112
/// §11.2's: each is refused at the head, so no body is ever framed two ways.
#[test]
fn smuggling_vectors() {
    check(&[
        // CL.TE and TE.CL: both fields.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n",
            Err(ContentLengthAndTransferEncoding),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            Err(ContentLengthAndTransferEncoding),
        ),
        // TE.TE obfuscations.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            Err(WhitespaceBeforeColon),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n",
            Ok(BodyFraming::Chunked),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nX: X\nTransfer-Encoding: chunked\r\n\r\n",
            Err(BareLf),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\r\n : chunked\r\n\r\n",
            Err(InvalidHeaderName),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n",
            Err(ObsFold),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
            Err(ChunkedNotFinal),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
            Ok(BodyFraming::Length(1)),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            Err(DuplicateContentLength),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 1\r\n\r\n",
            Err(WhitespaceBeforeColon),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\x0bContent-Length: 2\r\n\r\n",
            Err(InvalidHeaderName),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \x0b1\r\n\r\n",
            Err(InvalidHeaderValue),
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
            Err(TransferEncodingHttp10),
        ),
    ]);
}

#[test]
fn connection_expect_upgrade() {
    let l = Limits::default();
    let p = |r: &str| parse_request(r.as_bytes(), &l).unwrap().unwrap();
    assert!(p("GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
    assert!(!p("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!p("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive);
    assert!(!p("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    assert!(!p("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(p("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(!p("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    let h = p("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
    assert!(h.expect_continue && !h.expect_other);
    let h = p("POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n");
    assert!(!h.expect_continue && h.expect_other);
    // RFC 9110 §10.1.1: an HTTP/1.0 request's 100-continue is ignored.
    assert!(!p("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    let req = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let h = p(req);
    assert!(h.connection_upgrade);
    assert_eq!(
        h.upgrade.map(|i| h.headers[i].value.of(req.as_bytes())),
        Some(&b"websocket"[..])
    );
    assert_eq!(p("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n").upgrade, None);
}

#[test]
fn spans_point_at_the_bytes() {
    let req = b"\r\nPOST /p?q HTTP/1.1\r\nHost: h\r\nX-A:  v v \r\n\r\nbody";
    let h = parse_request(req, &Limits::default()).unwrap().unwrap();
    assert_eq!(&req[h.len..], b"body");
    assert_eq!(h.request_line.of(req), b"POST /p?q HTTP/1.1\r\n");
    assert_eq!(h.method_bytes(req), b"POST");
    assert_eq!(h.target_bytes(req), b"/p?q");
    assert_eq!(h.version, Version::Http11);
    assert_eq!(h.headers[1].name.of(req), b"X-A");
    assert_eq!(h.headers[1].value.of(req), b"v v");
    assert_eq!(h.headers[1].line.of(req), b"X-A:  v v \r\n");
    assert_eq!(h.fields.of(req), b"Host: h\r\nX-A:  v v \r\n");
    assert!(h.headers[0].kind == cratopus_http1::HeaderKind::Host);
}

#[test]
fn limits() {
    let l = Limits {
        max_head_bytes: 200,
        max_headers: 3,
        max_request_line: 40,
        max_header_line: 50,
        max_chunk_ext_bytes: 10,
    };
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(40));
    assert_eq!(parse_request(long_target.as_bytes(), &l), Err(RequestLineTooLong));
    // Refused before it completes, too.
    assert_eq!(
        parse_request(&long_target.as_bytes()[..45], &l),
        Err(RequestLineTooLong)
    );
    let many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(parse_request(many.as_bytes(), &l), Err(TooManyHeaders));
    let three = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    assert!(parse_request(three.as_bytes(), &l).unwrap().is_some());
    let long_line = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(50));
    assert_eq!(parse_request(long_line.as_bytes(), &l), Err(HeaderLineTooLong));
    assert_eq!(
        parse_request(&long_line.as_bytes()[..long_line.len() - 4], &l),
        Err(HeaderLineTooLong)
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X: 0123456789012345678901234567890\r\n".repeat(5)
    );
    let l2 = Limits { max_headers: 100, ..l };
    assert_eq!(parse_request(big.as_bytes(), &l2), Err(HeadTooLarge));
    assert_eq!(parse_request(&big.as_bytes()[..big.len() - 2], &l2), Err(HeadTooLarge));
    for (e, status) in [
        (RequestLineTooLong, 414),
        (TooManyHeaders, 431),
        (UnsupportedTransferCoding, 501),
        (UnsupportedVersion, 505),
        (BareLf, 400),
    ] {
        assert_eq!(e.status(), status);
    }
}

#[test]
fn heads_arrive_in_pieces() {
    let req = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    let l = Limits::default();
    for cut in 0..req.len() - 3 {
        assert_eq!(parse_request(&req[..cut], &l), Ok(None), "cut at {cut}");
    }
    let h = parse_request(req, &l).unwrap().unwrap();
    assert_eq!(h.body, BodyFraming::Length(3));
}

/// Decodes a whole body fed `piece` bytes at a time, as a connection would read it.
fn decode_in_pieces(
    framing: BodyFraming,
    wire: &[u8],
    piece: usize,
    l: &Limits,
) -> Result<(Vec<u8>, usize), BodyError> {
    let mut dec = BodyDecoder::new(framing, l);
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut used = 0;
    let mut body = Vec::new();
    loop {
        let step = dec.decode(&buf)?;
        body.extend_from_slice(&buf[step.data.clone()]);
        buf.drain(..step.consumed);
        used += step.consumed;
        if step.done {
            return Ok((body, used));
        }
        if step.data.is_empty() {
            if fed == wire.len() {
                panic!("body incomplete after all bytes");
            }
            let n = piece.min(wire.len() - fed);
            buf.extend_from_slice(&wire[fed..fed + n]);
            fed += n;
        }
    }
}

#[test]
fn chunked_bodies() {
    let l = Limits::default();
    let wire = b"5\r\nhello\r\n6;ext=1;q=\"a b\"\r\n world\r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET /next";
    for piece in 1..wire.len() {
        let (body, used) = decode_in_pieces(BodyFraming::Chunked, wire, piece, &l).unwrap();
        assert_eq!(body, b"hello world0123456789");
        assert_eq!(&wire[used..], b"GET /next", "piece {piece}");
    }
    let cases: &[(&[u8], BodyError)] = &[
        (b"5\nhello\r\n0\r\n\r\n", BodyError::BareLf),
        (b"5\r\nhello\n0\r\n\r\n", BodyError::BareLf),
        (b"5\r\nhelloX\r\n0\r\n\r\n", BodyError::MissingChunkCrlf),
        (b"5\r\nhello\r\n0\r\nX: y\n\r\n", BodyError::InvalidTrailer(BareLf)),
        (
            b"5\r\nhello\r\n0\r\nX : y\r\n\r\n",
            BodyError::InvalidTrailer(WhitespaceBeforeColon),
        ),
        (
            b"5\r\nhello\r\n0\r\nX: y\r\n z\r\n\r\n",
            BodyError::InvalidTrailer(ObsFold),
        ),
        (b"5\r\nhello\r\n0\n\r\n", BodyError::BareLf),
        (b"x\r\n", BodyError::InvalidChunkSize),
        (b"\r\n", BodyError::InvalidChunkSize),
        (b"-1\r\n", BodyError::InvalidChunkSize),
        (b"+1\r\n", BodyError::InvalidChunkSize),
        (b"0x5\r\n", BodyError::InvalidChunkSize),
        (b"5 5\r\n", BodyError::InvalidChunkSize),
        (b"1\r\r\n", BodyError::InvalidChunkSize),
        (b"10000000000000000\r\n", BodyError::ChunkSizeOverflow),
        (b"ffffffffffffffff0\r\n", BodyError::ChunkSizeOverflow),
        (b"1;a\x00\r\n", BodyError::InvalidChunkExtension),
        (b"1;aaaaaaaaaaaaaaaaaaaaaaaaa\r\n", BodyError::ChunkExtensionsTooLong),
    ];
    let small_ext = Limits {
        max_chunk_ext_bytes: 16,
        ..l
    };
    for (wire, want) in cases {
        let mut dec = BodyDecoder::new(BodyFraming::Chunked, &small_ext);
        let mut buf = wire.to_vec();
        let got = loop {
            match dec.decode(&buf) {
                Err(e) => break Some(e),
                Ok(s) if s.done || (s.data.is_empty() && s.consumed == 0) => break None,
                Ok(s) => {
                    buf.drain(..s.consumed);
                }
            }
        };
        assert_eq!(got.as_ref(), Some(want), "{}", String::from_utf8_lossy(wire));
    }
    // Many leading zeros are fine up to a bound.
    let (body, _) = decode_in_pieces(BodyFraming::Chunked, b"0000000001\r\nx\r\n0\r\n\r\n", 3, &l).unwrap();
    assert_eq!(body, b"x");
    // A trailer section past the head limit.
    let tiny = Limits {
        max_head_bytes: 20,
        ..l
    };
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &tiny);
    let wire = format!("0\r\nX: {}\r\n", "a".repeat(40));
    assert_eq!(dec.decode(wire.as_bytes()), Err(BodyError::TrailersTooLarge));
}

#[test]
fn length_bodies_and_pipelining() {
    let l = Limits::default();
    let wire = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    let h = parse_request(wire, &l).unwrap().unwrap();
    let rest = &wire[h.len..];
    let (body, used) = decode_in_pieces(h.body, rest, 2, &l).unwrap();
    assert_eq!(body, b"hello");
    let next = parse_request(&rest[used..], &l).unwrap().unwrap();
    assert_eq!(next.target_bytes(&rest[used..]), b"/b");
    assert_eq!(next.len, rest.len() - used);
    // No framing: no body; the next request starts right after the head.
    let mut dec = BodyDecoder::new(BodyFraming::Empty, &l);
    assert!(dec.is_done());
    assert!(dec.decode(b"GET").unwrap().done);
}

#[test]
fn decode_bytes_shares_the_buffer() {
    let l = Limits::default();
    let mut buf = bytes::BytesMut::from(&b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT"[..]);
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &l);
    let start = buf.as_ptr() as usize;
    let a = dec.decode_bytes(&mut buf).unwrap().unwrap();
    assert_eq!(&a[..], b"abc");
    assert_eq!(a.as_ptr() as usize, start + 3, "no copy");
    let b = dec.decode_bytes(&mut buf).unwrap().unwrap();
    assert_eq!(&b[..], b"de");
    assert_eq!(dec.decode_bytes(&mut buf).unwrap(), None);
    assert!(dec.is_done());
    assert_eq!(&buf[..], b"NEXT");
}

#[test]
fn forwarded_runs_leave_hop_by_hop_out() {
    let req = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\nB: 2\r\nx-secret: s\r\nC: 3\r\nTE: trailers\r\nUpgrade: x\r\n\r\n";
    let h = parse_request(req, &Limits::default()).unwrap().unwrap();
    let runs: Vec<&[u8]> = h.forwarded_runs(req).map(|s| s.of(req)).collect();
    assert_eq!(runs, vec![&b"Host: h\r\nA: 1\r\n"[..], b"B: 2\r\n", b"C: 3\r\n"]);
    // Nothing to leave out: the whole field block in one run.
    let req = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    let h = parse_request(req, &Limits::default()).unwrap().unwrap();
    let runs: Vec<_> = h.forwarded_runs(req).collect();
    assert_eq!(runs, vec![h.fields]);
}

#[test]
fn too_many_fields_while_the_head_is_incomplete() {
    let l = Limits {
        max_headers: 2,
        ..Limits::default()
    };
    assert_eq!(
        parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD", &l),
        Err(TooManyHeaders)
    );
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Every byte in each place of the grammar: in a method and a field name (token), in a field
/// value (field-vchar / obs-text / SP / HTAB), in a path and in a query.
#[test]
fn every_byte_in_every_place() {
    let l = Limits::default();
    let accepted = |req: Vec<u8>| matches!(parse_request(&req, &l), Ok(Some(_)));
    for b in 0..=255u8 {
        let mut method = b"G".to_vec();
        method.push(b);
        method.extend_from_slice(b"T / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(accepted(method), is_tchar(b), "method byte {b:#04x}");

        let mut name = b"GET / HTTP/1.1\r\nHost: h\r\nX".to_vec();
        name.push(b);
        name.extend_from_slice(b"Y: v\r\n\r\n");
        // A colon ends the name early: `X:Y: v` is the field X.
        assert_eq!(accepted(name), is_tchar(b) || b == b':', "field name byte {b:#04x}");

        let mut value = b"GET / HTTP/1.1\r\nHost: h\r\nX: a".to_vec();
        value.push(b);
        value.extend_from_slice(b"b\r\n\r\n");
        let field_byte = b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
        assert_eq!(accepted(value), field_byte, "field value byte {b:#04x}");

        // Targets: visible ASCII that the http crate's Uri takes (WHATWG's sets), no `#`; raw
        // bytes >= 0x80 only as UTF-8 (tested in non_utf8_bytes).
        if b < 0x80 {
            let mut path = b"GET /a".to_vec();
            path.push(b);
            path.extend_from_slice(b"b HTTP/1.1\r\nHost: h\r\n\r\n");
            let path_byte = matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E | b'"' | b'{' | b'}' | b'?');
            assert_eq!(accepted(path), path_byte, "path byte {b:#04x}");

            let mut query = b"GET /a?".to_vec();
            query.push(b);
            query.extend_from_slice(b"b HTTP/1.1\r\nHost: h\r\n\r\n");
            let query_byte = matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E);
            assert_eq!(accepted(query), query_byte, "query byte {b:#04x}");
        }
    }
}

/// The methods of IANA's HTTP Method Registry are all tokens; PRI (the HTTP/2 preface's) is a
/// version this codec does not speak.
#[test]
fn registered_methods() {
    let l = Limits::default();
    for m in [
        "ACL",
        "BASELINE-CONTROL",
        "BIND",
        "CHECKIN",
        "CHECKOUT",
        "CONNECT",
        "COPY",
        "DELETE",
        "GET",
        "HEAD",
        "LABEL",
        "LINK",
        "LOCK",
        "MERGE",
        "MKACTIVITY",
        "MKCALENDAR",
        "MKCOL",
        "MKREDIRECTREF",
        "MKWORKSPACE",
        "MOVE",
        "OPTIONS",
        "ORDERPATCH",
        "PATCH",
        "POST",
        "PROPFIND",
        "PROPPATCH",
        "PUT",
        "QUERY",
        "REBIND",
        "REPORT",
        "SEARCH",
        "TRACE",
        "UNBIND",
        "UNCHECKOUT",
        "UNLINK",
        "UNLOCK",
        "UPDATE",
        "UPDATEREDIRECTREF",
        "VERSION-CONTROL",
    ] {
        let target = match m {
            "CONNECT" => "h:443",
            _ => "/",
        };
        let req = format!("{m} {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let h = parse_request(req.as_bytes(), &l).unwrap().unwrap();
        assert_eq!(h.method_bytes(req.as_bytes()), m.as_bytes());
    }
    assert_eq!(
        parse_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &l),
        Err(UnsupportedVersion)
    );
}

#[test]
fn trailers_are_handed_out() {
    let l = Limits::default();
    let wire = b"3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\nNEXT";
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &l);
    let first = dec.decode(wire).unwrap();
    assert_eq!(&wire[first.data.clone()], b"abc");
    let rest = &wire[first.consumed..];
    let last = dec.decode(rest).unwrap();
    assert!(last.done);
    assert_eq!(last.trailers.map(|t| t.of(rest)), Some(&b"X-A: 1\r\nX-B: 2\r\n"[..]));
    assert_eq!(&rest[last.consumed..], b"NEXT");
    // Trailer lines are bounded like field lines.
    let short = Limits {
        max_header_line: 10,
        ..l
    };
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &short);
    assert_eq!(
        dec.decode(b"0\r\nX-Long: 0123456789\r\n\r\n"),
        Err(BodyError::InvalidTrailer(HeaderLineTooLong))
    );
    // Trailers count against the field limit.
    let two = Limits { max_headers: 1, ..l };
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, &two);
    assert_eq!(
        dec.decode(b"0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"),
        Err(BodyError::InvalidTrailer(TooManyHeaders))
    );
}
