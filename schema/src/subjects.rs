//! Every NATS subject fleetbus uses, built from a configurable prefix (default `fleet`).
//! Nothing outside this module formats a subject. The identity token in a subject is put
//! there by a client that nats-server only lets use its own, so handlers may trust it.

use crate::identity::Identity;
use crate::names::{ClusterName, NameError, UserName, validate_label};

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "fleet";

/// What a spoke sends to the hub on `<prefix>.hub.<cluster>.<topic>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubTopic {
    /// Liveness and claims, every heartbeat interval.
    Heartbeat,
    /// Certificate renewal (request/reply).
    Renew,
    /// Token-sync events of managed service accounts (request/reply).
    Token,
    /// Fetch the desired state for this cluster (request/reply).
    Sync,
    /// ManifestWork status (request/reply).
    Work,
    /// Fetch a chunk of a work's manifests (request/reply).
    Manifests,
}

impl HubTopic {
    fn token(self) -> &'static str {
        match self {
            Self::Heartbeat => "heartbeat",
            Self::Renew => "renew",
            Self::Token => "token",
            Self::Sync => "sync",
            Self::Work => "work",
            Self::Manifests => "manifests",
        }
    }
}

/// Hub API endpoints: `<prefix>.api.<user>.<resource>.<verb>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiEndpoint {
    /// Who the hub thinks the caller is.
    WhoAmI,
    /// List clusters with their conditions.
    ClustersList,
    /// Accept pending clusters (admin).
    ClustersAccept,
    /// Deny clusters (admin).
    ClustersDeny,
    /// Remove clusters and revoke their identity (admin).
    ClustersDelete,
    /// Create a managed service account (admin).
    MsaCreate,
    /// List managed service accounts (admin).
    MsaList,
    /// Delete a managed service account (admin).
    MsaDelete,
    /// Read an MSA token (admin or granted user).
    TokenGet,
    /// Grant a user an MSA token (admin).
    GrantCreate,
    /// Revoke a grant (admin).
    GrantDelete,
    /// List grants (admin).
    GrantList,
    /// Every certificate and token the hub issued or holds, with expiry (admin).
    CredentialsList,
    /// Create or update a ManifestWork (admin).
    WorkCreate,
    /// Upload one chunk of a large work's manifests (admin).
    WorkUpload,
    /// One work with status (admin).
    WorkGet,
    /// Works of one or all clusters (admin).
    WorkList,
    /// Delete a work; the spoke removes its resources (admin).
    WorkDelete,
    /// Set or remove a cluster's labels (admin).
    ClustersLabel,
    /// Create a cluster set (admin).
    ClusterSetCreate,
    /// Cluster sets with their sizes (admin).
    ClusterSetList,
    /// Delete an empty, unused cluster set (admin).
    ClusterSetDelete,
    /// Put clusters into a cluster set (admin).
    ClusterSetAssign,
    /// Create or update a Placement (admin).
    PlacementCreate,
    /// One Placement with its decisions (admin).
    PlacementGet,
    /// Every Placement (admin).
    PlacementList,
    /// Delete a Placement no work set uses (admin).
    PlacementDelete,
    /// Create or update a ManifestWorkReplicaSet (admin).
    WorkSetCreate,
    /// One ManifestWorkReplicaSet with its rollout (admin).
    WorkSetGet,
    /// Every ManifestWorkReplicaSet (admin).
    WorkSetList,
    /// Delete a ManifestWorkReplicaSet and every work it generated (admin).
    WorkSetDelete,
}

impl ApiEndpoint {
    /// All endpoints, for registering the service.
    pub const ALL: [ApiEndpoint; 31] = [
        Self::WhoAmI,
        Self::ClustersList,
        Self::ClustersAccept,
        Self::ClustersDeny,
        Self::ClustersDelete,
        Self::MsaCreate,
        Self::MsaList,
        Self::MsaDelete,
        Self::TokenGet,
        Self::GrantCreate,
        Self::GrantDelete,
        Self::GrantList,
        Self::CredentialsList,
        Self::WorkCreate,
        Self::WorkUpload,
        Self::WorkGet,
        Self::WorkList,
        Self::WorkDelete,
        Self::ClustersLabel,
        Self::ClusterSetCreate,
        Self::ClusterSetList,
        Self::ClusterSetDelete,
        Self::ClusterSetAssign,
        Self::PlacementCreate,
        Self::PlacementGet,
        Self::PlacementList,
        Self::PlacementDelete,
        Self::WorkSetCreate,
        Self::WorkSetGet,
        Self::WorkSetList,
        Self::WorkSetDelete,
    ];

    /// `(resource, verb)`.
    pub fn tokens(self) -> (&'static str, &'static str) {
        match self {
            Self::WhoAmI => ("identity", "get"),
            Self::ClustersList => ("clusters", "list"),
            Self::ClustersAccept => ("clusters", "accept"),
            Self::ClustersDeny => ("clusters", "deny"),
            Self::ClustersDelete => ("clusters", "delete"),
            Self::MsaCreate => ("msa", "create"),
            Self::MsaList => ("msa", "list"),
            Self::MsaDelete => ("msa", "delete"),
            Self::TokenGet => ("token", "get"),
            Self::GrantCreate => ("grants", "create"),
            Self::GrantDelete => ("grants", "delete"),
            Self::GrantList => ("grants", "list"),
            Self::CredentialsList => ("credentials", "list"),
            Self::WorkCreate => ("work", "create"),
            Self::WorkUpload => ("work", "upload"),
            Self::WorkGet => ("work", "get"),
            Self::WorkList => ("work", "list"),
            Self::WorkDelete => ("work", "delete"),
            Self::ClustersLabel => ("clusters", "label"),
            Self::ClusterSetCreate => ("clustersets", "create"),
            Self::ClusterSetList => ("clustersets", "list"),
            Self::ClusterSetDelete => ("clustersets", "delete"),
            Self::ClusterSetAssign => ("clustersets", "set"),
            Self::PlacementCreate => ("placements", "create"),
            Self::PlacementGet => ("placements", "get"),
            Self::PlacementList => ("placements", "list"),
            Self::PlacementDelete => ("placements", "delete"),
            Self::WorkSetCreate => ("worksets", "create"),
            Self::WorkSetGet => ("worksets", "get"),
            Self::WorkSetList => ("worksets", "list"),
            Self::WorkSetDelete => ("worksets", "delete"),
        }
    }

    /// A name for NATS micro stats (`clusters-list`).
    pub fn name(self) -> String {
        let (resource, verb) = self.tokens();
        format!("{resource}-{verb}")
    }

    /// The audit event kind and action of a call (`("cluster", "accept")`).
    pub fn audit_type(self) -> (&'static str, &'static str) {
        match self {
            Self::WhoAmI => ("api", "whoami"),
            Self::ClustersList => ("cluster", "list"),
            Self::ClustersAccept => ("cluster", "accept"),
            Self::ClustersDeny => ("cluster", "deny"),
            Self::ClustersDelete => ("cluster", "delete"),
            Self::MsaCreate => ("msa", "create"),
            Self::MsaList => ("msa", "list"),
            Self::MsaDelete => ("msa", "delete"),
            Self::TokenGet => ("token", "read"),
            Self::GrantCreate => ("grant", "create"),
            Self::GrantDelete => ("grant", "revoke"),
            Self::GrantList => ("grant", "list"),
            Self::CredentialsList => ("credential", "list"),
            Self::WorkCreate => ("work", "create"),
            Self::WorkUpload => ("work", "upload"),
            Self::WorkGet => ("work", "get"),
            Self::WorkList => ("work", "list"),
            Self::WorkDelete => ("work", "delete"),
            Self::ClustersLabel => ("cluster", "label"),
            Self::ClusterSetCreate => ("clusterset", "create"),
            Self::ClusterSetList => ("clusterset", "list"),
            Self::ClusterSetDelete => ("clusterset", "delete"),
            Self::ClusterSetAssign => ("clusterset", "set"),
            Self::PlacementCreate => ("placement", "create"),
            Self::PlacementGet => ("placement", "get"),
            Self::PlacementList => ("placement", "list"),
            Self::PlacementDelete => ("placement", "delete"),
            Self::WorkSetCreate => ("workset", "create"),
            Self::WorkSetGet => ("workset", "get"),
            Self::WorkSetList => ("workset", "list"),
            Self::WorkSetDelete => ("workset", "delete"),
        }
    }

    /// Whether only admins may call it.
    pub fn admin_only(self) -> bool {
        !matches!(self, Self::WhoAmI | Self::ClustersList | Self::TokenGet)
    }
}

/// Subject builder for one fleet prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Subjects {
    /// A prefix is one DNS-1123 label, so it is one subject token.
    pub fn new(prefix: &str) -> Result<Self, NameError> {
        validate_label("subject prefix", prefix)?;
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix (`fleet`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// bootstrap → hub join requests.
    pub fn join(&self) -> String {
        format!("{}.join", self.prefix)
    }

    /// spoke → hub messages of one cluster and topic.
    pub fn hub(&self, cluster: &ClusterName, topic: HubTopic) -> String {
        format!("{}.hub.{cluster}.{}", self.prefix, topic.token())
    }

    /// One topic from every cluster (hub subscription).
    pub fn hub_topic_all(&self, topic: HubTopic) -> String {
        format!("{}.hub.*.{}", self.prefix, topic.token())
    }

    /// Everything a spoke may send to the hub.
    pub fn hub_cluster_all(&self, cluster: &ClusterName) -> String {
        format!("{}.hub.{cluster}.>", self.prefix)
    }

    /// Everything the hub sends to one spoke.
    pub fn spoke_all(&self, cluster: &ClusterName) -> String {
        format!("{}.spoke.{cluster}.>", self.prefix)
    }

    /// hub → spoke: the desired state changed, sync again.
    pub fn spoke_changed(&self, cluster: &ClusterName) -> String {
        format!("{}.spoke.{cluster}.changed", self.prefix)
    }

    /// `user` opening a tunneled Kubernetes API request to `cluster` (spoke queue group). The
    /// user's name is in the subject, and nats-server lets each user publish only under her
    /// own name: the spoke learns who sent a request from the subject, never from the frame.
    pub fn kapi_open(&self, cluster: &ClusterName, user: &UserName) -> String {
        format!("{}.kapi.{cluster}.{user}.open", self.prefix)
    }

    /// Every user's open subject on `cluster` (the spoke's queue subscription).
    pub fn kapi_opens(&self, cluster: &ClusterName) -> String {
        format!("{}.kapi.{cluster}.*.open", self.prefix)
    }

    /// `user`'s frames of one stream, served by one spoke replica.
    pub fn kapi_stream(
        &self,
        cluster: &ClusterName,
        user: &UserName,
        replica: &str,
        stream: &str,
    ) -> String {
        format!("{}.kapi.{cluster}.{user}.s.{replica}.{stream}", self.prefix)
    }

    /// Everything one spoke replica serves for its streams, from any user.
    pub fn kapi_replica_all(&self, cluster: &ClusterName, replica: &str) -> String {
        format!("{}.kapi.{cluster}.*.s.{replica}.>", self.prefix)
    }

    /// The user and stream of a stream subject (`kapi_stream`), if it is one.
    pub fn kapi_stream_parts<'a>(&self, subject: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".kapi.")?;
        let tokens: Vec<&str> = rest.split('.').collect();
        match tokens[..] {
            [_cluster, user, "s", _replica, stream] => Some((user, stream)),
            _ => None,
        }
    }

    /// The user of an open subject (`kapi_open`), if it is one.
    pub fn kapi_open_user(&self, subject: &str) -> Option<UserName> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".kapi.")?;
        let tokens: Vec<&str> = rest.split('.').collect();
        match tokens[..] {
            [_cluster, user, "open"] => UserName::new(user).ok(),
            _ => None,
        }
    }

    /// Every tunnel subject of `cluster` (its spoke subscribes to them).
    pub fn kapi_cluster_all(&self, cluster: &ClusterName) -> String {
        format!("{}.kapi.{cluster}.>", self.prefix)
    }

    /// What `user` may publish to reach `cluster`'s tunnel: her own opens and streams only.
    pub fn kapi_user_all(&self, cluster: &ClusterName, user: &UserName) -> String {
        format!("{}.kapi.{cluster}.{user}.>", self.prefix)
    }

    /// What `user` may publish to reach every cluster's tunnel (admins).
    pub fn kapi_user_everywhere(&self, user: &UserName) -> String {
        format!("{}.kapi.*.{user}.>", self.prefix)
    }

    /// Every user's inbox (spokes answer tunneled requests there).
    pub fn user_inboxes_all(&self) -> String {
        format!("_INBOX.{}.user.>", self.prefix)
    }

    /// An audit event of `kind` about `cluster` (`_` when there is none).
    pub fn audit(&self, kind: &str, cluster: Option<&ClusterName>) -> String {
        format!(
            "{}.audit.{kind}.{}",
            self.prefix,
            cluster.map_or("_", ClusterName::as_str)
        )
    }

    /// Every audit event (the audit stream's subject).
    pub fn audit_all(&self) -> String {
        format!("{}.audit.>", self.prefix)
    }

    /// Audit events of one kind, or about one cluster, or both (`None`: any).
    pub fn audit_filter(&self, kind: Option<&str>, cluster: Option<&ClusterName>) -> String {
        format!(
            "{}.audit.{}.{}",
            self.prefix,
            kind.unwrap_or("*"),
            cluster.map_or("*", ClusterName::as_str)
        )
    }

    /// The JetStream stream that keeps audit events.
    pub fn audit_stream(&self) -> String {
        format!("{}-audit", self.prefix)
    }

    /// A hub API call by `user`.
    pub fn api(&self, user: &UserName, endpoint: ApiEndpoint) -> String {
        let (resource, verb) = endpoint.tokens();
        format!("{}.api.{user}.{resource}.{verb}", self.prefix)
    }

    /// One endpoint for every caller (hub service subscription).
    pub fn api_endpoint_all(&self, endpoint: ApiEndpoint) -> String {
        let (resource, verb) = endpoint.tokens();
        format!("{}.api.*.{resource}.{verb}", self.prefix)
    }

    /// Every hub API subject `user` may call.
    pub fn api_user_all(&self, user: &UserName) -> String {
        format!("{}.api.{user}.>", self.prefix)
    }

    /// The caller of an API subject, read from its identity token.
    pub fn api_caller(&self, subject: &str) -> Option<UserName> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".api.")?;
        UserName::new(rest.split('.').next()?).ok()
    }

    /// The cluster of a `<prefix>.hub.<cluster>.…` subject.
    pub fn hub_sender(&self, subject: &str) -> Option<ClusterName> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".hub.")?;
        ClusterName::new(rest.split('.').next()?).ok()
    }

    /// The private inbox prefix of `identity` (`_INBOX.fleet.spoke.cluster1`).
    pub fn inbox(&self, identity: &Identity) -> String {
        match identity.name() {
            Some(name) => format!("_INBOX.{}.{}.{name}", self.prefix, identity.kind()),
            None => format!("_INBOX.{}.{}", self.prefix, identity.kind()),
        }
    }

    /// The user whose private inbox `subject` is in (only that user can read it).
    pub fn inbox_user(&self, subject: &str) -> Option<UserName> {
        let rest = subject
            .strip_prefix("_INBOX.")?
            .strip_prefix(&self.prefix)?
            .strip_prefix(".user.")?;
        UserName::new(rest.split('.').next()?).ok()
    }

    /// Everything under `identity`'s inbox prefix.
    pub fn inbox_all(&self, identity: &Identity) -> String {
        format!("{}.>", self.inbox(identity))
    }

    /// JetStream KV bucket holding cluster records.
    pub fn clusters_bucket(&self) -> String {
        format!("{}-clusters", self.prefix)
    }

    /// JetStream KV bucket holding managed service accounts.
    pub fn msa_bucket(&self) -> String {
        format!("{}-msa", self.prefix)
    }

    /// JetStream KV bucket holding ManifestWork specs and status.
    pub fn works_bucket(&self) -> String {
        format!("{}-works", self.prefix)
    }

    /// JetStream Object Store holding the manifests of works.
    pub fn manifests_store(&self) -> String {
        format!("{}-manifests", self.prefix)
    }

    /// JetStream KV bucket holding chunks of large works being uploaded (expire after an hour).
    pub fn uploads_bucket(&self) -> String {
        format!("{}-uploads", self.prefix)
    }

    /// JetStream KV bucket holding encrypted service-account tokens.
    pub fn tokens_bucket(&self) -> String {
        format!("{}-tokens", self.prefix)
    }

    /// JetStream KV bucket holding grants.
    pub fn grants_bucket(&self) -> String {
        format!("{}-grants", self.prefix)
    }

    /// JetStream KV bucket holding cluster sets.
    pub fn clustersets_bucket(&self) -> String {
        format!("{}-clustersets", self.prefix)
    }

    /// JetStream KV bucket holding Placements with their decisions.
    pub fn placements_bucket(&self) -> String {
        format!("{}-placements", self.prefix)
    }

    /// JetStream KV bucket holding ManifestWorkReplicaSets with their rollout status.
    pub fn worksets_bucket(&self) -> String {
        format!("{}-worksets", self.prefix)
    }
}

#[cfg(test)]
mod tests;
