//! kubectl to a cluster through the NATS tunnel, for real: the seed's example with the
//! apiserver's own Forbidden message, watches, a 20 MB LIST byte for byte, slow readers,
//! cancellation, authorization and an offline cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetbus_cli::hub_client::HubClient;
use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_cli::proxy::tunnel::{Tunnel, TunnelError};
use fleetbus_schema::v1::ConditionStatus;
use fleetbus_schema::{ClusterName, Identity, UserName};
use fleetbus_tests::{Fleet, eventually};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

const WAIT: Duration = Duration::from_secs(30);
const FORBIDDEN: &str = r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:open-cluster-management-managed-serviceaccount:dep" cannot list resource "pods" in API group "" at the cluster scope"#;

/// `fleetbus proxy kubectl --cluster cluster1 --sa dep -- ARGS` as `user`.
fn kubectl_as(fleet: &Fleet, user: &str, args: &[&str]) -> Command {
    fleet.proxy_kubectl(user, "cluster1", "dep", args)
}

/// Creates `count` ConfigMaps `<prefix>-N` in `default` of ~`4 * repeat` bytes each, and
/// returns the path of their LIST and its body read directly from the apiserver.
async fn big_configmaps(
    kube: &KubeServer,
    prefix: &str,
    count: usize,
    repeat: usize,
) -> anyhow::Result<(&'static str, String)> {
    let admin = kube.admin_client().await?;
    let configmaps = Api::<ConfigMap>::namespaced(admin.clone(), "default");
    for i in 0..count {
        let mut data = std::collections::BTreeMap::new();
        data.insert("blob".to_owned(), format!("{i:04}").repeat(repeat));
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("{prefix}-{i}")),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        configmaps.create(&PostParams::default(), &cm).await?;
    }
    let path = "/api/v1/namespaces/default/configmaps";
    let direct = admin
        .request_text(
            http::Request::get(path)
                .header("accept", "application/json")
                .body(Vec::new())?,
        )
        .await?;
    Ok((path, direct))
}

/// A fleet with cluster1 on a real apiserver, accepted, and MSA `dep` that may list deployments
/// and configmaps, granted to alice.
struct Seed {
    fleet: Fleet,
    kube: KubeServer,
    spoke: fleetbus_tests::fleet::Running,
    stats: std::sync::Arc<fleetbus_spoke::config::Stats>,
}

impl Seed {
    fn streams(&self) -> usize {
        self.stats.active_streams.load(Ordering::Relaxed)
    }
}

async fn seed() -> anyhow::Result<Seed> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("cluster1").await?;
    let config = fleet.spoke_config("cluster1", Some(&kube))?;
    let stats = config.stats.clone();
    let spoke = fleet.join(config, ConditionStatus::True).await?;
    fleet
        .create_msa_with_rules("dep", "- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [get, list, watch]\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, watch]\n")
        .await?;
    fleet.reported_token("dep", "cluster1").await?;
    fleet
        .cli(&["grant", "alice", "--cluster", "cluster1", "--msa", "dep"])
        .await?;
    Ok(Seed {
        fleet,
        kube,
        spoke,
        stats,
    })
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
    eventually("streams freed after the watch ended", idle, || async {
        (seed.streams() == 0).then_some(())
    })
    .await?;
    Ok(())
}

async fn tunnel_as(fleet: &Fleet, user: &str) -> anyhow::Result<(HubClient, Tunnel)> {
    let hub = HubClient::connect(&fleet.flags_for(user)?).await?;
    let tunnel = Tunnel::new(
        hub.nats().clone(),
        hub.subjects().clone(),
        ClusterName::new("cluster1")?,
        hub.user().clone(),
    );
    Ok((hub, tunnel))
}

fn get(path: &str, token: &str) -> http::request::Parts {
    let request = http::Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .body(())
        .unwrap();
    request.into_parts().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_list_arrives_byte_identical_even_to_a_slow_reader() -> anyhow::Result<()> {
    let seed = seed().await?;
    let (fleet, kube) = (&seed.fleet, &seed.kube);
    let (path, direct) = big_configmaps(kube, "big", 21, 250_000).await?;
    assert!(direct.len() >= 20_000_000, "{}", direct.len());

    let (_hub, tunnel) = tunnel_as(fleet, "admin").await?;
    let response = tunnel
        .request(&get(path, &kube.admin_token), Bytes::new(), "test-big-list")
        .await?;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await?.to_bytes();
    assert!(
        body == direct.as_bytes(),
        "tunnel body differs ({} vs {} bytes)",
        body.len(),
        direct.len()
    );

    // A slow reader: the spoke waits for credit; nothing is lost.
    let response = tunnel
        .request(&get(path, &kube.admin_token), Bytes::new(), "test-slow")
        .await?;
    let mut body = response.into_body();
    let mut received = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received.extend_from_slice(&data);
            if received.len() < 8_000_000 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(received == direct.as_bytes());

    // Cancelled mid-body: the stream is freed on the spoke.
    let response = tunnel
        .request(&get(path, &kube.admin_token), Bytes::new(), "test-cancel")
        .await?;
    let mut body = response.into_body();
    let _first = body.frame().await;
    assert!(seed.streams() >= 1);
    drop(body);
    eventually("the cancelled stream freed", WAIT, || async {
        (seed.streams() == 0).then_some(())
    })
    .await?;

    // The request id is the Audit-ID in the member cluster's own audit log (and, from
    // Kubernetes 1.21 on, in the response).
    let id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    let response = tunnel
        .request(&get("/api", &kube.admin_token), Bytes::new(), id)
        .await?;
    if let Some(echo) = response.headers().get("audit-id") {
        assert_eq!(echo, id);
    }
    let event = eventually("the proxy.request audit event", WAIT, || async {
        let all = fleet.audit_events().await.ok()?;
        all.into_iter()
            .map(|(_, e)| e)
            .find(|e| e.kind == "proxy" && e.request_id == id)
    })
    .await?;
    assert_eq!(
        (
            event.actor.as_str(),
            event.cluster.as_str(),
            event.object.as_str(),
            event.code
        ),
        ("user:admin", "cluster1", "GET /api", 200)
    );
    eventually("the id in the apiserver's audit log", WAIT, || async {
        std::fs::read_to_string(&kube.audit_log)
            .ok()?
            .contains(&format!("\"auditID\":\"{id}\""))
            .then_some(())
    })
    .await?;

    // Offline: a clear error at once, not a hang.
    seed.spoke.stop().await?;
    fleet
        .wait_available("cluster1", ConditionStatus::Unknown, WAIT)
        .await?;
    let started = Instant::now();
    let err = tunnel
        .request(&get("/api", &kube.admin_token), Bytes::new(), "offline")
        .await
        .unwrap_err();
    assert!(matches!(err, TunnelError::Offline(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "cluster cluster1 is not connected to the hub"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let health = fleet
        .command_as("admin", &["proxy", "health", "--cluster", "cluster1"])
        .output()?;
    assert!(!health.status.success());
    assert!(String::from_utf8_lossy(&health.stdout).contains("unreachable"));
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
        .request(&get("/healthz", "x"), Bytes::new(), "granted")
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
    let (open, _) = open.encode(0)?;
    let forged = format!(
        "{}.forged",
        fleet.nats.subjects.inbox(&Identity::User(bob.clone()))
    );
    client
        .publish_with_reply_and_headers(
            fleet.nats.subjects.kapi_open(&c1, &alice),
            forged.clone(),
            open,
            Bytes::new(),
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
            .request(&get("/api", &kube.admin_token), Bytes::new(), "wrong-ca")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_lists_are_whole_while_other_clients_hang_up() -> anyhow::Result<()> {
    let seed = seed().await?;
    let (fleet, kube) = (&seed.fleet, &seed.kube);
    let (path, direct) = big_configmaps(kube, "load", 8, 125_000).await?;
    assert!(direct.len() >= 4_000_000, "{}", direct.len());
    let direct = Bytes::from(direct);

    let (_hub, tunnel) = tunnel_as(fleet, "admin").await?;
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (tunnel, token, direct) = (tunnel.clone(), kube.admin_token.clone(), direct.clone());
        clients.spawn(async move {
            let id = format!("test-load-{i}");
            let response = tunnel
                .request(&get(path, &token), Bytes::new(), &id)
                .await?;
            anyhow::ensure!(response.status() == 200, "{id}: {}", response.status());
            let mut body = response.into_body();
            let mut received = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    received.extend_from_slice(&data);
                }
                // Every third client hangs up mid-body.
                if i % 3 == 0 && received.len() > 1_000_000 {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                received == direct,
                "{id}: {} of {} bytes",
                received.len(),
                direct.len()
            );
            Ok(())
        });
    }
    while let Some(result) = clients.join_next().await {
        result??;
    }
    eventually("every stream freed", WAIT, || async {
        (seed.streams() == 0).then_some(())
    })
    .await?;
    Ok(())
}

/// Python's own `http.client` (no fleetbus code) through the real `fleetbus proxy serve`, the
/// way truncated responses were first seen: 8 clients on keep-alive connections LIST 20 MB at
/// once, a third of them hang up mid-body, and every other response is byte-identical to the
/// one read directly from the apiserver. The keep-alive latency of a 20 KB GET (48 ms when
/// Nagle met delayed ACKs) is printed, not judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_clients_through_proxy_serve_get_whole_lists() -> anyhow::Result<()> {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 2;
    let seed = seed().await?;
    let (fleet, kube) = (&seed.fleet, &seed.kube);
    let small = kube::api::ObjectMeta {
        name: Some("small".into()),
        ..Default::default()
    };
    let small = ConfigMap {
        metadata: small,
        data: Some([("blob".to_owned(), "x".repeat(20_000))].into()),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(kube.admin_client().await?, "kube-public")
        .create(&PostParams::default(), &small)
        .await?;
    // Last: the LIST's resourceVersion is etcd's revision when it was read.
    let (path, direct) = big_configmaps(kube, "py", 20, 250_000).await?;
    assert!(direct.len() >= 20_000_000, "{}", direct.len());
    let digest = fleetbus_tests::sha256(direct.as_bytes());
    let dir = fleet.nats.dir.path();
    let kubeconfig = dir.join("alice.kubeconfig");
    let announced = dir.join("serve.out");
    let mut serve = fleet
        .command_as(
            "alice",
            &["proxy", "serve", "--cluster", "cluster1", "--sa", "dep"],
        )
        .arg("--kubeconfig-out")
        .arg(&kubeconfig)
        .stdout(std::fs::File::create(&announced)?)
        .spawn()?;
    let up = eventually("proxy serve announcing its kubeconfig", WAIT, || async {
        let out = std::fs::read_to_string(&announced).unwrap_or_default();
        out.contains("kubeconfig (0600)").then_some(())
    })
    .await;
    if let Err(e) = up {
        let _ = serve.kill();
        return Err(e);
    }
    let config: serde_yaml::Value = serde_yaml::from_slice(&std::fs::read(&kubeconfig)?)?;
    let server = config["clusters"][0]["cluster"]["server"].as_str().unwrap();
    let ca = config["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .unwrap();
    let token = config["users"][0]["user"]["token"].as_str().unwrap();
    let ca_file = dir.join("proxy-ca.pem");
    {
        use base64::Engine;
        std::fs::write(
            &ca_file,
            base64::engine::general_purpose::STANDARD.decode(ca)?,
        )?;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/http_through_proxy.py");
    let child = Command::new(fleetbus_tests::python::python()?)
        .arg(script)
        .arg(server)
        .arg(&ca_file)
        .arg(token)
        .arg(path)
        .arg(&digest)
        .arg(CLIENTS.to_string())
        .arg(ROUNDS.to_string())
        .arg("/api/v1/namespaces/kube-public/configmaps/small")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let run = fleetbus_tests::python::wait(child, Duration::from_secs(300)).await;
    let _ = serve.kill();
    let _ = serve.wait();
    let run = run?;
    assert!(run.ok, "{}", run.stderr);
    let lines = run.json_lines()?;
    println!("{}", run.stdout);
    let clients: Vec<_> = lines.iter().filter(|l| l.get("client").is_some()).collect();
    assert_eq!(clients.len(), CLIENTS, "{}", run.stdout);
    for client in clients {
        assert_eq!(client["errors"], serde_json::json!([]), "{client}");
        if client.get("hung_up").is_none() {
            assert_eq!(client["whole"], ROUNDS, "{client}");
        }
    }
    assert!(
        lines.iter().any(|l| l.get("get_p50_ms").is_some()),
        "{}",
        run.stdout
    );
    eventually("every stream freed", WAIT, || async {
        (seed.streams() == 0).then_some(())
    })
    .await?;
    Ok(())
}
