//! The NATS auth callout responder. nats-server verifies the client certificate chain
//! (`tls { verify: true }`) and asks here, on `$SYS.REQ.USER.AUTH`, what the connection may
//! do. The answer is a user JWT with exactly that identity's permissions, signed with the
//! fleet's issuer account key, or an error, which refuses the connection. The responder runs
//! as a queue group, so every hub replica serves it.

use std::future::Future;
use std::sync::Arc;

use fleetbus_schema::{Identity, Subjects};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::jwt::{self, AuthRequest};
use crate::permissions::{ProxyAccess, permissions_for};
use crate::pki::{self, CertInfo};

/// The subject nats-server sends authorization requests to.
pub const AUTH_SUBJECT: &str = "$SYS.REQ.USER.AUTH";
/// The account every fleet identity lands in.
pub const FLEET_ACCOUNT: &str = "FLEET";
/// The account of the callout responder itself.
pub const AUTH_ACCOUNT: &str = "AUTH";
/// The system account.
pub const SYS_ACCOUNT: &str = "SYS";

/// The hub's side of the decision: is this identity, with this certificate, allowed in now,
/// and which clusters' Kubernetes APIs may it reach?
pub trait Authorizer: Send + Sync + 'static {
    /// `Err(reason)` refuses the connection; the reason reaches the server log.
    fn authorize(
        &self,
        identity: &Identity,
        cert: &CertInfo,
    ) -> impl Future<Output = Result<ProxyAccess, String>> + Send;
}

/// A callout responder.
pub struct Callout<A> {
    issuer: nkeys::KeyPair,
    subjects: Subjects,
    authorizer: A,
}

impl<A: Authorizer> Callout<A> {
    /// A responder signing with `issuer` (the account key named in the server's `auth_callout`).
    pub fn new(issuer: nkeys::KeyPair, subjects: Subjects, authorizer: A) -> Self {
        Self {
            issuer,
            subjects,
            authorizer,
        }
    }

    /// Serves requests on `client` (a connection of the callout account) until `shutdown`.
    pub async fn serve(
        self: Arc<Self>,
        client: async_nats::Client,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut requests = client
            .queue_subscribe(AUTH_SUBJECT, "fleetbus-callout".into())
            .await?;
        loop {
            let msg = tokio::select! {
                () = shutdown.cancelled() => break,
                msg = requests.next() => match msg { Some(m) => m, None => break },
            };
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let this = self.clone();
            let client = client.clone();
            let span = tracing::info_span!("auth_callout", subject = %msg.subject);
            tracker.spawn(tracing::Instrument::instrument(
                async move {
                    match this.answer(&msg.payload).await {
                        Ok(token) => {
                            if let Err(e) = client.publish(reply, token.into()).await {
                                tracing::warn!(error = %e, "could not answer auth callout");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable auth callout request"),
                    }
                },
                span,
            ));
        }
        Ok(())
    }

    /// The signed response JWT for one request.
    pub async fn answer(&self, request: &[u8]) -> Result<String, jwt::JwtError> {
        let request = jwt::decode_auth_request(request)?;
        let outcome = self.decide(&request).await;
        if let Err(reason) = &outcome {
            tracing::info!(client = %request.client_name, host = %request.client_host, %reason, "connection refused");
        }
        jwt::auth_response(&self.issuer, &request, outcome)
    }

    async fn decide(&self, request: &AuthRequest) -> Result<String, String> {
        let pem = request
            .client_cert_pem
            .as_deref()
            .ok_or("no verified client certificate")?;
        let cert = pki::inspect(pem).map_err(|e| e.to_string())?;
        let identity = cert.require_identity().map_err(|e| e.to_string())?;
        let access = self.authorizer.authorize(identity, &cert).await?;
        tracing::debug!(%identity, ?access, "connection authorized");
        let permissions = permissions_for(identity, &self.subjects, &access);
        if !permissions.admits(&request.client_kind) {
            return Err(format!(
                "{identity} may not connect as {:?}",
                request.client_kind
            ));
        }
        jwt::user_jwt(
            &self.issuer,
            &request.user_nkey,
            FLEET_ACCOUNT,
            &identity.to_string(),
            &permissions,
            // The server closes the connection when the certificate expires.
            Some(cert.not_after_ms / 1000),
        )
        .map_err(|e| e.to_string())
    }
}
