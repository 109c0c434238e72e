//! The hub API as a NATS micro service (`fleetbus-hub`): one endpoint per user endpoint
//! (`<prefix>.api.*.<resource>.<verb>`) and per auditor endpoint
//! (`<prefix>.auditors.*.<resource>.<verb>`), each with metadata naming its protobuf request
//! and reply, so `$SRV.INFO` tells any NATS client how to call it.

use std::collections::HashMap;

use async_nats::service::{self, ServiceExt};
use fleetbus_schema::service::PROTO_PACKAGE;
use fleetbus_schema::{ApiEndpoint, AuditorEndpoint, HUB_SERVICE, Subjects};
use futures::StreamExt;
use futures::stream::BoxStream;

/// Which endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A user's (`<prefix>.api.<user>.…`).
    User(ApiEndpoint),
    /// An auditor's (`<prefix>.auditors.<auditor>.…`).
    Auditor(AuditorEndpoint),
}

/// The running service and every request to it.
pub struct Served {
    /// Stop it on shutdown.
    pub service: service::Service,
    /// Requests of all endpoints, in arrival order.
    pub requests: BoxStream<'static, (Call, service::Request)>,
}

/// Starts the service on `client` and adds every endpoint.
pub async fn start(client: &async_nats::Client, subjects: &Subjects) -> anyhow::Result<Served> {
    let service = client
        .service_builder()
        .description(
            "fleetbus hub API: protobuf request/reply; errors in the headers \
             Nats-Service-Error and Nats-Service-Error-Code",
        )
        .metadata(service_metadata(subjects))
        .start(HUB_SERVICE, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the hub API service: {e}"))?;
    let mut streams = Vec::new();
    for endpoint in ApiEndpoint::ALL {
        let access = if endpoint.admin_only() {
            "admin"
        } else {
            "user"
        };
        let mut metadata = endpoint_metadata(endpoint.message_types(), access);
        metadata.insert("read_only".into(), endpoint.read_only().to_string());
        let stream = add(
            &service,
            endpoint.name(),
            subjects.api_endpoint_all(endpoint),
            metadata,
        )
        .await?;
        streams.push(stream.map(move |r| (Call::User(endpoint), r)).boxed());
    }
    for endpoint in AuditorEndpoint::ALL {
        let stream = add(
            &service,
            endpoint.name(),
            subjects.auditor_api_endpoint_all(endpoint),
            endpoint_metadata(endpoint.message_types(), "auditor"),
        )
        .await?;
        streams.push(stream.map(move |r| (Call::Auditor(endpoint), r)).boxed());
    }
    Ok(Served {
        service,
        requests: futures::stream::select_all(streams).boxed(),
    })
}

async fn add(
    service: &service::Service,
    name: String,
    subject: String,
    metadata: HashMap<String, String>,
) -> anyhow::Result<service::endpoint::Endpoint> {
    service
        .endpoint_builder()
        .name(&name)
        .metadata(metadata)
        .add(subject)
        .await
        .map_err(|e| anyhow::anyhow!("cannot add endpoint {name}: {e}"))
}

/// What a client author needs to know about the whole service.
fn service_metadata(subjects: &Subjects) -> HashMap<String, String> {
    let mut m = HashMap::from([
        ("fleetbus.proto_package".into(), PROTO_PACKAGE.into()),
        ("fleetbus.subject_prefix".into(), subjects.prefix().into()),
        (
            "fleetbus.user_subject".into(),
            format!("{}.api.<user>.<resource>.<verb>", subjects.prefix()),
        ),
        (
            "fleetbus.auditor_subject".into(),
            format!("{}.auditors.<auditor>.<resource>.<verb>", subjects.prefix()),
        ),
        (
            "fleetbus.inbox_prefix".into(),
            format!("_INBOX.{}.<user|auditor>.<name>", subjects.prefix()),
        ),
        (
            "fleetbus.errors".into(),
            "Nats-Service-Error-Code 400 bad request, 403 forbidden, 404 not found, \
             409 conflict, 503 unavailable; Nats-Service-Error says why"
                .into(),
        ),
    ]);
    // `clusters.list` = `fleetbus.v1.ListClustersRequest -> fleetbus.v1.ClusterList`
    let users = ApiEndpoint::ALL
        .iter()
        .map(|e| (e.tokens(), e.message_types()));
    let auditors = AuditorEndpoint::ALL
        .iter()
        .map(|e| (e.tokens(), e.message_types()));
    for ((resource, verb), (request, reply)) in users.chain(auditors) {
        m.insert(
            format!("{resource}.{verb}"),
            format!("{request} -> {reply}"),
        );
    }
    m
}

fn endpoint_metadata((request, reply): (String, String), access: &str) -> HashMap<String, String> {
    HashMap::from([
        ("request".into(), request),
        ("reply".into(), reply),
        ("access".into(), access.into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_every_endpoint_and_its_messages() {
        let m = service_metadata(&Subjects::default());
        assert_eq!(
            m["clusters.list"],
            "fleetbus.v1.ListClustersRequest -> fleetbus.v1.ClusterList"
        );
        assert_eq!(
            m["durable.open"],
            "fleetbus.v1.OpenDurableRequest -> fleetbus.v1.AuditDurable"
        );
        assert_eq!(
            m.len(),
            6 + ApiEndpoint::ALL.len() + AuditorEndpoint::ALL.len()
        );
        let e = endpoint_metadata(ApiEndpoint::WorkGet.message_types(), "admin");
        assert_eq!(e["request"], "fleetbus.v1.WorkRef");
        assert_eq!(e["reply"], "fleetbus.v1.ManifestWork");
    }
}
