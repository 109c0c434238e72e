//! Managed service accounts on the hub (OCM managed-serviceaccount): the desired MSAs per
//! cluster, the token-sync events spokes send, encrypted token storage, grants, and the
//! `ttlSecondsAfterCreation` sweeper. Spokes learn their MSAs by syncing
//! (`<prefix>.hub.<cluster>.sync`), which only ever answers for the asking cluster.

use fleetbus_schema::conditions::set;
use fleetbus_schema::v1::{
    AuditEvent, ConditionStatus, Grant, GrantList, ManagedServiceAccount, MsaList, MsaStatus,
    TokenReply, TokenReport, TokenReportAck, TokenSecret,
};
use fleetbus_schema::{ClusterName, Subjects, UserName};
use prost::Message;

use crate::error::ApiError;
use crate::msa_spec::{names, validate};
use crate::registration::{not_registered, now_ms};
use crate::secrets::Secrets;
use crate::store::{Action, Bucket, ClusterStore};

/// The MSA part of the hub.
#[derive(Clone)]
pub struct MsaService {
    /// Desired MSAs with status, key `<cluster>.<name>`.
    pub msas: Bucket<ManagedServiceAccount>,
    /// Grants, key `<user>.<cluster>.<msa>`.
    pub grants: Bucket<Grant>,
    /// Sealed tokens, key `<cluster>.<name>`.
    pub secrets: Secrets,
    /// Cluster records (an MSA needs a registered cluster).
    pub clusters: ClusterStore,
    /// To notify spokes.
    pub client: async_nats::Client,
    /// Subjects of this fleet.
    pub subjects: Subjects,
    /// Audit events.
    pub audit: fleetbus_nats::audit::Auditor,
}

fn key(cluster: &str, name: &str) -> String {
    format!("{cluster}.{name}")
}

impl MsaService {
    async fn notify(&self, cluster: &str) {
        let Ok(cluster) = ClusterName::new(cluster) else {
            return;
        };
        let notice = fleetbus_schema::v1::ChangeNotice {}.encode_to_vec();
        if let Err(e) = self
            .client
            .publish(self.subjects.spoke_changed(&cluster), notice.into())
            .await
        {
            tracing::warn!(%cluster, error = %e, "could not notify spoke");
        }
    }

    /// Creates an MSA (admin).
    pub async fn create(
        &self,
        caller: &UserName,
        requested: ManagedServiceAccount,
    ) -> Result<ManagedServiceAccount, ApiError> {
        let mut msa = validate(requested)?;
        let (cluster, _) = names(&msa.cluster, &msa.name)?;
        if self.clusters.get(&cluster).await?.is_none() {
            return Err(not_registered(&cluster));
        }
        msa.generation = 1;
        msa.created_ms = now_ms();
        msa.created_by = caller.to_string();
        msa.status = Some(MsaStatus::default());
        let stored = self
            .msas
            .update(key(&msa.cluster, &msa.name), |current| match current {
                Some(_) => Err(ApiError::conflict(format!(
                    "managed service account {} already exists on cluster {}",
                    msa.name, msa.cluster
                ))),
                None => Ok((Action::Put(Box::new(msa.clone())), msa.clone())),
            })
            .await?;
        self.notify(&stored.cluster).await;
        tracing::info!(cluster = %stored.cluster, msa = %stored.name, by = %caller, "msa created");
        Ok(stored)
    }

    /// Deletes an MSA, its token and its grants; the spoke removes the service account.
    /// Returns the users whose grants went with it.
    pub async fn delete(&self, cluster: &str, name: &str) -> Result<Vec<String>, ApiError> {
        names(cluster, name)?;
        let k = key(cluster, name);
        self.msas
            .update(&k, |current| match current {
                Some(_) => Ok((Action::Delete, ())),
                None => Err(ApiError::not_found(format!(
                    "managed service account {name} not found on cluster {cluster}"
                ))),
            })
            .await?;
        self.secrets.delete(&k).await.map_err(|e| ApiError {
            code: 503,
            message: e.to_string(),
        })?;
        let mut users = Vec::new();
        for grant in self.grants.list("").await? {
            if grant.cluster == cluster && grant.msa == name {
                let gk = format!("{}.{cluster}.{name}", grant.user);
                self.grants
                    .update(&gk, |_| Ok::<_, ApiError>((Action::Delete, ())))
                    .await?;
                users.push(grant.user);
            }
        }
        self.notify(cluster).await;
        Ok(users)
    }

    /// MSAs of one cluster, or all.
    pub async fn list(&self, cluster: &str) -> Result<MsaList, ApiError> {
        let prefix = if cluster.is_empty() {
            String::new()
        } else {
            format!("{cluster}.")
        };
        Ok(MsaList {
            items: self.msas.list(&prefix).await?,
        })
    }

    /// The token, for the admin or a granted user.
    pub async fn token(
        &self,
        caller: &UserName,
        admin: bool,
        cluster: &str,
        name: &str,
    ) -> Result<TokenReply, ApiError> {
        names(cluster, name)?;
        let granted = self
            .grants
            .get(format!("{caller}.{cluster}.{name}"))
            .await?
            .is_some();
        if !admin && !granted {
            return Err(ApiError::forbidden(format!(
                "user {caller} is not granted managed service account {name} on cluster {cluster}"
            )));
        }
        let secret = self
            .secrets
            .get(&key(cluster, name))
            .await
            .map_err(|e| ApiError {
                code: 503,
                message: e.to_string(),
            })?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no token has been reported for {name} on cluster {cluster} yet"
                ))
            })?;
        tracing::info!(%cluster, msa = %name, user = %caller, "token read");
        Ok(TokenReply {
            token: secret.token,
            ca_pem: secret.ca_pem,
            server: secret.server,
            expiration_ms: secret.expiration_ms,
        })
    }

    /// Grants `user` the token of an existing MSA.
    pub async fn grant(&self, caller: &UserName, mut grant: Grant) -> Result<Grant, ApiError> {
        UserName::new(grant.user.as_str()).map_err(|e| ApiError::bad_request(e.to_string()))?;
        names(&grant.cluster, &grant.msa)?;
        if self
            .msas
            .get(key(&grant.cluster, &grant.msa))
            .await?
            .is_none()
        {
            return Err(ApiError::not_found(format!(
                "managed service account {} not found on cluster {}",
                grant.msa, grant.cluster
            )));
        }
        grant.created_ms = now_ms();
        grant.created_by = caller.to_string();
        let k = format!("{}.{}.{}", grant.user, grant.cluster, grant.msa);
        self.grants
            .update(&k, |_| {
                Ok::<_, ApiError>((Action::Put(Box::new(grant.clone())), ()))
            })
            .await?;
        Ok(grant)
    }

    /// Removes a grant.
    pub async fn revoke(&self, grant: &Grant) -> Result<(), ApiError> {
        let k = format!("{}.{}.{}", grant.user, grant.cluster, grant.msa);
        self.grants
            .update(&k, |current| match current {
                Some(_) => Ok((Action::Delete, ())),
                None => Err(ApiError::not_found(format!(
                    "user {} has no grant for {} on cluster {}",
                    grant.user, grant.msa, grant.cluster
                ))),
            })
            .await
    }

    /// All grants.
    pub async fn grants(&self) -> Result<GrantList, ApiError> {
        Ok(GrantList {
            items: self.grants.list("").await?,
        })
    }

    /// The MSAs `cluster` should have.
    pub async fn desired(
        &self,
        cluster: &ClusterName,
    ) -> Result<Vec<ManagedServiceAccount>, ApiError> {
        Ok(self.msas.list(&format!("{cluster}.")).await?)
    }

    /// A token-sync event from `cluster` (the subject's identity token, set by nats-server).
    pub async fn report(
        &self,
        cluster: &ClusterName,
        report: TokenReport,
    ) -> Result<TokenReportAck, ApiError> {
        let k = key(cluster.as_str(), &report.name);
        let now = now_ms();
        let ok = report.error_reason.is_empty() && !report.token.is_empty();
        if ok {
            let secret = TokenSecret {
                token: report.token.clone(),
                ca_pem: report.ca_pem.clone(),
                server: report.server.clone(),
                expiration_ms: report.expiration_ms,
            };
            // Only for an MSA that exists: a report for a deleted one is dropped below.
            if self.msas.get(&k).await?.is_some() {
                self.secrets.put(&k, &secret).await.map_err(|e| ApiError {
                    code: 503,
                    message: e.to_string(),
                })?;
            }
        }
        let mut first = false;
        self.msas
            .update(&k, |current| {
                let Some(mut msa) = current else {
                    return Err(ApiError::not_found(format!(
                        "managed service account {} not found",
                        report.name
                    )));
                };
                let status = msa.status.get_or_insert_with(MsaStatus::default);
                first = status.last_refresh_ms == 0;
                status.observed_generation = report.generation;
                if ok {
                    status.expiration_ms = report.expiration_ms;
                    status.last_refresh_ms = now;
                    status.token_secret_name = msa.name.clone();
                    set(
                        &mut status.conditions,
                        "SecretCreated",
                        ConditionStatus::True,
                        "SecretCreated",
                        "service account and token exist on the cluster",
                        now,
                    );
                    set(
                        &mut status.conditions,
                        "TokenReported",
                        ConditionStatus::True,
                        "TokenReported",
                        "the token is stored on the hub",
                        now,
                    );
                } else {
                    let reason = if report.error_reason.is_empty() {
                        "TokenReportFailed"
                    } else {
                        &report.error_reason
                    };
                    set(
                        &mut status.conditions,
                        "TokenReported",
                        ConditionStatus::False,
                        reason,
                        &report.error_message,
                        now,
                    );
                }
                Ok((Action::Put(Box::new(msa)), ()))
            })
            .await?;
        if ok {
            tracing::info!(%cluster, msa = %report.name, "token reported");
        } else {
            tracing::warn!(%cluster, msa = %report.name, reason = %report.error_reason, message = %report.error_message, "token report failed");
        }
        self.audit
            .emit(AuditEvent {
                actor: fleetbus_schema::Identity::Spoke(cluster.clone()).to_string(),
                cluster: cluster.to_string(),
                kind: "token".into(),
                action: if first { "issue" } else { "refresh" }.into(),
                object: format!("msa/{}", report.name),
                outcome: if ok { "success" } else { "failure" }.into(),
                code: if ok { 200 } else { 500 },
                message: if ok {
                    format!(
                        "expires {}",
                        fleetbus_nats::audit::rfc3339(report.expiration_ms)
                    )
                } else {
                    report.error_message.clone()
                },
                ..Default::default()
            })
            .await;
        Ok(TokenReportAck {})
    }

    /// Deletes MSAs whose `ttlSecondsAfterCreation` has passed.
    pub async fn sweep(&self) -> Result<usize, ApiError> {
        let now = now_ms();
        let mut deleted = 0;
        for msa in self.msas.list("").await? {
            let ttl = msa.ttl_seconds_after_creation;
            if ttl > 0 && msa.created_ms + ttl * 1000 <= now {
                match self.delete(&msa.cluster, &msa.name).await {
                    Ok(_) => deleted += 1,
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
                tracing::info!(cluster = %msa.cluster, msa = %msa.name, "msa expired (ttlSecondsAfterCreation)");
                self.audit
                    .emit(AuditEvent {
                        actor: fleetbus_schema::Identity::Hub.to_string(),
                        cluster: msa.cluster.clone(),
                        kind: "msa".into(),
                        action: "expire".into(),
                        object: format!("msa/{}", msa.name),
                        outcome: "success".into(),
                        code: 200,
                        ..Default::default()
                    })
                    .await;
            }
        }
        Ok(deleted)
    }
}
