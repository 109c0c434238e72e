//! kubectl to a cluster through the NATS tunnel, for real: the seed's example with the
//! apiserver's own Forbidden message, watches, cancellation, authorization, who the audit
//! names, and an apiserver with an unexpected CA. Large responses: `proxy_large.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_schema::v1::ConditionStatus;
use fleetbus_schema::{ClusterName, Identity, UserName};
use fleetbus_tests::tunnel_seed::{get, no_stream_left, seed, tunnel_as};
use fleetbus_tests::{Fleet, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

const WAIT: Duration = Duration::from_secs(30);
const FORBIDDEN: &str = r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:open-cluster-management-managed-serviceaccount:dep" cannot list resource "pods" in API group "" at the cluster scope"#;

/// `fleetbus proxy kubectl --cluster cluster1 --sa dep -- ARGS` as `user`.
fn kubectl_as(fleet: &Fleet, user: &str, args: &[&str]) -> Command {
    fleet.proxy_kubectl(user, "cluster1", "dep", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_through_the_tunnel() -> anyhow::Result<()> {
    let seed = seed().await?;
    let (fleet, kube) = (&seed.fleet, &seed.kube);
    let out = kubectl_as(fleet, "alice", &["get", "deployments", "-A"]).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("No resources found"));
    let event = eventually(
        "alice's proxied request in the audit stream",
        WAIT,
        || async {
            let all = fleet.audit_events().await.ok()?;
            all.into_iter().map(|(_, e)| e).find(|e| {
                e.kind == "proxy" && e.object.starts_with("GET /apis/apps/v1/deployments")
            })
        },
    )
    .await?;
    assert_eq!(
        (
            event.actor.as_str(),
            event.service_account.as_str(),
            event.code
        ),
        ("user:alice", "dep", 200)
    );
    let out = kubectl_as(fleet, "alice", &["get", "pods", "-A"]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), FORBIDDEN);

    // The interactive mode, through its prompt.
    let mut child = fleet
        .command_as(
            "alice",
            &[
                "proxy",
                "kubectl",
                "--cluster",
                "cluster1",
                "--sa",
                "dep",
                "-i",
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"get deployments -A\nget pods -A\nexit\n")?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("Please enter the kubectl command and use \"exit\" to quit the interactive mode\nkubectl> "), "{stdout}");
    assert_eq!(stdout.matches("kubectl> ").count(), 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains(FORBIDDEN));
    assert!(out.status.success());

    // `proxy serve`: a kubeconfig (0600) any client uses unchanged, removed on Ctrl-C.
    let kubeconfig = fleet.nats.dir.path().join("served.kubeconfig");
    let mut serve = fleet
        .command_as(
            "alice",
            &[
                "proxy",
                "serve",
                "--cluster",
                "cluster1",
                "--sa",
                "dep",
                "--kubeconfig-out",
                kubeconfig.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::null())
        .spawn()?;
    eventually("the served kubeconfig", WAIT, || {
        let ready = kubeconfig.is_file();
        async move { ready.then_some(()) }
    })
    .await?;
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&kubeconfig)?.permissions().mode() & 0o777,
            0o600
        );
    }
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "deployments", "-A"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Command::new("kill")
        .args(["-INT", &serve.id().to_string()])
        .status()?;
    assert!(serve.wait()?.success());
    assert!(!kubeconfig.exists(), "the kubeconfig outlived the proxy");

    // A watch delivers what happens after it started.
    let mut watch = kubectl_as(
        fleet,
        "alice",
        &["get", "configmaps", "-n", "default", "-w", "-o", "name"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()?;
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let admin = kube.admin_client().await?;
    let cm = |name: &str| ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(admin, "default")
        .create(&PostParams::default(), &cm("after-watch"))
        .await?;
    let seen = eventually("the watch event", WAIT, || {
        let got = lines.try_iter().find(|l| l.contains("after-watch"));
        async move { got }
    })
    .await?;
    assert_eq!(seen, "configmap/after-watch");
    watch.kill()?;
    watch.wait()?;
    // The killed client sent no cancel: the spoke notices the silence after the idle timeout.
    let idle = fleetbus_schema::tunnel::IDLE_TIMEOUT + Duration::from_secs(10);
    no_stream_left(&seed.stats, idle).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_granted_users_reach_a_clusters_tunnel() -> anyhow::Result<()> {
    let seed = seed().await?;
    let fleet = &seed.fleet;
    // Through the CLI: bob has no grant.
    let out = kubectl_as(fleet, "bob", &["get", "ns"]).output()?;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: user bob is not granted managed service account dep on cluster cluster1"
    );

    // Server-enforced: bob's own connection may not publish to the tunnel subjects.
    let bob = Identity::User(UserName::new("bob")?);
    let mut observed = fleet
        .nats
        .observed(&fleet.nats.tls_for(&bob)?, &bob)
        .await?;
    let c1 = ClusterName::new("cluster1")?;
    let bob_name = UserName::new("bob")?;
    observed
        .publish_refused(fleet.nats.subjects.kapi_open(&c1, &bob_name))
        .await?;
    observed
        .publish_refused(fleet.nats.subjects.kapi_stream(&c1, &bob_name, "r", "s"))
        .await?;

    // Alice may, and loses it when revoked.
    let (_hub, tunnel) = tunnel_as(fleet, "alice").await?;
    let ok = tunnel
        .request(&get("/healthz", "x")?, Bytes::new(), "granted")
        .await?;
    assert_eq!(
        ok.status(),
        401,
        "the apiserver itself judges the bogus token"
    );
    fleet
        .cli(&["revoke", "alice", "--cluster", "cluster1", "--msa", "dep"])
        .await?;
    let alice_name = UserName::new("alice")?;
    let alice = Identity::User(alice_name.clone());
    let mut observed = fleet
        .nats
        .observed(&fleet.nats.tls_for(&alice)?, &alice)
        .await?;
    observed
        .publish_refused(fleet.nats.subjects.kapi_open(&c1, &alice_name))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_names_who_sent_a_request_whatever_reply_subject_she_picks() -> anyhow::Result<()>
{
    let seed = seed().await?;
    let fleet = &seed.fleet;
    let c1 = ClusterName::new("cluster1")?;
    let (alice, bob) = (UserName::new("alice")?, UserName::new("bob")?);
    // Granted alice names bob in the subject: nats-server refuses it.
    let as_alice = Identity::User(alice.clone());
    let mut observed = fleet
        .nats
        .observed(&fleet.nats.tls_for(&as_alice)?, &as_alice)
        .await?;
    observed
        .publish_refused(fleet.nats.subjects.kapi_open(&c1, &bob))
        .await?;
    // Under her own name, with a reply subject inside bob's inbox: the spoke refuses to answer,
    // and the audit names alice.
    let client = fleet.nats.connect_as(&as_alice).await?;
    let open = fleetbus_nats::tunnel::Frame::Open(fleetbus_nats::tunnel::Open {
        path: "/api/v1/namespaces".into(),
        request_id: "forged".into(),
        ..Default::default()
    });
    let (open, payload) = open.encode(0)?;
    let forged = format!(
        "{}.forged",
        fleet.nats.subjects.inbox(&Identity::User(bob.clone()))
    );
    client
        .publish_with_reply_and_headers(
            fleet.nats.subjects.kapi_open(&c1, &alice),
            forged.clone(),
            open,
            payload,
        )
        .await?;
    client.flush().await?;
    let denied = eventually(
        "the refused request in the audit stream",
        Duration::from_secs(30),
        || async {
            let events = fleetbus_tests::audit::events(fleet).await.ok()?;
            events
                .into_iter()
                .map(|(_, e)| e)
                .find(|e| e.kind == "proxy" && e.outcome == "denied")
        },
    )
    .await?;
    assert_eq!(denied.actor, "user:alice");
    assert_eq!(denied.cluster, "cluster1");
    assert_eq!(
        denied.message,
        format!("reply subject {forged} is not the sender's inbox")
    );
    let events = fleetbus_tests::audit::events(fleet).await?;
    assert!(
        events.iter().all(|(_, e)| e.actor != "user:bob"),
        "nothing is attributed to bob"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apiserver_with_an_unexpected_ca_is_a_clear_error() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("cluster1").await?;
    // The spoke's kubeconfig names another CA than the one that signed the apiserver.
    let (other, _) =
        fleetbus_nats::pki::Ca::generate("not the apiserver's CA", Duration::from_secs(3600))?;
    let forged =
        KubeServer::kubeconfig_for(&kube.url, other.cert_pem(), &kube.admin_token, "admin");
    let path = fleet.nats.dir.path().join("wrong-ca.kubeconfig");
    std::fs::write(&path, forged)?;
    let mut config = fleet.spoke_config("cluster1", None)?;
    config.kubeconfig = Some(path);
    let _spoke = fleet.join(config, ConditionStatus::False).await?;
    let (_hub, tunnel) = tunnel_as(&fleet, "admin").await?;
    for _ in 0..2 {
        let err = tunnel
            .request(&get("/api", &kube.admin_token)?, Bytes::new(), "wrong-ca")
            .await
            .unwrap_err();
        assert_eq!(err.status(), 502, "{err}");
        assert!(
            err.to_string().contains("cannot reach the kube-apiserver")
                && err.to_string().contains("certificate"),
            "{err}"
        );
    }
    Ok(())
}
