//! Services meet a world that is not ready: a missing certificate volume, a nats-server that
//! is not reachable yet, a kube-apiserver that is not up yet. Each says so in one clear log
//! line, retries with backoff without crashing or losing state, and carries on once the
//! problem is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::net::SocketAddr;
use std::time::Duration;

use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_nats::server::free_port;
use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::{Fleet, Forward, captured_logs, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Log lines of the fleetbus crates that contain `text` at `level` (`WARN`, `DEBUG`).
fn lines(level: &str, text: &str) -> usize {
    captured_logs()
        .lines()
        .filter(|l| l.contains(level) && l.contains(text))
        .count()
}

/// Waits until the spoke has retried `text`'s problem at least three more times.
async fn retried(text: &str, how: &str) -> anyhow::Result<()> {
    eventually(&format!("three retries after {text:?}"), WAIT, || async {
        (lines("DEBUG", how) >= 3).then_some(())
    })
    .await?;
    assert_eq!(
        lines("WARN", text),
        1,
        "one clear line, not one per attempt"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_bootstrap_volume_is_one_line_and_the_spoke_joins_once_it_appears()
-> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let mut config = fleet.spoke_config("c1", None)?;
    let bootstrap = fleet.nats.dir.path().join("not-mounted-yet");
    config.bootstrap.ca = bootstrap.join("ca.crt");
    config.bootstrap.cert = bootstrap.join("bootstrap.crt");
    config.bootstrap.key = bootstrap.join("bootstrap.key");
    let spoke = fleet.start_spoke(config);

    let missing = format!(
        "cannot read {}: No such file",
        bootstrap.join("ca.crt").display()
    );
    retried(&missing, "nats connection failed again").await?;
    assert!(!spoke.is_finished(), "no crash");
    assert!(fleet.cluster("c1").await?.is_none());

    std::fs::create_dir_all(&bootstrap)?;
    let pki = fleet.nats.pki.root();
    for file in ["ca.crt", "bootstrap.crt", "bootstrap.key"] {
        std::fs::copy(pki.join(file), bootstrap.join(file))?;
    }
    eventually("c1 asks to join once the volume is there", WAIT, || async {
        fleet.cluster("c1").await.ok()?.map(|_| ())
    })
    .await?;
    spoke.stop().await
}

#[tokio::test]
async fn an_unreachable_nats_is_one_line_and_the_spoke_joins_once_it_is_reachable()
-> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let port = free_port()?;
    let mut config = fleet.spoke_config("c1", None)?;
    config.nats_url = format!("tls://127.0.0.1:{port}");
    let spoke = fleet.start_spoke(config);

    let unreachable = format!("cannot connect to nats-server at tls://127.0.0.1:{port}");
    retried(&unreachable, "nats connection failed again").await?;
    assert!(!spoke.is_finished(), "no crash");

    // The hub's nats-server becomes reachable at that address (its certificate names 127.0.0.1).
    let nats: SocketAddr = fleet.nats.url().trim_start_matches("tls://").parse()?;
    let _route = Forward::start(port, nats).await?;
    eventually(
        "c1 asks to join once nats-server is reachable",
        WAIT,
        || async { fleet.cluster("c1").await.ok()?.map(|_| ()) },
    )
    .await?;
    assert!(captured_logs().contains("nats connection established"));
    spoke.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_started_before_its_apiserver_becomes_available_once_it_is() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("c1").await?;
    // The spoke's kubeconfig names an address where no apiserver answers yet.
    let port = free_port()?;
    let kubeconfig = fleet.nats.dir.path().join("later.kubeconfig");
    std::fs::write(
        &kubeconfig,
        KubeServer::kubeconfig_for(
            &format!("https://127.0.0.1:{port}"),
            &kube.ca_pem,
            &kube.admin_token,
            "admin",
        ),
    )?;
    let mut config = fleet.spoke_config("c1", Some(&kube))?;
    config.kubeconfig = Some(kubeconfig);
    // Its identity lives in the cluster, so it cannot even know its key yet.
    config.identity_secret = Some("spoke-identity".into());
    config.identity_poll = Duration::from_millis(200);
    let spoke = fleet.start_spoke(config);

    retried(
        "cannot use the identity secret yet; retrying",
        "identity secret still unusable",
    )
    .await?;
    assert!(!spoke.is_finished(), "no crash");
    assert!(fleet.cluster("c1").await?.is_none());

    let apiserver: SocketAddr = kube.url.trim_start_matches("https://").parse()?;
    let _route = Forward::start(port, apiserver).await?;
    eventually("c1 asks to join once the apiserver is up", WAIT, || async {
        fleet.cluster("c1").await.ok()?.map(|_| ())
    })
    .await?;
    fleet.cli(&["accept", "c1"]).await?;
    fleet
        .wait_available("c1", ConditionStatus::True, WAIT)
        .await?;
    spoke.stop().await
}
