//! Messages between spoke and hub outside the hub API (join, heartbeat, renewal, token sync,
//! desired state, work status, manifest chunks), each decoded and used as its receiver uses
//! it: the hub's liveness and CSR checks, the spoke's handling of desired works (digest,
//! manifests parsed, apply order, status with feedback rules) and of token refresh times.
//! Input: a selector byte (`fleetbus_tests::fuzz_input::SpokeMessage`), then the payload.

#![no_main]

use std::time::Duration;

use fleetbus_hub::liveness::Liveness;
use fleetbus_nats::pki;
use fleetbus_schema::v1::*;
use fleetbus_schema::{ClusterName, chunks, manifests};
use fleetbus_spoke::work::status::{self, Live};
use fleetbus_spoke::work::{apply, order};
use fleetbus_tests::fuzz_input::SpokeMessage as M;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use serde_json::Value;

const NOW: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    match M::from_selector(selector) {
        M::JoinRequest => {
            if let Ok(r) = JoinRequest::decode(payload) {
                let _ = ClusterName::new(r.cluster_name);
                let _ = pki::csr_key_fingerprint(&r.csr_pem);
            }
        }
        M::JoinReply => {
            if let Ok(r) = JoinReply::decode(payload) {
                let _ = r.status();
                let _ = pki::inspect(&r.certificate_pem);
            }
        }
        M::Heartbeat => {
            if let Ok(beat) = Heartbeat::decode(payload) {
                let liveness = Liveness::new(Duration::from_secs(5));
                let cluster = ClusterName::new("cluster1").unwrap_or_else(|_| unreachable!());
                liveness.heartbeat(&cluster, &beat, NOW);
                let record = ClusterRecord {
                    name: "cluster1".into(),
                    acceptance: Acceptance::Accepted as i32,
                    ..Default::default()
                };
                liveness.conditions(&record);
            }
        }
        M::RenewRequest => {
            if let Ok(r) = RenewRequest::decode(payload) {
                let _ = pki::csr_key_fingerprint(&r.csr_pem);
            }
        }
        M::RenewReply => {
            if let Ok(r) = RenewReply::decode(payload) {
                let _ = pki::inspect(&r.certificate_pem).map(|i| i.renew_at_ms(0.77));
            }
        }
        M::TokenReport => drop(TokenReport::decode(payload)),
        M::SyncRequest => drop(SyncRequest::decode(payload)),
        M::ChangeNotice => drop(ChangeNotice::decode(payload)),
        M::Ack => drop(WorkStatusAck::decode(payload)),
        M::WorkStatusReport => drop(WorkStatusReport::decode(payload)),
        M::DesiredState => {
            if let Ok(desired) = DesiredState::decode(payload) {
                for msa in &desired.service_accounts {
                    let s = msa.status.clone().unwrap_or_default();
                    fleetbus_spoke::tokens::refresh_delay(
                        NOW,
                        s.last_refresh_ms,
                        s.expiration_ms,
                        0.8,
                    );
                }
                for work in &desired.works {
                    if let Some(m) = &work.manifests {
                        on_spoke(work, m);
                    }
                }
            }
        }
        M::ManifestsChunkRequest => {
            if let Ok(r) = ManifestsChunkRequest::decode(payload) {
                let _ = fleetbus_hub::work_spec::names("cluster1", &r.name);
                let offset = usize::try_from(r.offset).unwrap_or(usize::MAX);
                chunks::at(payload, offset);
            }
        }
        M::ManifestsChunk => {
            if let Ok(chunk) = ManifestsChunk::decode(payload)
                && let Ok(m) = Manifests::decode(chunk.data.as_slice())
            {
                on_spoke(&ManifestWork::default(), &m);
            }
        }
    }
});

/// What the spoke does with a work's manifests before it talks to its apiserver.
fn on_spoke(work: &ManifestWork, m: &Manifests) {
    manifests::digest(m);
    let objects: Vec<Value> = m
        .objects
        .iter()
        .map(|raw| serde_json::from_slice(raw).unwrap_or(Value::Null))
        .collect();
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o.get("kind").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let rules: Vec<FeedbackRule> = work
        .manifest_configs
        .iter()
        .flat_map(|c| c.feedback_rules.clone())
        .collect();
    for i in order::apply_order(&kinds) {
        let meta = apply::declared_meta(&objects[i], i);
        let live = Live::Present(objects[i].clone());
        let condition = status::manifest(meta, &Ok(()), &live, &rules, None, NOW);
        let mut conditions = Vec::new();
        status::work(&mut conditions, &[condition], NOW);
    }
}
