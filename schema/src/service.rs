//! The hub API as a NATS micro service, as any NATS client sees it: the service name, the
//! `$SRV` discovery subjects, the protobuf request and reply of every endpoint, and the
//! auditors' own endpoints (`<prefix>.auditors.<auditor>.durable.<verb>`). Like every subject,
//! these are built only here.

use prost::Name;

use crate::names::UserName;
use crate::subjects::{ApiEndpoint, Subjects};
use crate::v1;

/// The micro service name of the hub API (every replica).
pub const HUB_SERVICE: &str = "fleetbus-hub";

/// The protobuf package of the contract.
pub const PROTO_PACKAGE: &str = "fleetbus.v1";

/// A NATS micro discovery verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Liveness: name, id, version of each instance.
    Ping,
    /// Description, endpoints, subjects and metadata.
    Info,
    /// Request counts, errors, latencies per endpoint.
    Stats,
}

impl Discovery {
    /// Every verb.
    pub const ALL: [Discovery; 3] = [Self::Ping, Self::Info, Self::Stats];

    fn token(self) -> &'static str {
        match self {
            Self::Ping => "PING",
            Self::Info => "INFO",
            Self::Stats => "STATS",
        }
    }
}

/// The subjects a client sends `verb` to for the hub: all services (`$SRV.PING`), the hub's
/// instances (`$SRV.PING.fleetbus-hub`) and one instance (`$SRV.PING.fleetbus-hub.<id>`).
pub fn discovery_subjects(verb: Discovery) -> [String; 3] {
    let all = format!("$SRV.{}", verb.token());
    [
        all.clone(),
        format!("{all}.{HUB_SERVICE}"),
        format!("{all}.{HUB_SERVICE}.*"),
    ]
}

/// Endpoints an auditor calls about its own durable subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditorEndpoint {
    /// Create or find a durable subscription (`OpenDurableRequest` → `AuditDurable`).
    DurableOpen,
    /// Delete one (`DurableRef` → `Empty`).
    DurableDelete,
}

impl AuditorEndpoint {
    /// All auditor endpoints, for registering the service.
    pub const ALL: [AuditorEndpoint; 2] = [Self::DurableOpen, Self::DurableDelete];

    /// `(resource, verb)`.
    pub fn tokens(self) -> (&'static str, &'static str) {
        match self {
            Self::DurableOpen => ("durable", "open"),
            Self::DurableDelete => ("durable", "delete"),
        }
    }

    /// A name for NATS micro stats (`durable-open`).
    pub fn name(self) -> String {
        let (resource, verb) = self.tokens();
        format!("{resource}-{verb}")
    }

    /// Fully qualified protobuf names of the request and the reply.
    pub fn message_types(self) -> (String, String) {
        match self {
            Self::DurableOpen => types::<v1::OpenDurableRequest, v1::AuditDurable>(),
            Self::DurableDelete => types::<v1::DurableRef, v1::Empty>(),
        }
    }
}

impl ApiEndpoint {
    /// Fully qualified protobuf names of the request and the reply
    /// (`fleetbus.v1.ListClustersRequest`, `fleetbus.v1.ClusterList`).
    pub fn message_types(self) -> (String, String) {
        use v1::*;
        match self {
            Self::WhoAmI => types::<WhoAmIRequest, WhoAmIReply>(),
            Self::ClustersList => types::<ListClustersRequest, ClusterList>(),
            Self::ClustersAccept | Self::ClustersDeny | Self::ClustersDelete => {
                types::<ClusterNames, ClusterNames>()
            }
            Self::MsaCreate => types::<ManagedServiceAccount, ManagedServiceAccount>(),
            Self::MsaList => types::<MsaListRequest, MsaList>(),
            Self::MsaDelete => types::<MsaRef, Empty>(),
            Self::TokenGet => types::<MsaRef, TokenReply>(),
            Self::GrantCreate => types::<Grant, Grant>(),
            Self::GrantDelete => types::<Grant, Empty>(),
            Self::GrantList => types::<Empty, GrantList>(),
            Self::CredentialsList => types::<Empty, CredentialList>(),
            Self::WorkCreate => types::<CreateWorkRequest, ManifestWork>(),
            Self::WorkUpload => types::<UploadChunk, Empty>(),
            Self::WorkGet | Self::WorkDelete => types::<WorkRef, ManifestWork>(),
            Self::WorkList => types::<WorkListRequest, WorkList>(),
            Self::ClustersLabel => types::<ClusterLabelRequest, Cluster>(),
            Self::ClusterSetCreate => types::<ObjectRef, ClusterSet>(),
            Self::ClusterSetList => types::<Empty, ClusterSetList>(),
            Self::ClusterSetDelete | Self::PlacementDelete => types::<ObjectRef, Empty>(),
            Self::ClusterSetAssign => types::<ClusterSetAssignment, ClusterNames>(),
            Self::PlacementCreate => types::<CreatePlacementRequest, Placement>(),
            Self::PlacementGet => types::<ObjectRef, Placement>(),
            Self::PlacementList => types::<Empty, PlacementList>(),
            Self::WorkSetCreate => types::<CreateWorkSetRequest, WorkSet>(),
            Self::WorkSetGet | Self::WorkSetDelete => types::<ObjectRef, WorkSet>(),
            Self::WorkSetList => types::<Empty, WorkSetList>(),
        }
    }

    /// Whether it only reads (safe to call again, changes nothing).
    pub fn read_only(self) -> bool {
        matches!(
            self,
            Self::WhoAmI
                | Self::ClustersList
                | Self::MsaList
                | Self::TokenGet
                | Self::GrantList
                | Self::CredentialsList
                | Self::WorkGet
                | Self::WorkList
                | Self::ClusterSetList
                | Self::PlacementGet
                | Self::PlacementList
                | Self::WorkSetGet
                | Self::WorkSetList
        )
    }
}

fn types<Req: Name, Reply: Name>() -> (String, String) {
    (Req::full_name(), Reply::full_name())
}

impl Subjects {
    /// An auditor's call (`fleet.auditors.audit.durable.open`).
    pub fn auditor_api(&self, auditor: &UserName, endpoint: AuditorEndpoint) -> String {
        let (resource, verb) = endpoint.tokens();
        format!("{}.auditors.{auditor}.{resource}.{verb}", self.prefix())
    }

    /// One auditor endpoint for every auditor (hub service subscription).
    pub fn auditor_api_endpoint_all(&self, endpoint: AuditorEndpoint) -> String {
        let (resource, verb) = endpoint.tokens();
        format!("{}.auditors.*.{resource}.{verb}", self.prefix())
    }

    /// Every auditor endpoint `auditor` may call.
    pub fn auditor_api_all(&self, auditor: &UserName) -> String {
        format!("{}.auditors.{auditor}.>", self.prefix())
    }

    /// The caller of an auditor subject, read from its identity token.
    pub fn auditor_caller(&self, subject: &str) -> Option<UserName> {
        let rest = subject
            .strip_prefix(self.prefix())?
            .strip_prefix(".auditors.")?;
        UserName::new(rest.split('.').next()?).ok()
    }

    /// Whether `filter` is a well-formed subject filter inside the audit stream
    /// (`<prefix>.audit.proxy.*`, `<prefix>.audit.>`).
    pub fn is_audit_filter(&self, filter: &str) -> bool {
        let Some(rest) = filter
            .strip_prefix(self.prefix())
            .and_then(|r| r.strip_prefix(".audit."))
        else {
            return false;
        };
        let tokens: Vec<&str> = rest.split('.').collect();
        tokens.iter().enumerate().all(|(i, t)| {
            !t.is_empty()
                && !t.chars().any(|c| c.is_whitespace() || c.is_control())
                && (!t.contains('>') || (*t == ">" && i == tokens.len() - 1))
                && (!t.contains('*') || *t == "*")
        }) && tokens.len() <= 2
    }

    /// Where a durable subscription of `auditor` delivers: inside its private inbox, so only
    /// that auditor can subscribe. `token` is one subject token.
    pub fn durable_deliver(&self, auditor: &UserName, token: &str) -> String {
        format!(
            "{}.durable.{token}",
            self.inbox(&crate::Identity::Auditor(auditor.clone()))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_service_subjects() {
        let s = Subjects::default();
        let audit = UserName::new("audit").unwrap();
        assert_eq!(
            discovery_subjects(Discovery::Info),
            [
                "$SRV.INFO",
                "$SRV.INFO.fleetbus-hub",
                "$SRV.INFO.fleetbus-hub.*"
            ]
        );
        assert_eq!(discovery_subjects(Discovery::Ping)[0], "$SRV.PING");
        assert_eq!(
            discovery_subjects(Discovery::Stats)[1],
            "$SRV.STATS.fleetbus-hub"
        );
        let golden = [
            (
                s.auditor_api(&audit, AuditorEndpoint::DurableOpen),
                "fleet.auditors.audit.durable.open",
            ),
            (
                s.auditor_api(&audit, AuditorEndpoint::DurableDelete),
                "fleet.auditors.audit.durable.delete",
            ),
            (
                s.auditor_api_endpoint_all(AuditorEndpoint::DurableOpen),
                "fleet.auditors.*.durable.open",
            ),
            (s.auditor_api_all(&audit), "fleet.auditors.audit.>"),
            (
                s.durable_deliver(&audit, "d0f1"),
                "_INBOX.fleet.auditor.audit.durable.d0f1",
            ),
        ];
        for (built, want) in golden {
            assert_eq!(built, want);
        }
        assert_eq!(
            s.auditor_caller("fleet.auditors.audit.durable.open")
                .unwrap()
                .as_str(),
            "audit"
        );
        assert!(s.auditor_caller("fleet.api.audit.durable.open").is_none());
        for good in ["fleet.audit.>", "fleet.audit.proxy.*", "fleet.audit.*.c1"] {
            assert!(s.is_audit_filter(good), "{good}");
        }
        for bad in [
            "fleet.>",
            "fleet.audit.",
            "fleet.audit.a.b.c",
            "fleet.audit.>.x",
            "fleet.audit.p*.c",
            "other.audit.>",
            "fleet.audit.a b.c",
        ] {
            assert!(!s.is_audit_filter(bad), "{bad}");
        }
    }

    #[test]
    fn endpoints_name_their_messages() {
        assert_eq!(
            ApiEndpoint::ClustersList.message_types(),
            (
                "fleetbus.v1.ListClustersRequest".to_owned(),
                "fleetbus.v1.ClusterList".to_owned()
            )
        );
        for endpoint in ApiEndpoint::ALL {
            let (request, reply) = endpoint.message_types();
            assert!(request.starts_with("fleetbus.v1."), "{request}");
            assert!(reply.starts_with("fleetbus.v1."), "{reply}");
            // Reads are open to some non-admins or change nothing; writes are all admin-only.
            assert!(
                endpoint.read_only() || endpoint.admin_only(),
                "{endpoint:?}"
            );
        }
        assert_eq!(
            AuditorEndpoint::DurableOpen.message_types().1,
            "fleetbus.v1.AuditDurable"
        );
    }
}
