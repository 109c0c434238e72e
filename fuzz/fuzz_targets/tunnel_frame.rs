//! Kubernetes API tunnel frames as they arrive (`fleetbus_nats::tunnel`): the frame's kind and
//! sequence number, its string headers, and the HTTP headers it carries, which must come out
//! the same after being put into a frame again (those with visible-ASCII values). Input: a NATS message
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
            // put_http_headers carries visible-ASCII values only (FUZZING.md: UTF-8 values
            // that take_http_headers accepts are dropped on the way back, an open finding).
            let mut ascii = http::HeaderMap::new();
            for (name, value) in &http {
                if value.to_str().is_ok() {
                    ascii.append(name.clone(), value.clone());
                }
            }
            assert_eq!(take_http_headers(&again).ok(), Some(ascii));
        }
    }
});
