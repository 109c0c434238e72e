//! ManifestWork bad input and limits on real kube-apiservers: manifests the apiserver refuses
//! (unknown kind, missing namespace, invalid name) report why while the rest applies, a spoke
//! without rights reports the apiserver's refusal, malformed files never reach the hub, and an
//! 8 MiB work round-trips while a 17 MiB one is refused at create time. A client that sends
//! protobuf fields this version does not know (a newer CLI, another language) still gets a work
//! that applies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use fleetbus_cli::hub_client::HubClient;
use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_schema::v1::ConditionStatus;
use fleetbus_schema::v1::{
    CreateWorkRequest, Empty, ManifestWork, Manifests, UploadChunk, WorkRef,
};
use fleetbus_schema::{ApiEndpoint, UserName};
use fleetbus_tests::works::{condition, config_map, create_work, data_of, one_cluster, work_json};
use fleetbus_tests::{Fleet, eventually};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;
use kube::api::PostParams;
use prost::Message;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_say_why_and_the_rest_applies() -> anyhow::Result<()> {
    let (fleet, kube, _spoke) = one_cluster("cluster1").await?;
    let manifests = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: lost, namespace: nowhere}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: Bad_Name, namespace: default}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: good, namespace: default}
data: {k: fine}
"#;
    let err = create_work(
        &fleet,
        "mixed",
        "cluster1",
        manifests,
        &["--wait", "--wait-timeout", "30s"],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("manifestwork mixed failed on cluster cluster1: not applied: 3 of 4 manifests failed to apply"), "{err}");
    for want in [
        r#"manifests[0] Widget w: no matches for kind "Widget" in version "example.com/v1""#,
        r#"manifests[1] ConfigMap nowhere/lost: namespaces "nowhere" not found"#,
        r#"manifests[2] ConfigMap default/Bad_Name: ConfigMap "Bad_Name" is invalid"#,
    ] {
        assert!(err.contains(want), "{want} missing in {err}");
    }
    assert_eq!(data_of(&kube, "good").await.as_deref(), Some("fine"));
    let w = work_json(&fleet, "mixed", "cluster1").await?;
    assert_eq!(
        condition(&w["status"]["conditions"], "Degraded").unwrap()["status"],
        "True"
    );

    // Input that never reaches the hub: clear errors, nothing stored.
    let err = create_work(
        &fleet,
        "broken",
        "cluster1",
        "kind: ConfigMap\n---\nkind: [unclosed\n",
        &[],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("document 2:"), "{err}");
    let err = create_work(
        &fleet,
        "unnamed",
        "cluster1",
        "apiVersion: v1\nkind: ConfigMap\n",
        &[],
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(err, "manifests[0]: ConfigMap has no metadata.name");
    let table = fleet.cli(&["get", "work"]).await?;
    assert_eq!(table.lines().count(), 2, "{table}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_work_round_trips_and_oversize_is_refused() -> anyhow::Result<()> {
    let (fleet, kube, _spoke) = one_cluster("cluster1").await?;
    let filler = "x".repeat(850 * 1024);
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big-{i}, namespace: default}}\ndata: {{k: {filler}}}\n"));
    }
    assert!(text.len() > 8 * 1024 * 1024);
    create_work(
        &fleet,
        "big",
        "cluster1",
        &text,
        &["--wait", "--wait-timeout", "60s"],
    )
    .await?;
    for i in 0..10 {
        assert_eq!(
            data_of(&kube, &format!("big-{i}")).await.map(|d| d.len()),
            Some(filler.len())
        );
    }
    let w = work_json(&fleet, "big", "cluster1").await?;
    assert!(
        w["spec"]["workload"]["manifestsSizeBytes"]
            .as_i64()
            .unwrap()
            > 8 * 1024 * 1024
    );
    assert_eq!(
        w["spec"]["workload"]["manifests"],
        Value::Null,
        "too large to show inline"
    );

    let mut huge = String::new();
    for i in 0..20 {
        huge.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: huge-{i}, namespace: default}}\ndata: {{k: {filler}}}\n"));
    }
    let err = create_work(&fleet, "huge", "cluster1", &huge, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 16 MiB"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_without_rights_reports_the_apiservers_refusal() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("cluster1").await?;
    // The spoke runs as a service account that may manage ConfigMaps and namespaces only.
    let admin = kube.admin_client().await?;
    let rbac = serde_yaml::from_str::<ClusterRole>(
        "metadata: {name: limited}\nrules:\n- {apiGroups: [''], resources: [configmaps, namespaces], verbs: ['*']}\n",
    )?;
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &rbac)
        .await?;
    let binding = serde_yaml::from_str::<ClusterRoleBinding>(
        "metadata: {name: limited}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: limited}\nsubjects: [{kind: ServiceAccount, name: limited, namespace: default}]\n",
    )?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin, "default");
    accounts
        .create(
            &PostParams::default(),
            &serde_yaml::from_str("metadata: {name: limited}")?,
        )
        .await?;
    let token: TokenRequest = accounts
        .create_subresource(
            "token",
            "limited",
            &PostParams::default(),
            &TokenRequest::default(),
        )
        .await?;
    let kubeconfig = fleet.nats.dir.path().join("limited.kubeconfig");
    std::fs::write(
        &kubeconfig,
        KubeServer::kubeconfig_for(
            &kube.url,
            &kube.ca_pem,
            &token.status.unwrap().token,
            "limited",
        ),
    )?;
    let mut config = fleet.spoke_config("cluster1", Some(&kube))?;
    config.kubeconfig = Some(kubeconfig);
    let _spoke = fleet.join(config, ConditionStatus::True).await?;

    let manifests = format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: default}}\n",
        config_map("allowed", "yes")
    );
    let err = create_work(&fleet, "mixed", "cluster1", &manifests, &["--wait"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"manifests[1] Secret default/s: secrets "s" is forbidden: User "system:serviceaccount:default:limited" cannot"#),
        "{err}"
    );
    assert_eq!(data_of(&kube, "allowed").await.as_deref(), Some("yes"));
    Ok(())
}

/// Field 15 (length-delimited, "new"): a field no message of this version has.
const UNKNOWN_FIELD: [u8; 5] = [0x7a, 0x03, b'n', b'e', b'w'];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_work_with_unknown_protobuf_fields_applies() -> anyhow::Result<()> {
    let (fleet, kube, _spoke) = one_cluster("cluster1").await?;
    let client = HubClient::connect(&fleet.flags_for("admin")?).await?;
    let manifests = |name: &str| {
        Manifests {
        objects: vec![
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"default"}},"data":{{"k":"v"}}}}"#)
                .into_bytes(),
        ],
    }
    };
    let work = |name: &str| ManifestWork {
        name: name.into(),
        cluster: "cluster1".into(),
        ..Default::default()
    };

    // Uploaded: the client's bytes, unknown field included, are what the hub receives.
    let mut uploaded = manifests("uploaded").encode_to_vec();
    uploaded.extend_from_slice(&UNKNOWN_FIELD);
    let chunk = UploadChunk {
        upload_id: "small-upload".into(),
        index: 0,
        data: uploaded,
    };
    let _: Empty = client.call(ApiEndpoint::WorkUpload, &chunk).await?;
    let request = CreateWorkRequest {
        work: Some(work("uploaded")),
        upload_id: "small-upload".into(),
        upload_chunks: 1,
        ..Default::default()
    };
    let stored: ManifestWork = client.call(ApiEndpoint::WorkCreate, &request).await?;
    assert_eq!(
        stored.manifests_digest,
        fleetbus_schema::manifests::digest(&manifests("uploaded"))
    );

    // Inline: unknown fields in the request and in its manifests.
    let mut inline = manifests("inline").encode_to_vec();
    inline.extend_from_slice(&UNKNOWN_FIELD);
    let mut raw = CreateWorkRequest {
        work: Some(work("inline")),
        ..Default::default()
    }
    .encode_to_vec();
    raw.push(0x1a); // field 3, length-delimited: the manifests
    prost::encoding::encode_varint(inline.len() as u64, &mut raw);
    raw.extend_from_slice(&inline);
    raw.extend_from_slice(&UNKNOWN_FIELD);
    let subject = client
        .subjects()
        .api(&UserName::new("admin")?, ApiEndpoint::WorkCreate);
    let reply = client.nats().request(subject, raw.into()).await?;
    assert!(reply.headers.is_none(), "{:?}", reply.headers);

    for name in ["uploaded", "inline"] {
        eventually(
            &format!("work {name} applied"),
            Duration::from_secs(30),
            || async {
                let w = work_json(&fleet, name, "cluster1").await.ok()?;
                (condition(&w["status"]["conditions"], "Applied")?["status"] == "True")
                    .then_some(())
            },
        )
        .await?;
        assert_eq!(data_of(&kube, name).await.as_deref(), Some("v"));
        let got: ManifestWork = client
            .call(
                ApiEndpoint::WorkGet,
                &WorkRef {
                    cluster: "cluster1".into(),
                    name: name.into(),
                },
            )
            .await?;
        assert_eq!(got.manifests, Some(manifests(name)));
    }
    Ok(())
}
