//! A spoke in a private network behind a leaf node: a second nats-server, configured by
//! `nats/leaf/leaf.conf`, dials the hub's leafnode listener with the bootstrap identity and the
//! spoke's identity, and the spoke connects only to it. It joins, becomes Available, and a
//! managed service account's token flows. Over that leaf, another cluster's subjects are not
//! delivered in either direction; denying the cluster closes its leaf link; and a leaf that
//! dials with a user's certificate is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use fleetbus_cli::cli::Cli;
use fleetbus_nats::server::{find_binary, free_port, wait_listening};
use fleetbus_nats::{TlsFiles, connect};
use fleetbus_schema::v1::{ConditionStatus, Heartbeat};
use fleetbus_schema::{ClusterName, HubTopic, Identity, UserName};
use fleetbus_tests::{Fleet, NatsEnv, eventually};
use futures::StreamExt;
use prost::Message;

const WAIT: Duration = Duration::from_secs(30);

/// The leaf node: `nats/leaf/leaf.conf` run as documented, in its own working folder.
struct Leaf {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    hub_url: String,
}

impl Leaf {
    /// Lays out the folder the config expects and starts the server. The spoke link carries
    /// the bootstrap identity until [`Leaf::use_identity`] gives it another.
    async fn start(fleet: &Fleet, hub_url: String) -> anyhow::Result<Self> {
        let dir = fleet.nats.dir.path().join("leaf");
        let pki = fleet.nats.pki.root();
        std::fs::create_dir_all(dir.join("pki"))?;
        // The leaf's certificate for the name the spoke dials, as README says to make it.
        let argv = [
            "fleetbus",
            "certs",
            "server",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--dir",
        ];
        let cli = Cli::try_parse_from(argv.iter().copied().chain([pki.to_str().unwrap()]))?;
        let mut out = Vec::new();
        fleetbus_cli::run(cli, &mut out).await?;
        let (cert, key) = fleet.nats.pki.server("localhost");
        assert!(String::from_utf8(out)?.contains(cert.to_str().unwrap()));
        std::fs::copy(cert, dir.join("pki/leaf.crt"))?;
        std::fs::copy(key, dir.join("pki/leaf.key"))?;
        for file in ["ca.crt", "bootstrap.crt", "bootstrap.key"] {
            std::fs::copy(pki.join(file), dir.join("pki").join(file))?;
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        std::fs::copy(repo.join("nats/leaf/leaf.conf"), dir.join("leaf.conf"))?;
        let mut leaf = Self {
            child: None,
            dir,
            port: free_port()?,
            hub_url,
        };
        leaf.copy_identity(&fleet.nats.pki.tls("bootstrap"))?;
        leaf.spawn()?;
        Ok(leaf)
    }

    fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("leaf.log")).unwrap_or_default()
    }

    fn copy_identity(&self, tls: &TlsFiles) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.dir.join("identity"))?;
        std::fs::copy(&tls.cert, self.dir.join("identity/tls.crt"))?;
        std::fs::copy(&tls.key, self.dir.join("identity/tls.key"))?;
        Ok(())
    }

    /// Gives the spoke link `tls`'s identity and restarts the server, as README describes.
    fn use_identity(&mut self, tls: &TlsFiles) -> anyhow::Result<()> {
        self.copy_identity(tls)?;
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("leaf.log"))?;
        self.child = Some(
            Command::new(find_binary()?)
                .current_dir(&self.dir)
                .args(["-c", "leaf.conf", "-p", &self.port.to_string()])
                .env("FLEETBUS_HUB_LEAF_URL", &self.hub_url)
                .env(
                    "FLEETBUS_SPOKE_IDENTITY",
                    Identity::Spoke(ClusterName::new("cluster1")?).uri(),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
        wait_listening("127.0.0.1", self.port, Duration::from_secs(15))?;
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fleet whose nats-server has a leafnode listener, and that listener's URL.
async fn fleet_with_leafnodes() -> anyhow::Result<(Fleet, String)> {
    let port = free_port()?;
    let nats = NatsEnv::start_with(|c| {
        c.leafnode_port = Some(port);
        Ok(())
    })?;
    let url = nats.server.config().leafnode_url().unwrap();
    Ok((Fleet::start_on(nats, |_| {}).await?, url))
}

/// A client of the leaf with `tls`'s identity.
async fn leaf_client(
    fleet: &Fleet,
    leaf: &Leaf,
    tls: &TlsFiles,
    identity: &Identity,
) -> anyhow::Result<async_nats::Client> {
    let options = connect::options(tls, &fleet.nats.subjects, identity);
    Ok(connect::connect(&leaf.url(), tls, identity, options).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_behind_a_leaf_node_joins_works_and_reaches_only_its_own_subjects()
-> anyhow::Result<()> {
    let (fleet, hub_leaf_url) = fleet_with_leafnodes().await?;
    let kube = fleet.kube("cluster1").await?;
    let mut leaf = Leaf::start(&fleet, hub_leaf_url).await?;
    let mut config = fleet.spoke_config("cluster1", Some(&kube))?;
    config.nats_url = leaf.url();
    let spoke_tls = config.spoke_tls();
    let spoke = fleet.start_spoke(config);

    // The join travels over the leaf's bootstrap link.
    eventually("cluster1 asks to join through the leaf", WAIT, || async {
        fleet.cluster("cluster1").await.ok()?.map(|_| ())
    })
    .await?;
    fleet.cli(&["accept", "cluster1"]).await?;
    eventually("the spoke's certificate", WAIT, || async {
        spoke_tls.cert.is_file().then_some(())
    })
    .await?;

    // The leaf's spoke link takes the spoke's identity; heartbeats reach the hub.
    leaf.use_identity(&spoke_tls)?;
    fleet
        .wait_available("cluster1", ConditionStatus::True, WAIT)
        .await?;
    fleet
        .cli(&["create", "msa", "dep", "--cluster", "cluster1"])
        .await?;
    // Made behind the leaf.
    let token = fleet.reported_token("dep", "cluster1").await?;
    assert!(token.trim().len() > 100);

    // Another cluster's subjects, through the same leaf with the same identity.
    let subjects = &fleet.nats.subjects;
    let (c1, c2) = (ClusterName::new("cluster1")?, ClusterName::new("cluster2")?);
    let me = Identity::Spoke(c1.clone());
    let local = leaf_client(&fleet, &leaf, &spoke_tls, &me).await?;
    let hub = fleet.nats.connect_as(&Identity::Hub).await?;

    // Hub → leaf: cluster2's change notices never arrive; cluster1's, sent after them, do.
    let mut other = local.subscribe(subjects.spoke_changed(&c2)).await?;
    let mut own = local.subscribe(subjects.spoke_changed(&c1)).await?;
    local.flush().await?;
    // Interest crosses the leaf link asynchronously: publish until cluster1's notice arrives.
    let deadline = Instant::now() + WAIT;
    loop {
        hub.publish(subjects.spoke_changed(&c2), "not yours".into())
            .await?;
        hub.publish(subjects.spoke_changed(&c1), "yours".into())
            .await?;
        hub.flush().await?;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), own.next()).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cluster1's notice never crossed the leaf"
        );
    }
    let leaked = tokio::time::timeout(Duration::from_millis(500), other.next()).await;
    assert!(leaked.is_err(), "cluster2's notice reached cluster1's leaf");

    // Leaf → hub: a heartbeat forged for cluster2 is dropped; cluster1's, sent after it, arrives.
    let probe = Heartbeat {
        sequence: u64::MAX,
        ..Default::default()
    }
    .encode_to_vec();
    let mut beats = hub
        .subscribe(subjects.hub_topic_all(HubTopic::Heartbeat))
        .await?;
    hub.flush().await?;
    let (forged, own) = (
        subjects.hub(&c2, HubTopic::Heartbeat),
        subjects.hub(&c1, HubTopic::Heartbeat),
    );
    let mut arrived = Vec::new();
    let deadline = Instant::now() + WAIT;
    'sent: loop {
        local.publish(forged.clone(), probe.clone().into()).await?;
        local.publish(own.clone(), probe.clone().into()).await?;
        local.flush().await?;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), beats.next()).await
        {
            arrived.push(m.subject.to_string());
            if m.payload == probe && m.subject.as_str() == own {
                break 'sent;
            }
        }
        assert!(
            Instant::now() < deadline,
            "cluster1's probe never crossed the leaf"
        );
    }
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), beats.next()).await {
        arrived.push(m.subject.to_string());
    }
    assert!(
        !arrived.contains(&forged),
        "cluster2's heartbeat passed the leaf: {arrived:?}"
    );
    assert!(!spoke.is_finished());

    // Deny: the hub closes the leaf link that carries cluster1 (nats-server lists leaf links with
    // their callout user, so the revocation's kick finds it) and refuses it from then on.
    let violations = |leaf: &Leaf| leaf.log().matches("Authorization Violation").count();
    assert_eq!(violations(&leaf), 0);
    fleet.cli(&["deny", "cluster1"]).await?;
    eventually("the leaf's cluster1 link refused", WAIT, || async {
        (violations(&leaf) > 0).then_some(())
    })
    .await?;
    eventually("cluster1 no longer available", WAIT, || async {
        let cluster = fleet.cluster("cluster1").await.ok()??;
        let available = cluster
            .conditions
            .iter()
            .any(|c| c.r#type == "ManagedClusterConditionAvailable");
        (!available).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_leaf_that_dials_with_a_user_certificate_is_refused() -> anyhow::Result<()> {
    let (fleet, hub_leaf_url) = fleet_with_leafnodes().await?;
    let mut leaf = Leaf::start(&fleet, hub_leaf_url).await?;
    let alice = fleet
        .nats
        .tls_for(&Identity::User(UserName::new("alice")?))?;
    leaf.use_identity(&alice)?;
    // A user may connect as a client, never as a leaf node: the server says so to the leaf.
    eventually("the hub refusing alice's leaf link", WAIT, || async {
        let log = leaf.log();
        log.lines()
            .any(|l| l.contains("Authorization Violation"))
            .then_some(())
    })
    .await
    .map_err(|e| e.context(leaf.log()))?;
    assert!(
        fleet
            .nats
            .connect_as(&Identity::User(UserName::new("alice")?))
            .await
            .is_ok()
    );
    Ok(())
}
