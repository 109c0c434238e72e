//! The hub API's user endpoints (`<prefix>.api.<user>.<resource>.<verb>`; the service itself is
//! in [`crate::service`]). The caller is the user token of the subject, which nats-server only
//! lets that user publish to.

use std::sync::Arc;

use async_nats::service;
use bytes::Bytes;
use fleetbus_nats::audit::Auditor;
use fleetbus_nats::{request_id, system};
use fleetbus_schema::v1::{
    Acceptance, AuditEvent, Cluster, ClusterList, ClusterNames, CreateWorkRequest, Credential,
    CredentialList, Empty, Grant, ListClustersRequest, ManagedServiceAccount, MsaListRequest,
    MsaRef, UploadChunk, WhoAmIReply, WorkListRequest, WorkRef,
};
use fleetbus_schema::{ApiEndpoint, ClusterName, Identity, Subjects, UserName, decode};
use futures::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::error::ApiError;
use crate::liveness::Liveness;
use crate::msa::MsaService;
use crate::registration::{Signer, not_registered, now_ms};
use crate::service::Call;
use crate::store::{Action, ClusterStore};

/// Cluster decisions of one request carried out concurrently.
const DECISIONS_IN_FLIGHT: usize = 32;

/// Everything the API handlers need.
pub struct Api {
    /// Cluster records.
    pub store: ClusterStore,
    /// Managed service accounts, tokens and grants.
    pub msa: MsaService,
    /// ManifestWorks.
    pub works: crate::work::WorkService,
    /// Cluster sets, labels, Placements and ManifestWorkReplicaSets.
    pub placements: crate::placement::PlacementService,
    /// Signs spoke certificates on accept.
    pub signer: Arc<Signer>,
    /// Live availability.
    pub liveness: Arc<Liveness>,
    /// System-account connection, to close revoked connections.
    pub sys: async_nats::Client,
    /// Subjects of this fleet.
    pub subjects: Subjects,
    /// Users with admin rights.
    pub admins: Vec<UserName>,
    /// Audit events.
    pub audit: Auditor,
    /// Request counters and latencies.
    pub metrics: std::sync::Arc<fleetbus_nats::ops::Metrics>,
    /// Auditors' durable audit subscriptions.
    pub durables: crate::durables::Durables,
}

impl Api {
    /// Serves the API on `client` until `shutdown`.
    pub async fn serve(
        self: Arc<Self>,
        client: async_nats::Client,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let crate::service::Served {
            service,
            mut requests,
        } = crate::service::start(&client, &self.subjects).await?;
        loop {
            let (call, request) = tokio::select! {
                () = shutdown.cancelled() => break,
                next = requests.next() => match next { Some(r) => r, None => break },
            };
            let api = self.clone();
            tracker.spawn(async move {
                match call {
                    Call::User(endpoint) => api.handle(endpoint, request).await,
                    Call::Auditor(endpoint) => api.durables.handle(endpoint, request).await,
                }
            });
        }
        let _ = service.stop().await;
        Ok(())
    }

    /// One call in its span (`subject`, `cluster`, `request_id`), under the caller's request id
    /// (a fresh one when it sent none or a malformed one), which its audit events carry.
    async fn handle(&self, endpoint: ApiEndpoint, request: service::Request) {
        let subject = request.message.subject.to_string();
        let id = request_id::of(request.message.headers.as_ref());
        let (cluster, object) = crate::audit_object::describe(endpoint, &request.message.payload);
        let span = if cluster.is_empty() {
            tracing::info_span!("api", %subject, request_id = %id)
        } else {
            tracing::info_span!("api", %subject, %cluster, request_id = %id)
        };
        let described = (cluster, object);
        request_id::scope(id, self.answer(endpoint, request, subject, described))
            .instrument(span)
            .await;
    }

    async fn answer(
        &self,
        endpoint: ApiEndpoint,
        request: service::Request,
        subject: String,
        (cluster, object): (String, String),
    ) {
        let started = std::time::Instant::now();
        let caller = self.subjects.api_caller(&subject);
        let result = match &caller {
            Some(caller) => {
                self.dispatch(endpoint, caller, &subject, &request.message.payload)
                    .await
            }
            None => Err(ApiError::bad_request("no caller in subject")),
        };
        match &result {
            Ok(_) => tracing::info!(endpoint = %endpoint.name(), %subject, "api call"),
            Err(e) => {
                tracing::info!(endpoint = %endpoint.name(), %subject, code = e.code, error = %e, "api call refused")
            }
        }
        let code = match &result {
            Ok(_) => 200,
            Err(e) => e.code,
        };
        let endpoint_name = endpoint.name();
        let code_text = code.to_string();
        let labels = [
            ("endpoint", endpoint_name.as_str()),
            ("code", code_text.as_str()),
        ];
        self.metrics
            .add("fleetbus_hub_api_requests_total", &labels, 1.0);
        let latency = started.elapsed().as_secs_f64();
        self.metrics.add(
            "fleetbus_hub_api_latency_seconds_sum",
            &labels[..1],
            latency,
        );
        self.metrics
            .add("fleetbus_hub_api_latency_seconds_count", &labels[..1], 1.0);
        let (kind, action) = endpoint.audit_type();
        let (outcome, code, message) = match &result {
            Ok(_) => ("success", 200, String::new()),
            Err(e) if e.code == 403 => ("denied", 403, e.message.clone()),
            Err(e) => ("failure", i32::from(e.code), e.message.clone()),
        };
        self.audit
            .emit(AuditEvent {
                actor: caller
                    .map(|c| Identity::User(c).to_string())
                    .unwrap_or_default(),
                cluster,
                kind: kind.into(),
                action: action.into(),
                object,
                outcome: outcome.into(),
                code,
                message,
                latency_us: started.elapsed().as_micros() as i64,
                request_id: request_id::current_or_fresh().into(),
                ..Default::default()
            })
            .await;
        let response = result.map_err(|e| service::error::Error {
            code: e.code.into(),
            status: e.message,
        });
        if let Err(e) = request.respond(response).await {
            tracing::warn!(error = %e, "could not answer api call");
        }
    }

    async fn dispatch(
        &self,
        endpoint: ApiEndpoint,
        caller: &UserName,
        subject: &str,
        payload: &[u8],
    ) -> Result<Bytes, ApiError> {
        let admin = self.admins.contains(caller);
        if endpoint.admin_only() && !admin {
            return Err(ApiError::forbidden(format!(
                "user {caller} is not a hub admin"
            )));
        }
        let body = match endpoint {
            ApiEndpoint::WhoAmI => WhoAmIReply {
                identity: Identity::User(caller.clone()).to_string(),
                admin,
            }
            .encode_to_vec(),
            ApiEndpoint::ClustersList => {
                let request = decode::<ListClustersRequest>(subject, payload).map_err(bad)?;
                self.list(&request).await?.encode_to_vec()
            }
            ApiEndpoint::ClustersAccept
            | ApiEndpoint::ClustersDeny
            | ApiEndpoint::ClustersDelete => {
                let names = decode::<ClusterNames>(subject, payload).map_err(bad)?;
                self.decide_all(endpoint, caller, names)
                    .await?
                    .encode_to_vec()
            }
            ApiEndpoint::MsaCreate => {
                let msa = decode::<ManagedServiceAccount>(subject, payload).map_err(bad)?;
                self.msa.create(caller, msa).await?.encode_to_vec()
            }
            ApiEndpoint::MsaList => {
                let request = decode::<MsaListRequest>(subject, payload).map_err(bad)?;
                self.msa.list(&request.cluster).await?.encode_to_vec()
            }
            ApiEndpoint::MsaDelete => {
                let r = decode::<MsaRef>(subject, payload).map_err(bad)?;
                for user in self.msa.delete(&r.cluster, &r.name).await? {
                    self.disconnect_user(&user).await;
                }
                Empty {}.encode_to_vec()
            }
            ApiEndpoint::TokenGet => {
                let r = decode::<MsaRef>(subject, payload).map_err(bad)?;
                self.msa
                    .token(caller, admin, &r.cluster, &r.name)
                    .await?
                    .encode_to_vec()
            }
            ApiEndpoint::GrantCreate => {
                let grant = decode::<Grant>(subject, payload).map_err(bad)?;
                self.msa.grant(caller, grant).await?.encode_to_vec()
            }
            ApiEndpoint::GrantDelete => {
                let grant = decode::<Grant>(subject, payload).map_err(bad)?;
                self.msa.revoke(&grant).await?;
                self.disconnect_user(&grant.user).await;
                Empty {}.encode_to_vec()
            }
            ApiEndpoint::GrantList => self.msa.grants().await?.encode_to_vec(),
            ApiEndpoint::CredentialsList => self.credentials().await?.encode_to_vec(),
            ApiEndpoint::WorkCreate => {
                let request = decode::<CreateWorkRequest>(subject, payload).map_err(bad)?;
                self.works
                    .create(caller.as_str(), request)
                    .await?
                    .encode_to_vec()
            }
            ApiEndpoint::WorkUpload => {
                let chunk = decode::<UploadChunk>(subject, payload).map_err(bad)?;
                self.works
                    .manifests
                    .put_chunk(
                        caller.as_str(),
                        &chunk.upload_id,
                        chunk.index,
                        chunk.data.into(),
                    )
                    .await?;
                Empty {}.encode_to_vec()
            }
            ApiEndpoint::WorkGet => {
                let r = decode::<WorkRef>(subject, payload).map_err(bad)?;
                self.works.get(&r.cluster, &r.name).await?.encode_to_vec()
            }
            ApiEndpoint::WorkList => {
                let r = decode::<WorkListRequest>(subject, payload).map_err(bad)?;
                self.works.list(&r).await?.encode_to_vec()
            }
            ApiEndpoint::WorkDelete => {
                let r = decode::<WorkRef>(subject, payload).map_err(bad)?;
                self.works
                    .delete(&r.cluster, &r.name)
                    .await?
                    .encode_to_vec()
            }
            ApiEndpoint::ClustersLabel
            | ApiEndpoint::ClusterSetCreate
            | ApiEndpoint::ClusterSetList
            | ApiEndpoint::ClusterSetDelete
            | ApiEndpoint::ClusterSetAssign
            | ApiEndpoint::PlacementCreate
            | ApiEndpoint::PlacementGet
            | ApiEndpoint::PlacementList
            | ApiEndpoint::PlacementDelete
            | ApiEndpoint::WorkSetCreate
            | ApiEndpoint::WorkSetGet
            | ApiEndpoint::WorkSetList
            | ApiEndpoint::WorkSetDelete => {
                self.placements
                    .dispatch(endpoint, caller, subject, payload)
                    .await?
            }
        };
        Ok(Bytes::from(body))
    }

    /// Closes a user's connections so their next connection gets permissions without the
    /// revoked cluster.
    async fn disconnect_user(&self, user: &str) {
        let Ok(user) = UserName::new(user) else {
            return;
        };
        if let Err(e) = system::kick(&self.sys, &Identity::User(user.clone())).await {
            tracing::warn!(%user, error = %e, "could not close the connections of a revoked user");
        }
    }

    /// Spoke certificates (from the cluster records) and MSA tokens (from their status).
    async fn credentials(&self) -> Result<CredentialList, ApiError> {
        let mut items = Vec::new();
        for record in self.store.list("").await? {
            if let Ok(info) = fleetbus_nats::pki::inspect(&record.certificate_pem) {
                items.push(Credential {
                    kind: "spoke-certificate".into(),
                    name: Identity::Spoke(
                        ClusterName::new(record.name.as_str())
                            .map_err(|e| ApiError::bad_request(e.to_string()))?,
                    )
                    .to_string(),
                    cluster: record.name.clone(),
                    not_before_ms: info.not_before_ms,
                    not_after_ms: info.not_after_ms,
                });
            }
        }
        for msa in self.msa.list("").await?.items {
            let status = msa.status.unwrap_or_default();
            if status.expiration_ms > 0 {
                items.push(Credential {
                    kind: "msa-token".into(),
                    name: msa.name,
                    cluster: msa.cluster,
                    not_before_ms: status.last_refresh_ms,
                    not_after_ms: status.expiration_ms,
                });
            }
        }
        Ok(CredentialList { items })
    }

    async fn list(&self, request: &ListClustersRequest) -> Result<ClusterList, ApiError> {
        let (records, next) = self
            .store
            .page("", &request.after, crate::page::limit(request.limit))
            .await?;
        let items = records
            .into_iter()
            .map(|record| Cluster {
                conditions: self.liveness.conditions(&record),
                claims: Some(crate::cluster_labels::shown_claims(&record)),
                name: record.name,
                acceptance: record.acceptance,
                created_ms: record.created_ms,
                certificate_not_after_ms: record.certificate_not_after_ms,
            })
            .collect();
        Ok(ClusterList { items, next })
    }

    /// Applies accept/deny/delete to every name; all are attempted, errors are reported together.
    async fn decide_all(
        &self,
        endpoint: ApiEndpoint,
        caller: &UserName,
        names: ClusterNames,
    ) -> Result<ClusterNames, ApiError> {
        if names.names.is_empty() {
            return Err(ApiError::bad_request("no cluster names given"));
        }
        // Decisions on different clusters touch different keys: take several at once, in the
        // order given (accepting 500 pending clusters one by one took seconds).
        let results: Vec<(String, Result<(), ApiError>)> =
            futures::stream::iter(names.names.iter().cloned())
                .map(|raw| async move {
                    let result = match ClusterName::new(raw.as_str()) {
                        Ok(name) => self.decide(endpoint, caller, &name).await,
                        Err(e) => Err(ApiError::bad_request(e.to_string())),
                    };
                    (raw, result)
                })
                .buffered(DECISIONS_IN_FLIGHT)
                .collect()
                .await;
        let mut done = Vec::new();
        let mut errors: Vec<ApiError> = Vec::new();
        for (raw, result) in results {
            match result {
                Ok(()) => done.push(raw),
                Err(e) => errors.push(e),
            }
        }
        match errors.first() {
            None => Ok(ClusterNames { names: done }),
            Some(first) => Err(ApiError {
                code: first.code,
                message: errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    async fn decide(
        &self,
        endpoint: ApiEndpoint,
        caller: &UserName,
        name: &ClusterName,
    ) -> Result<(), ApiError> {
        let signer = &self.signer;
        let (revoke, issued) = self
            .store
            .update(name, |current| {
                let mut record = current.ok_or_else(|| not_registered(name))?;
                let was_accepted = record.acceptance() == Acceptance::Accepted;
                let mut issued = None;
                let action = match endpoint {
                    ApiEndpoint::ClustersDelete => Action::Delete,
                    ApiEndpoint::ClustersAccept if was_accepted => Action::Keep,
                    ApiEndpoint::ClustersAccept => {
                        let (cert, not_after) =
                            signer.sign(&record.csr_pem, name).map_err(|e| {
                                ApiError::conflict(format!("cannot sign the CSR of {name}: {e}"))
                            })?;
                        record.certificate_pem = cert;
                        record.certificate_not_after_ms = not_after;
                        issued = Some(not_after);
                        record.acceptance = Acceptance::Accepted as i32;
                        record.decided_by = caller.to_string();
                        record.decided_ms = now_ms();
                        Action::Put(Box::new(record))
                    }
                    _ => {
                        record.acceptance = Acceptance::Denied as i32;
                        record.certificate_pem.clear();
                        record.decided_by = caller.to_string();
                        record.decided_ms = now_ms();
                        Action::Put(Box::new(record))
                    }
                };
                let revoke = was_accepted && endpoint != ApiEndpoint::ClustersAccept;
                Ok::<_, ApiError>((action, (revoke, issued)))
            })
            .await?;
        if let Some(not_after) = issued {
            self.audit
                .emit(crate::registration::cert_event(name, "issue", not_after))
                .await;
        }
        tracing::info!(cluster = %name, by = %caller, action = endpoint.tokens().1, "cluster decision");
        if revoke {
            self.liveness.disconnected(name);
            match system::kick(&self.sys, &Identity::Spoke(name.clone())).await {
                Ok(n) => {
                    tracing::info!(cluster = %name, connections = n, "closed revoked connections")
                }
                Err(e) => {
                    tracing::warn!(cluster = %name, error = %e, "could not close revoked connections")
                }
            }
        }
        Ok(())
    }
}

fn bad(e: fleetbus_schema::DecodeError) -> ApiError {
    ApiError::bad_request(e.to_string())
}
