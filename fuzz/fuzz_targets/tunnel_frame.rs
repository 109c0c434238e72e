//! Kubernetes API tunnel frames as they arrive (`fleetbus_nats::tunnel::Frame`): whatever
//! decodes encodes again and decodes to the same frame (HTTP headers included), so both ends
//! read every frame alike. Input: a NATS message (`fleetbus_tests::fuzz_input::decode_message`).

#![no_main]

use fleetbus_nats::tunnel::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (headers, payload) = fleetbus_tests::fuzz_input::decode_message(data);
    let Ok((seq, frame)) = Frame::decode(headers.as_ref(), payload) else {
        return;
    };
    let again = frame.encode(seq).map(|(h, p)| Frame::decode(Some(&h), p));
    assert_eq!(again, Ok(Ok((seq, frame))));
});
