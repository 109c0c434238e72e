//! The CLI's connection to the hub API: mutual TLS as the user in `--cert`, one request per
//! call, NATS micro errors turned into one line.

use std::time::Duration;

use fleetbus_nats::refusals::Refusals;
use fleetbus_nats::{TlsFiles, connect};
use fleetbus_schema::v1::{
    Cluster, ClusterList, ListClustersRequest, ManifestWork, WorkList, WorkListRequest,
};
use fleetbus_schema::{ApiEndpoint, Identity, Subjects, UserName};
use prost::Message;

use crate::cli::HubFlags;

/// A failed hub API call, as the user should read it.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] fleetbus_nats::ConnectError),
    /// The certificate is not a user's.
    #[error("{0} is not a user identity; the hub API is for users (fleetbus certs user NAME)")]
    NotAUser(String),
    /// Nobody serves the API.
    #[error("no hub is answering at {0} (is fleetbus-hub running?)")]
    NoHub(String),
    /// The hub did not answer in time.
    #[error("the hub did not answer within {0:?} (is fleetbus-hub running?)")]
    Timeout(Duration),
    /// The hub refused or failed.
    #[error("{message}")]
    Hub {
        /// HTTP-like code.
        code: u16,
        /// The hub's message.
        message: String,
    },
    /// nats-server refused the request (no permission): its own words.
    #[error("nats-server refused the request: {0}")]
    NotPermitted(String),
    /// Anything else on the wire.
    #[error("hub API call failed: {0}")]
    Other(String),
}

/// A connected hub API client.
pub struct HubClient {
    client: async_nats::Client,
    subjects: Subjects,
    user: UserName,
    url: String,
    timeout: Duration,
    refusals: Refusals,
}

impl HubClient {
    /// Connects as the user whose certificate `flags` name.
    pub async fn connect(flags: &HubFlags) -> Result<Self, CallError> {
        let tls = TlsFiles {
            ca: flags.ca.clone(),
            cert: flags.cert.clone(),
            key: flags.key.clone(),
        };
        let identity = tls.identity()?;
        let Identity::User(user) = &identity else {
            return Err(CallError::NotAUser(identity.to_string()));
        };
        let subjects =
            Subjects::new(&flags.subject_prefix).map_err(|e| CallError::Other(e.to_string()))?;
        let refusals = Refusals::default();
        let options = refusals.watch(
            connect::options(&tls, &subjects, &identity)
                .max_reconnects(Some(2))
                .request_timeout(Some(flags.timeout)),
        );
        let client = connect::connect(&flags.nats_url, &tls, &identity, options).await?;
        Ok(Self {
            client,
            user: user.clone(),
            subjects,
            url: flags.nats_url.clone(),
            timeout: flags.timeout,
            refusals,
        })
    }

    /// The user's NATS connection (its permissions include the tunnels of granted clusters).
    pub fn nats(&self) -> &async_nats::Client {
        &self.client
    }

    /// The user this client is (from its certificate).
    pub fn user(&self) -> &UserName {
        &self.user
    }

    /// The fleet's subjects.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Calls `endpoint` with `request` and decodes the reply.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        endpoint: ApiEndpoint,
        request: &Req,
    ) -> Result<Resp, CallError> {
        use fleetbus_nats::rpc::{self, RpcError};
        let subject = self.subjects.api(&self.user, endpoint);
        let refused = self.refusals.listen();
        let answer = tokio::select! {
            answer = rpc::call(&self.client, subject.clone(), request) => answer,
            reason = refused.refused(Some(&subject)) => return Err(CallError::NotPermitted(reason)),
        };
        answer.map_err(|e| match e {
            RpcError::NoResponders(_) => CallError::NoHub(self.url.clone()),
            RpcError::TimedOut(_) => CallError::Timeout(self.timeout),
            RpcError::Refused { code, message } => CallError::Hub { code, message },
            other => CallError::Other(other.to_string()),
        })
    }

    /// Every cluster, page by page.
    pub async fn all_clusters(&self) -> Result<Vec<Cluster>, CallError> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let page: ClusterList = self
                .call(
                    ApiEndpoint::ClustersList,
                    &ListClustersRequest { limit: 0, after },
                )
                .await?;
            all.extend(page.items);
            if page.next.is_empty() {
                return Ok(all);
            }
            after = page.next;
        }
    }

    /// Every work of `cluster` (all clusters when empty), page by page.
    pub async fn all_works(&self, cluster: &str) -> Result<Vec<ManifestWork>, CallError> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let request = WorkListRequest {
                cluster: cluster.to_owned(),
                limit: 0,
                after,
            };
            let page: WorkList = self.call(ApiEndpoint::WorkList, &request).await?;
            all.extend(page.items);
            if page.next.is_empty() {
                return Ok(all);
            }
            after = page.next;
        }
    }
}
