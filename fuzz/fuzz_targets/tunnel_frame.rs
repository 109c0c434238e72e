//! Kubernetes API tunnel frames as they arrive (`fleetbus_nats::tunnel`): the frame's kind and
//! sequence number, its string headers, and the HTTP headers it carries, which must come out
//! the same after being put into a frame again. Input: a NATS message
//! (`fleetbus_tests::fuzz_input::decode_message`).

#![no_main]

use fleetbus_nats::tunnel::{Frame, SeqCheck, put_http_headers, take_http_headers};
use fleetbus_schema::tunnel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (headers, payload) = fleetbus_tests::fuzz_input::decode_message(data);
    if let Ok(frame) = Frame::parse(headers.as_ref(), payload) {
        let _ = SeqCheck::default().check(frame.seq);
        for name in [tunnel::METHOD, tunnel::PATH, tunnel::STATUS, tunnel::CREDIT] {
            let _ = frame.header(name).map(|v| v.parse::<u64>());
        }
    }
    let Some(headers) = headers else {
        return;
    };
    if let Ok(http) = take_http_headers(&headers) {
        let mut again = async_nats::HeaderMap::new();
        if put_http_headers(&mut again, &http).is_ok() {
            // Every value take_http_headers accepts (UTF-8, as NATS headers carry it) comes
            // back unchanged.
            assert_eq!(take_http_headers(&again).ok(), Some(http));
        }
    }
});
