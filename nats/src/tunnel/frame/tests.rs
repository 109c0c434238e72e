//! Frames round-trip, the wire format is pinned, and malformed input is a typed error.

use super::*;

fn http_headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (name, value) in pairs {
        h.append(*name, value.parse().unwrap());
    }
    h
}

/// A frame of `kind`, number 0, with `extra` NATS headers and `payload`, as it arrives.
fn arrived_with(
    kind: &str,
    extra: &[(&str, &str)],
    payload: Bytes,
) -> Result<(u64, Frame), FrameError> {
    let mut h = HeaderMap::new();
    for (name, value) in [&[("Fb-Kind", kind), ("Fb-Seq", "0")], extra].concat() {
        h.append(name, value);
    }
    Frame::decode(Some(&h), payload)
}

fn arrived(kind: &str, extra: &[(&str, &str)]) -> Result<(u64, Frame), FrameError> {
    arrived_with(kind, extra, Bytes::from_static(b"payload"))
}

/// An open or head frame whose head a peer wrote as it liked.
fn arrived_head(kind: &str, head: &impl Message) -> Result<(u64, Frame), FrameError> {
    arrived_with(kind, &[], head.encode_length_delimited_to_vec().into())
}

fn header(name: &str, value: &[u8]) -> v1::HttpHeader {
    v1::HttpHeader {
        name: name.into(),
        value: Bytes::copy_from_slice(value),
    }
}

fn open_head() -> v1::TunnelOpen {
    v1::TunnelOpen {
        method: "GET".into(),
        path: "/api".into(),
        request_id: "r".into(),
        ..Default::default()
    }
}

fn response_head() -> v1::TunnelHead {
    v1::TunnelHead {
        status: 200,
        upstream: UPSTREAM.into(),
        ..Default::default()
    }
}

const UPSTREAM: &str = "fleet.kapi.c1.alice.r.s";

/// A change that makes a head malformed, and the part the error names.
type Spoil<M> = (fn(&mut M), &'static str);

fn request(headers: http::HeaderMap) -> Frame {
    Frame::Open(Open {
        path: "/api".into(),
        request_id: "r".into(),
        headers,
        ..Open::default()
    })
}

fn every_kind() -> Vec<Frame> {
    let headers = http_headers(&[
        ("accept", "application/json"),
        ("x-multi", "a"),
        ("x-multi", "b"),
        ("x-name", "caf\u{e9}"),
    ]);
    vec![
        Frame::Open(Open {
            method: http::Method::POST,
            path: "/api/v1/namespaces/demo/pods?limit=1".into(),
            request_id: "req-1".into(),
            headers: headers.clone(),
            body: Some(Bytes::from_static(b"{}")),
            ..Open::default()
        }),
        Frame::Open(Open {
            path: "/api/v1/namespaces/demo/pods/web/exec?command=sh".into(),
            request_id: "req-2".into(),
            service_account: Some("deployer".into()),
            upgrade: Some("SPDY/3.1".into()),
            ..Open::default()
        }),
        Frame::Ready {
            upstream: UPSTREAM.into(),
        },
        Frame::Head(Head {
            status: http::StatusCode::NOT_FOUND,
            headers,
            upstream: UPSTREAM.into(),
            body: Some(Bytes::from_static(b"not found")),
            ..Head::default()
        }),
        Frame::Head(Head {
            status: http::StatusCode::SWITCHING_PROTOCOLS,
            upstream: UPSTREAM.into(),
            upgrade: Some("websocket".into()),
            ..Head::default()
        }),
        Frame::Data(Bytes::from_static(b"\0bytes")),
        Frame::Eof,
        Frame::End,
        Frame::Error {
            code: 502,
            message: "cannot reach the kube-apiserver".into(),
        },
        Frame::Credit(4096),
        Frame::Cancel,
        Frame::Keepalive,
    ]
}

#[test]
fn every_kind_round_trips() {
    let frames = every_kind();
    for (seq, frame) in (7..).zip(&frames) {
        let (headers, payload) = frame.encode(seq).unwrap();
        let kind = headers.get(tunnel::KIND).unwrap().as_str();
        assert_eq!(kind, frame.kind().as_str());
        let back = Frame::decode(Some(&headers), payload);
        assert_eq!(back, Ok((seq, frame.clone())));
    }
    let mut kinds: Vec<_> = frames.iter().map(Frame::kind).collect();
    kinds.dedup();
    assert_eq!(kinds.len(), 10, "every kind: {kinds:?}");
}

#[test]
fn the_wire_format_is_the_contract() {
    let (h, mut payload) = every_kind()[0].encode(0).unwrap();
    let get = |name: &str| h.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(get("Fb-Kind").as_deref(), Some("open"));
    assert_eq!(get("Fb-Seq").as_deref(), Some("0"));
    assert_eq!(h.iter().count(), 2, "only kind and number in NATS headers");
    let open = v1::TunnelOpen::decode_length_delimited(&mut payload).unwrap();
    assert_eq!(
        open,
        v1::TunnelOpen {
            method: "POST".into(),
            path: "/api/v1/namespaces/demo/pods?limit=1".into(),
            request_id: "req-1".into(),
            headers: vec![
                header("accept", b"application/json"),
                header("x-multi", b"a"),
                header("x-multi", b"b"),
                header("x-name", "caf\u{e9}".as_bytes()),
            ],
            inline_body: true,
            ..Default::default()
        }
    );
    assert_eq!(payload, "{}", "the body follows the head");
    let (_, mut payload) = every_kind()[3].encode(1).unwrap();
    let head = v1::TunnelHead::decode_length_delimited(&mut payload).unwrap();
    assert_eq!((head.status, head.complete), (404, true));
    assert_eq!(head.upstream, UPSTREAM);
    assert_eq!(payload, "not found");
    let (h, _) = every_kind()[2].encode(2).unwrap();
    assert_eq!(h.get("Fb-Upstream").unwrap().as_str(), UPSTREAM);
    let (h, _) = Frame::Credit(4096).encode(2).unwrap();
    assert_eq!(h.get("Fb-Credit").unwrap().as_str(), "4096");
    let (_, mut payload) = request(http::HeaderMap::new()).encode(0).unwrap();
    let open = v1::TunnelOpen::decode_length_delimited(&mut payload).unwrap();
    assert!(
        !open.inline_body && payload.is_empty(),
        "data frames follow"
    );
}

#[test]
fn hop_by_hop_headers_do_not_cross() {
    let open = request(http_headers(&[
        ("accept", "*/*"),
        ("connection", "close"),
        ("transfer-encoding", "chunked"),
        ("host", "example"),
    ]));
    let (h, payload) = open.encode(0).unwrap();
    let Ok((_, Frame::Open(back))) = Frame::decode(Some(&h), payload) else {
        panic!("an open frame");
    };
    assert_eq!(back.headers, http_headers(&[("accept", "*/*")]));
    // A peer that sends one anyway breaks the protocol, in any case of the name.
    let mut head = response_head();
    head.headers = vec![header("x-name", b"v"), header("Connection", b"close")];
    assert_eq!(
        arrived_head("head", &head),
        Err(FrameError::BadHead("hop-by-hop header"))
    );
    // Names arrive in any case and are read in lower case.
    head.headers = vec![header("X-Name", "caf\u{e9}".as_bytes())];
    let Ok((_, Frame::Head(back))) = arrived_head("head", &head) else {
        panic!("a head frame");
    };
    assert_eq!(back.headers, http_headers(&[("x-name", "caf\u{e9}")]));
}

#[test]
fn header_values_cross_as_bytes() {
    let mut headers = http::HeaderMap::new();
    let latin1 = http::HeaderValue::from_bytes(b"caf\xe9").unwrap();
    headers.insert("x-latin1", latin1.clone());
    let (h, payload) = request(headers).encode(0).unwrap();
    let Ok((_, Frame::Open(back))) = Frame::decode(Some(&h), payload) else {
        panic!("an open frame");
    };
    assert_eq!(back.headers.get("x-latin1"), Some(&latin1));
}

#[test]
fn malformed_frames_are_typed_errors() {
    use FrameError::{BadHead, BadHeader, NoSeq, UnknownKind};
    assert_eq!(Frame::decode(None, Bytes::new()), Err(UnknownKind));
    let bare = |pairs: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, *value);
        }
        Frame::decode(Some(&h), Bytes::new())
    };
    assert_eq!(bare(&[("Fb-Seq", "0")]), Err(UnknownKind));
    assert_eq!(
        bare(&[("Fb-Kind", "DATA"), ("Fb-Seq", "0")]),
        Err(UnknownKind)
    );
    assert_eq!(bare(&[("Fb-Kind", "data")]), Err(NoSeq));
    for seq in ["-1", "seven", ""] {
        assert_eq!(bare(&[("Fb-Kind", "data"), ("Fb-Seq", seq)]), Err(NoSeq));
    }
    for (kind, extra, header) in [
        ("ready", &[][..], tunnel::UPSTREAM),
        ("credit", &[], tunnel::CREDIT),
        ("credit", &[("Fb-Credit", "lots")], tunnel::CREDIT),
        ("credit", &[("Fb-Credit", "-1")], tunnel::CREDIT),
        ("error", &[("Fb-Error", "x")], tunnel::ERROR_CODE),
        (
            "error",
            &[("Fb-Error-Code", "70000"), ("Fb-Error", "x")],
            tunnel::ERROR_CODE,
        ),
        ("error", &[("Fb-Error-Code", "502")], tunnel::ERROR_MESSAGE),
    ] {
        assert_eq!(
            arrived(kind, extra),
            Err(BadHeader(header)),
            "{kind} {extra:?}"
        );
    }
    assert_eq!(
        arrived("ready", &[("Fb-Upstream", "a b")]),
        Err(BadHead("upstream subject"))
    );
    // Heads that are not protobuf, or cut short.
    for kind in ["open", "head"] {
        assert_eq!(arrived(kind, &[]), Err(BadHead("head")), "{kind}");
        let mut cut = response_head().encode_length_delimited_to_vec();
        cut.pop();
        assert_eq!(
            arrived_with(kind, &[], cut.into()),
            Err(BadHead("head")),
            "{kind}"
        );
    }
    let mut trailing = response_head().encode_length_delimited_to_vec();
    trailing.push(b'x');
    assert_eq!(
        arrived_with("head", &[], trailing.into()),
        Err(BadHead("bytes after a head without a body"))
    );
    let opens: [Spoil<v1::TunnelOpen>; 7] = [
        (|o| o.method = "G E T".into(), "method"),
        (|o| o.path = String::new(), "path"),
        (|o| o.path = "/a\r\nb".into(), "path"),
        (|o| o.request_id = "r\n".into(), "request id"),
        (|o| o.service_account = "a b".into(), "service account"),
        (|o| o.upgrade = "SPDY\r\n".into(), "upgrade"),
        (
            |o| o.headers = vec![header("x-a", b"a\r\nb")],
            "header value",
        ),
    ];
    refused_when_spoiled("open", open_head, &opens);
    let heads: [Spoil<v1::TunnelHead>; 5] = [
        (|h| h.status = 42, "status"),
        (|h| h.status = 70_000, "status"),
        (|h| h.upstream = String::new(), "upstream subject"),
        (|h| h.upstream = "a\r\nPUB b 1".into(), "upstream subject"),
        (
            |h| h.headers = vec![header("bad name", b"v")],
            "header name",
        ),
    ];
    refused_when_spoiled("head", response_head, &heads);
}

/// Each spoiled copy of a valid head is refused, naming what was spoiled.
fn refused_when_spoiled<M: Message + std::fmt::Debug>(
    kind: &str,
    valid: fn() -> M,
    spoils: &[Spoil<M>],
) {
    for (spoil, what) in spoils {
        let mut head = valid();
        spoil(&mut head);
        assert_eq!(
            arrived_head(kind, &head),
            Err(FrameError::BadHead(what)),
            "{head:?}"
        );
    }
}

#[test]
fn what_could_reach_a_log_line_is_refused_both_ways() {
    let open = |path: &str, request_id: &str| {
        let open = Open {
            path: path.into(),
            request_id: request_id.into(),
            ..Open::default()
        };
        Frame::Open(open).encode(0).unwrap_err()
    };
    assert_eq!(open("/a\r\nb", "r"), FrameError::BadHead("path"));
    assert_eq!(open("/", "r\n"), FrameError::BadHead("request id"));
    assert_eq!(open("/", ""), FrameError::BadHead("request id"));
    let head = Frame::Head(Head {
        upstream: "a b".into(),
        ..Head::default()
    });
    assert_eq!(head.encode(0), Err(FrameError::BadHead("upstream subject")));
}

#[test]
fn oversized_headers_are_refused_both_ways() {
    let big = "v".repeat(tunnel::MAX_HEADER_BYTES + 1);
    let head = Frame::Head(Head {
        headers: http_headers(&[("x-big", &big)]),
        upstream: UPSTREAM.into(),
        ..Head::default()
    });
    assert_eq!(head.encode(0), Err(FrameError::HeadersTooLarge));
    let names: Vec<_> = (0..=tunnel::MAX_HEADERS)
        .map(|i| format!("x-{i}"))
        .collect();
    let mut headers = http::HeaderMap::new();
    for name in &names {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        headers.insert(name, http::HeaderValue::from_static("v"));
    }
    assert_eq!(request(headers).encode(0), Err(FrameError::HeadersTooLarge));
    let mut sent = response_head();
    sent.headers = names.iter().map(|name| header(name, b"v")).collect();
    assert_eq!(
        arrived_head("head", &sent),
        Err(FrameError::HeadersTooLarge)
    );
    sent.headers = vec![header("x-big", big.as_bytes())];
    assert_eq!(
        arrived_head("head", &sent),
        Err(FrameError::HeadersTooLarge)
    );
}

#[test]
fn error_messages_stay_on_one_line() {
    let error = Frame::Error {
        code: 502,
        message: "bad\r\nthing".into(),
    };
    let (h, payload) = error.encode(3).unwrap();
    assert_eq!(h.get(tunnel::ERROR_MESSAGE).unwrap().as_str(), "bad  thing");
    let clean = Frame::Error {
        code: 502,
        message: "bad  thing".into(),
    };
    assert_eq!(Frame::decode(Some(&h), payload), Ok((3, clean)));
    // A peer's control characters never reach a terminal.
    let sent = [("Fb-Error-Code", "500"), ("Fb-Error", "a\tb\u{1b}[2J")];
    let Ok((_, Frame::Error { message, .. })) = arrived("error", &sent) else {
        panic!("an error frame");
    };
    assert_eq!(message, "a b [2J");
}
