//! Registration, OCM's double opt-in: a spoke asks to join with its bootstrap identity and a
//! CSR; the admin accepts or denies; the hub signs a `spoke:<cluster>` certificate that the
//! spoke collects with its next join request. Accepted spokes renew their certificate on their
//! own subject.

use std::sync::Arc;
use std::time::Duration;

use fleetbus_nats::pki::{self, Ca};
use fleetbus_schema::v1::{
    Acceptance, ClusterRecord, JoinReply, JoinRequest, JoinStatus, RenewReply, RenewRequest,
};
use fleetbus_schema::{ClusterName, Identity};

use fleetbus_nats::audit::Auditor;
use fleetbus_schema::v1::AuditEvent;

use crate::error::ApiError;
use crate::store::{Action, ClusterStore, StoreError};

/// Signs spoke certificates with the fleet CA.
pub struct Signer {
    ca: Ca,
    validity: Duration,
}

impl Signer {
    /// A signer issuing certificates valid for `validity`.
    pub fn new(ca: Ca, validity: Duration) -> Self {
        Self { ca, validity }
    }

    /// Signs `csr_pem` for `cluster`; returns the certificate and its expiry (Unix ms).
    pub fn sign(
        &self,
        csr_pem: &str,
        cluster: &ClusterName,
    ) -> Result<(String, i64), pki::PkiError> {
        let cert = self
            .ca
            .sign_csr(csr_pem, &Identity::Spoke(cluster.clone()), self.validity)?;
        let not_after = pki::inspect(&cert)?.not_after_ms;
        Ok((cert, not_after))
    }
}

/// Handles one join request; sets `created` when it registered a new cluster.
pub async fn join(
    store: &ClusterStore,
    signer: &Arc<Signer>,
    request: JoinRequest,
    created: &mut bool,
) -> JoinReply {
    let reply = |status: JoinStatus, message: String| JoinReply {
        status: status as i32,
        message,
        certificate_pem: String::new(),
    };
    let name = match ClusterName::new(request.cluster_name.as_str()) {
        Ok(name) => name,
        Err(e) => return reply(JoinStatus::Rejected, e.to_string()),
    };
    let fingerprint = match pki::csr_key_fingerprint(&request.csr_pem) {
        Ok(fp) => fp,
        Err(e) => return reply(JoinStatus::Rejected, e.to_string()),
    };
    let claims = request.claims.unwrap_or_default();
    let now = now_ms();
    let outcome = store
        .update(&name, |current| -> Result<_, StoreError> {
            *created = false;
            let Some(mut record) = current else {
                let record = ClusterRecord {
                    name: name.to_string(),
                    acceptance: Acceptance::Pending as i32,
                    claims: Some(claims.clone()),
                    csr_pem: request.csr_pem.clone(),
                    key_fingerprint: fingerprint.clone(),
                    created_ms: now,
                    ..Default::default()
                };
                *created = true;
                return Ok((Action::Put(Box::new(record.clone())), record));
            };
            if record.key_fingerprint != fingerprint {
                return Ok((Action::Keep, record));
            }
            if record.acceptance() == Acceptance::Pending && record.claims.as_ref() != Some(&claims)
            {
                record.claims = Some(claims.clone());
                return Ok((Action::Put(Box::new(record.clone())), record));
            }
            Ok((Action::Keep, record))
        })
        .await;
    let record = match outcome {
        Ok(record) => record,
        Err(e) => {
            return reply(
                JoinStatus::Pending,
                format!("hub state unavailable, retrying: {e}"),
            );
        }
    };
    if record.key_fingerprint != fingerprint {
        return reply(
            JoinStatus::Rejected,
            format!(
                "cluster name {name} is registered with a different key; an admin must run `fleetbus delete cluster {name}` before it can join again"
            ),
        );
    }
    match record.acceptance() {
        Acceptance::Accepted => accepted_reply(store, signer, &name, record).await,
        Acceptance::Denied => reply(
            JoinStatus::Denied,
            format!("the hub admin denied cluster {name}"),
        ),
        _ => reply(
            JoinStatus::Pending,
            format!("waiting for the hub admin: fleetbus accept {name}"),
        ),
    }
}

/// An accepted cluster gets its certificate; if the stored one is missing (accept raced with
/// this join) it is signed now.
async fn accepted_reply(
    store: &ClusterStore,
    signer: &Arc<Signer>,
    name: &ClusterName,
    record: ClusterRecord,
) -> JoinReply {
    let mut certificate_pem = record.certificate_pem;
    if certificate_pem.is_empty() {
        match issue(store, signer, name).await {
            Ok(cert) => certificate_pem = cert,
            Err(e) => {
                return JoinReply {
                    status: JoinStatus::Pending as i32,
                    message: format!("accepted, but the certificate could not be issued yet: {e}"),
                    certificate_pem: String::new(),
                };
            }
        }
    }
    JoinReply {
        status: JoinStatus::Accepted as i32,
        message: format!("cluster {name} is accepted"),
        certificate_pem,
    }
}

/// Signs the stored CSR of an accepted cluster and stores the certificate.
pub async fn issue(
    store: &ClusterStore,
    signer: &Signer,
    name: &ClusterName,
) -> Result<String, ApiError> {
    store
        .update(name, |current| {
            let mut record = current.ok_or_else(|| not_registered(name))?;
            let (cert, not_after) = signer
                .sign(&record.csr_pem, name)
                .map_err(|e| ApiError::conflict(format!("cannot sign the CSR of {name}: {e}")))?;
            record.certificate_pem = cert.clone();
            record.certificate_not_after_ms = not_after;
            Ok((Action::Put(Box::new(record)), cert))
        })
        .await
}

/// Handles a renewal from an accepted spoke: signs its new key and remembers the old one until
/// the next renewal, so a spoke that crashes mid-rotation can still connect.
pub async fn renew(
    store: &ClusterStore,
    signer: &Signer,
    cluster: &ClusterName,
    request: RenewRequest,
) -> Result<RenewReply, ApiError> {
    let fingerprint = pki::csr_key_fingerprint(&request.csr_pem)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    store
        .update(cluster, |current| {
            let mut record = current.ok_or_else(|| not_registered(cluster))?;
            if record.acceptance() != Acceptance::Accepted {
                return Err(ApiError::conflict(format!(
                    "cluster {cluster} is not accepted"
                )));
            }
            let (cert, not_after) = signer
                .sign(&request.csr_pem, cluster)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            if record.key_fingerprint != fingerprint {
                record.previous_key_fingerprint =
                    std::mem::replace(&mut record.key_fingerprint, fingerprint.clone());
            }
            record.csr_pem = request.csr_pem.clone();
            record.certificate_pem = cert.clone();
            record.certificate_not_after_ms = not_after;
            Ok((
                Action::Put(Box::new(record)),
                RenewReply {
                    certificate_pem: cert,
                },
            ))
        })
        .await
}

/// The audit event of a join request.
fn join_event(cluster: &str, reply: &JoinReply) -> AuditEvent {
    let rejected = reply.status() == JoinStatus::Rejected;
    AuditEvent {
        actor: Identity::Bootstrap.to_string(),
        cluster: cluster.to_owned(),
        kind: "join".into(),
        action: "request".into(),
        object: format!("cluster/{cluster}"),
        outcome: if rejected { "failure" } else { "success" }.into(),
        code: if rejected { 400 } else { 202 },
        message: reply.message.clone(),
        ..Default::default()
    }
}

/// The audit event of a certificate the hub signed for a spoke.
pub fn cert_event(cluster: &ClusterName, action: &str, not_after_ms: i64) -> AuditEvent {
    AuditEvent {
        actor: Identity::Hub.to_string(),
        cluster: cluster.to_string(),
        kind: "cert".into(),
        action: action.into(),
        object: Identity::Spoke(cluster.clone()).to_string(),
        outcome: "success".into(),
        code: 200,
        message: format!(
            "valid until {}",
            fleetbus_nats::audit::rfc3339(not_after_ms)
        ),
        ..Default::default()
    }
}

/// 404 for a cluster that never asked to join.
pub fn not_registered(name: &ClusterName) -> ApiError {
    ApiError::not_found(format!("cluster {name} has not asked to join"))
}

/// Now as Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Serves `<prefix>.join` (queue group: one replica answers each request).
pub async fn serve_join(
    client: async_nats::Client,
    store: ClusterStore,
    signer: Arc<Signer>,
    audit: Auditor,
    subjects: fleetbus_schema::Subjects,
    tracker: tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    use prost::Message;
    let mut requests = client
        .queue_subscribe(subjects.join(), "fleetbus-hub".into())
        .await?;
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => break,
            msg = requests.next() => match msg { Some(m) => m, None => break },
        };
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let (client, store, signer, audit) =
            (client.clone(), store.clone(), signer.clone(), audit.clone());
        let id = fleetbus_nats::request_id::of(msg.headers.as_ref());
        let decoded = fleetbus_schema::decode::<JoinRequest>(&msg.subject, &msg.payload);
        let named = decoded.as_ref().ok();
        let span = match named.and_then(|r| ClusterName::new(r.cluster_name.as_str()).ok()) {
            Some(cluster) => {
                tracing::info_span!("join", %cluster, subject = %msg.subject, request_id = %id)
            }
            None => tracing::info_span!("join", subject = %msg.subject, request_id = %id),
        };
        let handled = async move {
            let reply = match decoded {
                Ok(request) => {
                    let cluster = request.cluster_name.clone();
                    let mut created = false;
                    let reply = join(&store, &signer, request, &mut created).await;
                    tracing::info!(status = ?reply.status(), "join request");
                    // One event per registration or refusal, not per poll of a pending spoke.
                    if created || reply.status() == JoinStatus::Rejected {
                        audit.emit(join_event(&cluster, &reply)).await;
                    }
                    reply
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rejected join request");
                    let reply = JoinReply {
                        status: JoinStatus::Rejected as i32,
                        message: e.to_string(),
                        certificate_pem: String::new(),
                    };
                    audit.emit(join_event("", &reply)).await;
                    reply
                }
            };
            crate::error::respond(&client, reply_to, Ok(reply.encode_to_vec().into())).await;
        };
        let handled = fleetbus_nats::request_id::scope(id, handled);
        tracker.spawn(tracing::Instrument::instrument(handled, span));
    }
    Ok(())
}
