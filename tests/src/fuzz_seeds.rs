//! Recording the fuzz targets' seed corpus from real traffic (`fleetbus-fuzz-seeds`): every
//! message of a running fleet, seen with the hub's identity (which may subscribe to
//! everything), and every auth-callout request, seen with the callout account's key, sorted
//! into the inputs of the targets in `fuzz/` ([`crate::fuzz_input`]). Tokens are masked before
//! anything is written.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use async_nats::{ConnectOptions, HeaderMap, Message};
use bytes::Bytes;
use fleetbus_nats::callout::AUTH_SUBJECT;
use fleetbus_schema::v1::{
    JoinReply, JoinRequest, RenewReply, RenewRequest, TokenReply, TokenReport,
};
use fleetbus_schema::{ApiEndpoint, ClusterName, HubTopic, Identity, Subjects};
use futures::StreamExt;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::fuzz_input::{SpokeMessage, api_selector, encode_message, encode_selected};
use crate::nats_env::NatsEnv;

/// Seeds kept per kind of message (selector, subject shape), per target.
const PER_KIND: usize = 4;
/// Larger messages make slow seeds; the fuzzer grows inputs itself.
const MAX_SEED: usize = 64 * 1024;
const TOPICS: [HubTopic; 6] = [
    HubTopic::Heartbeat,
    HubTopic::Renew,
    HubTopic::Token,
    HubTopic::Sync,
    HubTopic::Work,
    HubTopic::Manifests,
];

/// What a recorder saw.
#[derive(Default)]
pub struct Recorded {
    /// Messages of the fleet account.
    pub messages: Vec<Message>,
    /// Payloads of `$SYS.REQ.USER.AUTH`.
    pub callouts: Vec<Bytes>,
}

/// Records until [`Recorder::finish`].
pub struct Recorder {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Recorded>,
}

impl Recorder {
    /// Subscribes to everything in `nats`'s fleet and to the auth callout.
    pub async fn start(nats: &NatsEnv) -> anyhow::Result<Self> {
        let everything = nats.connect_as(&Identity::Hub).await?;
        let tls = nats.pki.tls("hub");
        let seed = nats
            .keys
            .callout
            .seed()
            .map_err(|_| anyhow::anyhow!("callout seed"))?;
        let callout = ConnectOptions::with_nkey(seed)
            .require_tls(true)
            .add_root_certificates(tls.ca.clone())
            .add_client_certificate(tls.cert.clone(), tls.key.clone())
            .connect(nats.server.url())
            .await?;
        let mut messages = everything.subscribe(">").await?;
        let mut callouts = callout.subscribe(AUTH_SUBJECT).await?;
        everything.flush().await?;
        callout.flush().await?;
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let mut recorded = Recorded::default();
            loop {
                tokio::select! {
                    () = until.cancelled() => break,
                    Some(m) = messages.next() => recorded.messages.push(m),
                    Some(m) = callouts.next() => recorded.callouts.push(m.payload),
                }
            }
            recorded
        });
        Ok(Self { stop, task })
    }

    /// Stops and hands over what was seen.
    pub async fn finish(self) -> Recorded {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

/// Seeds by target, each with the kind it was kept as.
#[derive(Default)]
pub struct Seeds(BTreeMap<&'static str, Vec<(String, Vec<u8>)>>);

impl Seeds {
    /// Adds a seed unless its kind is full or it is a duplicate.
    pub fn add(&mut self, target: &'static str, kind: impl Into<String>, data: Vec<u8>) {
        let kind = kind.into();
        let seeds = self.0.entry(target).or_default();
        let full = seeds.iter().filter(|(k, _)| *k == kind).count() >= PER_KIND;
        if data.len() <= MAX_SEED && !full && !seeds.iter().any(|(_, d)| *d == data) {
            seeds.push((kind, data));
        }
    }

    /// Writes each seed to `out/<target>/<digest>`; returns how many per target.
    pub fn write(&self, out: &Path) -> std::io::Result<Vec<(&'static str, usize)>> {
        let mut counts = Vec::new();
        for (target, seeds) in &self.0 {
            let dir = out.join(target);
            std::fs::create_dir_all(&dir)?;
            for (_, data) in seeds {
                let name = &fleetbus_schema::manifests::digest_bytes(data)[..16];
                std::fs::write(dir.join(name), data)?;
            }
            counts.push((*target, seeds.len()));
        }
        Ok(counts)
    }
}

/// What a request subject was, so its reply can be sorted too.
#[derive(Clone, Copy)]
enum Asked {
    Api(ApiEndpoint),
    Spoke(SpokeMessage),
}

/// Sorts what was recorded into seeds.
pub fn sort(recorded: &Recorded, subjects: &Subjects, seeds: &mut Seeds) {
    let mut asked: HashMap<String, Asked> = HashMap::new();
    for m in &recorded.messages {
        let subject = m.subject.as_str();
        seeds.add("subjects", shape(subject), subject.as_bytes().to_vec());
        if let Some(reply) = &m.reply {
            seeds.add("subjects", shape(reply), reply.as_bytes().to_vec());
        }
        let frame = m.headers.as_ref().and_then(|h| h.get("Fb-Kind"));
        if let Some(kind) = frame {
            let headers = m.headers.as_ref().map(masked);
            let data = encode_message(headers.as_ref(), &m.payload);
            seeds.add("tunnel_frame", kind.as_str().to_owned(), data);
            continue;
        }
        if subject.starts_with(&format!("{}.audit.", subjects.prefix())) {
            let data = encode_message(m.headers.as_ref(), &m.payload);
            seeds.add("audit_event", shape(subject), data);
            continue;
        }
        let reply_to = asked.get(subject).copied();
        let this = reply_to.map(replied).or_else(|| request(subjects, subject));
        match this {
            Some(Asked::Api(endpoint)) => {
                let reply = reply_to.is_some();
                let payload = mask_api(endpoint, reply, &m.payload);
                let selector = api_selector(endpoint, reply);
                seeds.add(
                    "hub_api",
                    selector.to_string(),
                    encode_selected(selector, &payload),
                );
            }
            Some(Asked::Spoke(message)) => {
                let payload = mask_spoke(message, &m.payload);
                certificates(message, &payload, seeds);
                let selector = message.selector();
                let data = encode_selected(selector, &payload);
                seeds.add("spoke_topics", selector.to_string(), data);
            }
            None => {}
        }
        if let (Some(reply), None) = (&m.reply, reply_to)
            && let Some(what) = this
        {
            asked.insert(reply.to_string(), what);
        }
    }
    for payload in &recorded.callouts {
        seeds.add("callout_request", "request", payload.to_vec());
        if let Ok(request) = fleetbus_nats::jwt::decode_auth_request(payload)
            && let Some(pem) = request.client_cert_pem
        {
            seeds.add("certificate", "client", pem.into_bytes());
        }
    }
}

/// The request a subject carries, if it is one of fleetbus's.
fn request(subjects: &Subjects, subject: &str) -> Option<Asked> {
    if subject == subjects.join() {
        return Some(Asked::Spoke(SpokeMessage::JoinRequest));
    }
    if let Some(cluster) = subjects.hub_sender(subject) {
        let topic = TOPICS
            .into_iter()
            .find(|t| subjects.hub(&cluster, *t) == subject)?;
        return Some(Asked::Spoke(SpokeMessage::on(topic, false)));
    }
    if let Some(cluster) = subject
        .strip_prefix(&format!("{}.spoke.", subjects.prefix()))
        .and_then(|rest| ClusterName::new(rest.split('.').next()?).ok())
        && subjects.spoke_changed(&cluster) == subject
    {
        return Some(Asked::Spoke(SpokeMessage::ChangeNotice));
    }
    let user = subjects.api_caller(subject)?;
    ApiEndpoint::ALL
        .into_iter()
        .find(|e| subjects.api(&user, *e) == subject)
        .map(Asked::Api)
}

fn replied(asked: Asked) -> Asked {
    match asked {
        Asked::Api(e) => Asked::Api(e),
        Asked::Spoke(SpokeMessage::JoinRequest) => Asked::Spoke(SpokeMessage::JoinReply),
        Asked::Spoke(SpokeMessage::RenewRequest) => Asked::Spoke(SpokeMessage::RenewReply),
        Asked::Spoke(SpokeMessage::SyncRequest) => Asked::Spoke(SpokeMessage::DesiredState),
        Asked::Spoke(SpokeMessage::ManifestsChunkRequest) => {
            Asked::Spoke(SpokeMessage::ManifestsChunk)
        }
        Asked::Spoke(_) => Asked::Spoke(SpokeMessage::Ack),
    }
}

/// CSRs and certificates inside join and renewal messages.
fn certificates(message: SpokeMessage, payload: &[u8], seeds: &mut Seeds) {
    let pem = match message {
        SpokeMessage::JoinRequest => JoinRequest::decode(payload).map(|m| m.csr_pem).ok(),
        SpokeMessage::RenewRequest => RenewRequest::decode(payload).map(|m| m.csr_pem).ok(),
        SpokeMessage::JoinReply => JoinReply::decode(payload).map(|m| m.certificate_pem).ok(),
        SpokeMessage::RenewReply => RenewReply::decode(payload).map(|m| m.certificate_pem).ok(),
        _ => None,
    };
    if let Some(pem) = pem.filter(|p| !p.is_empty()) {
        seeds.add("certificate", format!("{message:?}"), pem.into_bytes());
    }
}

/// A subject's kind: the subject with its random tokens (inbox ids, request ids) as `*`.
fn shape(subject: &str) -> String {
    subject
        .split('.')
        .map(|t| if t.len() >= 16 { "*" } else { t })
        .collect::<Vec<_>>()
        .join(".")
}

/// Service-account tokens replaced by `x`s of the same length.
fn mask(token: &str) -> String {
    "x".repeat(token.len())
}

fn mask_api(endpoint: ApiEndpoint, reply: bool, payload: &[u8]) -> Vec<u8> {
    match (endpoint, reply) {
        (ApiEndpoint::TokenGet, true) => match TokenReply::decode(payload) {
            Ok(mut m) => {
                m.token = mask(&m.token);
                m.encode_to_vec()
            }
            Err(_) => Vec::new(),
        },
        _ => payload.to_vec(),
    }
}

fn mask_spoke(message: SpokeMessage, payload: &[u8]) -> Vec<u8> {
    match message {
        SpokeMessage::TokenReport => match TokenReport::decode(payload) {
            Ok(mut m) => {
                m.token = mask(&m.token);
                m.encode_to_vec()
            }
            Err(_) => Vec::new(),
        },
        _ => payload.to_vec(),
    }
}

/// Frame headers with credentials masked.
fn masked(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, values) in headers.iter() {
        let secret = name
            .to_string()
            .to_ascii_lowercase()
            .contains("authorization");
        for value in values {
            let text = value.as_str();
            let clean = match text.strip_prefix("Bearer ") {
                Some(token) => format!("Bearer {}", mask(token)),
                None if secret => mask(text),
                None => text.to_owned(),
            };
            if let Ok(v) = clean.parse::<async_nats::HeaderValue>() {
                out.append(name.clone(), v);
            }
        }
    }
    out
}
