//! Frames round-trip, the wire format is pinned, and malformed input is a typed error.

use super::*;

fn http_headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (name, value) in pairs {
        h.append(*name, value.parse().unwrap());
    }
    h
}

fn raw(pairs: &[(&str, &str)]) -> Result<(u64, Frame), FrameError> {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(*name, *value);
    }
    Frame::decode(Some(&h), Bytes::from_static(b"payload"))
}

/// A frame of `kind`, number 0, with `extra` headers, as it arrives.
fn arrived(kind: &str, extra: &[(&str, &str)]) -> Result<(u64, Frame), FrameError> {
    raw(&[&[("Fb-Kind", kind), ("Fb-Seq", "0")], extra].concat())
}

const UPSTREAM: &str = "fleet.kapi.c1.alice.r.s";

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
    let (h, payload) = every_kind()[0].encode(0).unwrap();
    let get = |name: &str| h.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(get("Fb-Kind").as_deref(), Some("open"));
    assert_eq!(get("Fb-Seq").as_deref(), Some("0"));
    assert_eq!(get("Fb-Method").as_deref(), Some("POST"));
    assert_eq!(get("Fb-Body").as_deref(), Some("inline"));
    assert_eq!(get("Fb-Request-Id").as_deref(), Some("req-1"));
    assert_eq!(get("Fb-H-accept").as_deref(), Some("application/json"));
    assert_eq!(h.get_all("Fb-H-x-multi").count(), 2);
    assert_eq!(payload, "{}");
    let (h, payload) = every_kind()[3].encode(1).unwrap();
    assert_eq!(h.get("Fb-Status").unwrap().as_str(), "404");
    assert_eq!(h.get("Fb-Complete").unwrap().as_str(), "true");
    assert_eq!(h.get("Fb-Upstream").unwrap().as_str(), UPSTREAM);
    assert_eq!(payload, "not found");
    let (h, _) = Frame::Credit(4096).encode(2).unwrap();
    assert_eq!(h.get("Fb-Credit").unwrap().as_str(), "4096");
    let (h, _) = Frame::Open(Open::default()).encode(0).unwrap();
    assert_eq!(h.get("Fb-Body").unwrap().as_str(), "stream");
}

#[test]
fn hop_by_hop_headers_do_not_cross() {
    let open = Frame::Open(Open {
        headers: http_headers(&[
            ("accept", "*/*"),
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("host", "example"),
        ]),
        ..Open::default()
    });
    let (h, payload) = open.encode(0).unwrap();
    let Ok((_, Frame::Open(back))) = Frame::decode(Some(&h), payload) else {
        panic!("an open frame");
    };
    assert_eq!(back.headers, http_headers(&[("accept", "*/*")]));
    // Nor when a peer sends them anyway; the prefix is matched in any case.
    let sent = [
        ("Fb-Status", "200"),
        ("Fb-Upstream", "u"),
        ("Fb-H-Connection", "close"),
        ("fb-h-x-name", "caf\u{e9}"),
    ];
    let Ok((_, Frame::Head(head))) = arrived("head", &sent) else {
        panic!("a head frame");
    };
    assert_eq!(head.headers, http_headers(&[("x-name", "caf\u{e9}")]));
}

#[test]
fn malformed_frames_are_typed_errors() {
    use FrameError::{BadHeader, NoSeq, UnknownKind};
    assert_eq!(Frame::decode(None, Bytes::new()), Err(UnknownKind));
    assert_eq!(raw(&[("Fb-Seq", "0")]), Err(UnknownKind));
    assert_eq!(
        raw(&[("Fb-Kind", "DATA"), ("Fb-Seq", "0")]),
        Err(UnknownKind)
    );
    assert_eq!(raw(&[("Fb-Kind", "data")]), Err(NoSeq));
    for seq in ["-1", "seven", ""] {
        assert_eq!(raw(&[("Fb-Kind", "data"), ("Fb-Seq", seq)]), Err(NoSeq));
    }
    let up = ("Fb-Upstream", "u");
    let open = [
        ("Fb-Method", "GET"),
        ("Fb-Path", "/"),
        ("Fb-Request-Id", "r"),
    ];
    for (kind, extra, header) in [
        ("head", &[up][..], tunnel::STATUS),
        ("head", &[up, ("Fb-Status", "ok")], tunnel::STATUS),
        ("head", &[up, ("Fb-Status", "42")], tunnel::STATUS),
        ("head", &[("Fb-Status", "200")], tunnel::UPSTREAM),
        ("ready", &[], tunnel::UPSTREAM),
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
        ("open", &open[1..], tunnel::METHOD),
        ("open", &open, tunnel::BODY),
        (
            "open",
            &[&open[..], &[("Fb-Body", "maybe")]].concat(),
            tunnel::BODY,
        ),
    ] {
        assert_eq!(
            arrived(kind, extra),
            Err(BadHeader(header)),
            "{kind} {extra:?}"
        );
    }
}

#[test]
fn values_nats_cannot_carry_are_refused() {
    let open = |path: &str, request_id: &str| {
        let open = Open {
            path: path.into(),
            request_id: request_id.into(),
            ..Open::default()
        };
        Frame::Open(open).encode(0).unwrap_err()
    };
    assert_eq!(open("/a\r\nb", "r"), FrameError::BadHeader(tunnel::PATH));
    assert_eq!(open("/", "r\n"), FrameError::BadHeader(tunnel::REQUEST_ID));
}

#[test]
fn oversized_headers_are_refused_both_ways() {
    let big = "v".repeat(tunnel::MAX_HEADER_BYTES + 1);
    let head = Frame::Head(Head {
        headers: http_headers(&[("x-big", &big)]),
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
    let open = Frame::Open(Open {
        headers,
        ..Open::default()
    });
    assert_eq!(open.encode(0), Err(FrameError::HeadersTooLarge));
    let names: Vec<_> = names.iter().map(|name| format!("Fb-H-{name}")).collect();
    let mut sent = vec![("Fb-Status", "200"), ("Fb-Upstream", "u")];
    sent.extend(names.iter().map(|name| (name.as_str(), "v")));
    assert_eq!(arrived("head", &sent), Err(FrameError::HeadersTooLarge));
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
