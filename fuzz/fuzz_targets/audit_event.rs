//! Audit events as an auditor reads them from the stream (CloudEvents headers and the
//! protobuf body), then formatted as `fleetbus audit tail` prints them. Input: a NATS message
//! (`fleetbus_tests::fuzz_input::decode_message`).

#![no_main]

use fleetbus_cli::audit::{json_line, text_line};
use fleetbus_nats::audit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (headers, payload) = fleetbus_tests::fuzz_input::decode_message(data);
    if let Ok(read) = audit::read("fleet.audit.fuzz", headers.as_ref(), &payload) {
        text_line(&read);
        let _ = serde_json::to_string(&json_line(&read));
        audit::ce_headers(&read.event, &read.source);
    }
});
