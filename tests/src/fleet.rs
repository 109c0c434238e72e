//! A whole fleet in one test: nats-server, hub replicas and spokes run in-process through
//! their `run(config, shutdown)`, kube-apiservers as child processes, the CLI through its
//! library entry point.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fleetbus_cli::cli::{Cli, HubFlags};
use fleetbus_cli::hub_client::HubClient;
use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_schema::v1::{Cluster, ConditionStatus};
use fleetbus_schema::{ClusterName, Identity, UserName};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::nats_env::NatsEnv;
use crate::wait::eventually;

/// A running hub or spoke.
pub struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Requests shutdown and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .context("did not stop within 15s")??
    }

    /// Whether it has exited on its own.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Its result, once finished.
    pub async fn join(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// nats-server plus one hub.
pub struct Fleet {
    /// The NATS world.
    pub nats: NatsEnv,
    /// The first hub.
    pub hub: Option<Running>,
}

impl Fleet {
    /// Starts nats-server and a hub, and waits until the hub API answers.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Like [`Fleet::start`], adjusting the hub config first.
    pub async fn start_with(
        adjust: impl FnOnce(&mut fleetbus_hub::Config),
    ) -> anyhow::Result<Self> {
        Self::start_on(NatsEnv::start()?, adjust).await
    }

    /// A hub on an already started NATS world (a cluster, say).
    pub async fn start_on(
        nats: NatsEnv,
        adjust: impl FnOnce(&mut fleetbus_hub::Config),
    ) -> anyhow::Result<Self> {
        let mut fleet = Self { nats, hub: None };
        let mut config = fleet.hub_config();
        adjust(&mut config);
        fleet.hub = Some(fleet.start_hub(config));
        fleet.wait_for_hub().await?;
        Ok(fleet)
    }

    /// The default hub config of this fleet.
    pub fn hub_config(&self) -> fleetbus_hub::Config {
        fleetbus_hub::Config::new(
            self.nats.url(),
            self.nats.pki.clone(),
            self.nats.subjects.clone(),
        )
    }

    /// Starts a(nother) hub replica.
    pub fn start_hub(&self, config: fleetbus_hub::Config) -> Running {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(fleetbus_hub::run(config, shutdown.clone()));
        Running { shutdown, task }
    }

    /// Waits until some hub answers the API.
    pub async fn wait_for_hub(&self) -> anyhow::Result<()> {
        eventually("the hub API", Duration::from_secs(20), || async {
            self.cli(&["whoami"]).await.ok()
        })
        .await
        .map(|_| ())
    }

    /// Hub API flags for `user` (whose certificate is issued on first use).
    pub fn flags_for(&self, user: &str) -> anyhow::Result<HubFlags> {
        let tls = if user == "admin" {
            let (cert, key) = self.nats.pki.user("admin");
            fleetbus_nats::TlsFiles {
                ca: self.nats.pki.ca_cert(),
                cert,
                key,
            }
        } else {
            self.nats.tls_for(&Identity::User(UserName::new(user)?))?
        };
        Ok(HubFlags {
            nats_url: self.nats.url(),
            ca: tls.ca,
            cert: tls.cert,
            key: tls.key,
            subject_prefix: self.nats.subjects.prefix().to_owned(),
            timeout: Duration::from_secs(5),
            request_id: None,
            verbose: false,
        })
    }

    /// Runs a `fleetbus` command as admin and returns its output.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        self.cli_as("admin", args).await
    }

    /// Runs a `fleetbus` command as `user`.
    pub async fn cli_as(&self, user: &str, args: &[&str]) -> anyhow::Result<String> {
        self.cli_with(self.flags_for(user)?, args).await
    }

    /// Runs a `fleetbus` command as the auditor `name`.
    pub async fn cli_as_auditor(&self, name: &str, args: &[&str]) -> anyhow::Result<String> {
        let tls = self
            .nats
            .tls_for(&Identity::Auditor(UserName::new(name)?))?;
        let flags = HubFlags {
            cert: tls.cert,
            key: tls.key,
            ..self.flags_for("admin")?
        };
        self.cli_with(flags, args).await
    }

    /// Runs a `fleetbus` command with `flags`.
    pub async fn cli_with(&self, flags: HubFlags, args: &[&str]) -> anyhow::Result<String> {
        let mut argv: Vec<String> = vec!["fleetbus".into()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv.extend([
            "--nats-url".into(),
            flags.nats_url,
            "--ca".into(),
            flags.ca.display().to_string(),
            "--cert".into(),
            flags.cert.display().to_string(),
            "--key".into(),
            flags.key.display().to_string(),
            "--subject-prefix".into(),
            flags.subject_prefix,
            "--timeout".into(),
            "5s".into(),
        ]);
        let cli = Cli::try_parse_from(argv)?;
        let mut out = Vec::new();
        fleetbus_cli::run(cli, &mut out).await?;
        Ok(String::from_utf8(out)?)
    }

    /// The cluster list as the admin sees it.
    pub async fn clusters(&self) -> anyhow::Result<Vec<Cluster>> {
        let client = HubClient::connect(&self.flags_for("admin")?).await?;
        Ok(client.all_clusters().await?)
    }

    /// One cluster, if registered.
    pub async fn cluster(&self, name: &str) -> anyhow::Result<Option<Cluster>> {
        Ok(self.clusters().await?.into_iter().find(|c| c.name == name))
    }

    /// Waits until `name`'s `ManagedClusterConditionAvailable` has `status`.
    pub async fn wait_available(
        &self,
        name: &str,
        status: ConditionStatus,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        eventually(&format!("{name} Available={status:?}"), timeout, || async {
            let cluster = self.cluster(name).await.ok()??;
            let available = cluster
                .conditions
                .iter()
                .find(|c| c.r#type == "ManagedClusterConditionAvailable")?;
            (available.status() == status).then_some(())
        })
        .await
    }

    /// A spoke config for `name` against `kube` (or an unreachable apiserver when `None`).
    pub fn spoke_config(
        &self,
        name: &str,
        kube: Option<&KubeServer>,
    ) -> anyhow::Result<fleetbus_spoke::Config> {
        let root = self.nats.dir.path().join("spokes").join(name);
        std::fs::create_dir_all(&root)?;
        let mut config = fleetbus_spoke::Config::new(
            ClusterName::new(name)?,
            self.nats.url(),
            self.nats.pki.root().to_owned(),
            root.join("state"),
            self.nats.subjects.clone(),
        );
        config.join_interval = Duration::from_millis(200);
        config.kubeconfig = Some(match kube {
            Some(kube) => kube.kubeconfig.clone(),
            None => unreachable_kubeconfig(&root)?,
        });
        config.labels.insert("env".into(), "test".into());
        Ok(config)
    }

    /// Starts a spoke.
    pub fn start_spoke(&self, config: fleetbus_spoke::Config) -> Running {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(fleetbus_spoke::run(config, shutdown.clone()));
        Running { shutdown, task }
    }

    /// Starts a simulated spoke (`fleetbus_spoke::sim`: the real join, heartbeats and work
    /// loop, applying to an in-memory cluster).
    pub fn start_sim(&self, config: fleetbus_spoke::Config) -> Running {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(fleetbus_spoke::sim::run(
            config,
            fleetbus_spoke::work::memory::MemoryCluster::default(),
            std::sync::Arc::new(fleetbus_spoke::sim::Probe::default()),
            shutdown.clone(),
        ));
        Running { shutdown, task }
    }

    /// The spoke as Kubernetes runs it: a `fleetbus-spoke` process with `config`'s cluster,
    /// state and kubeconfig (join it in-process first), its log in `log`.
    pub fn spoke_process(
        &self,
        config: &fleetbus_spoke::Config,
        log: &std::path::Path,
    ) -> anyhow::Result<std::process::Child> {
        let mut cmd = std::process::Command::new(sibling_bin("fleetbus-spoke"));
        cmd.args(["--cluster-name", config.cluster.as_str()])
            .args(["--nats-url", &self.nats.url()])
            .arg("--bootstrap-dir")
            .arg(self.nats.pki.root())
            .arg("--state-dir")
            .arg(&config.state_dir)
            .args(["--subject-prefix", self.nats.subjects.prefix()])
            .env("RUST_LOG", "info,fleetbus_spoke=debug,kube_client=off")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log)?);
        if let Some(kubeconfig) = &config.kubeconfig {
            cmd.arg("--kubeconfig").arg(kubeconfig);
        }
        Ok(cmd.spawn()?)
    }

    /// Starts a kube-apiserver + etcd in this test's folder.
    pub async fn kube(&self, name: &str) -> anyhow::Result<KubeServer> {
        KubeServer::start(&self.nats.dir.path().join("kube").join(name)).await
    }

    /// Starts a kube-apiserver + etcd with a real node (pods run) in this test's folder.
    pub async fn kube_with_node(&self, name: &str) -> anyhow::Result<KubeServer> {
        KubeServer::start_with_node(&self.nats.dir.path().join("kube").join(name)).await
    }
}

fn unreachable_kubeconfig(root: &std::path::Path) -> anyhow::Result<PathBuf> {
    let path = root.join("unreachable.kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: x\n  user:\n    token: x\ncontexts:\n- name: x\n  context:\n    cluster: x\n    user: x\ncurrent-context: x\n",
    )?;
    Ok(path)
}

impl Fleet {
    /// Starts a spoke, waits until it asked to join, accepts it, and waits until its
    /// availability is `available` (True on a real apiserver, False on an unreachable one).
    pub async fn join(
        &self,
        config: fleetbus_spoke::Config,
        available: ConditionStatus,
    ) -> anyhow::Result<Running> {
        let name = config.cluster.to_string();
        let spoke = self.start_spoke(config);
        let wait = Duration::from_secs(30);
        eventually(&format!("{name} registered"), wait, || async {
            self.cluster(&name).await.ok()?.map(|_| ())
        })
        .await?;
        self.cli(&["accept", &name]).await?;
        self.wait_available(&name, available, wait).await?;
        Ok(spoke)
    }

    /// Registers `name` through the real join/accept path (a spoke with an unreachable
    /// apiserver), stops that spoke and returns the TLS files of its accepted identity.
    pub async fn accepted_spoke(&self, name: &str) -> anyhow::Result<fleetbus_nats::TlsFiles> {
        let spoke = self
            .join(self.spoke_config(name, None)?, ConditionStatus::False)
            .await?;
        spoke.stop().await?;
        let state = self.nats.dir.path().join("spokes").join(name).join("state");
        Ok(fleetbus_nats::TlsFiles {
            ca: self.nats.pki.ca_cert(),
            cert: state.join("tls.crt"),
            key: state.join("tls.key"),
        })
    }
}

impl Fleet {
    /// Every audit event kept so far, read as an auditor: `(ce-type, event)`.
    pub async fn audit_events(
        &self,
    ) -> anyhow::Result<Vec<(String, fleetbus_schema::v1::AuditEvent)>> {
        use futures::StreamExt;
        let auditor = Identity::Auditor(UserName::new("audit")?);
        let client = self.nats.connect_as(&auditor).await?;
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(self.nats.subjects.audit_stream()).await?;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await?;
        let mut messages = consumer.messages().await?;
        let mut all = Vec::new();
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(500), messages.next()).await
        {
            let message = message?;
            let read = fleetbus_nats::audit::read(
                &message.subject,
                message.headers.as_ref(),
                &message.payload,
            )?;
            all.push((read.ce_type, read.event));
        }
        Ok(all)
    }
}

impl Fleet {
    /// Waits until the hub holds a token for MSA `name` on `cluster`, and returns it.
    pub async fn reported_token(&self, name: &str, cluster: &str) -> anyhow::Result<String> {
        eventually(
            &format!("{name}'s token on {cluster}"),
            Duration::from_secs(30),
            || async {
                self.cli(&["get", "token", name, "--cluster", cluster])
                    .await
                    .ok()
                    .map(|line| line.trim().to_owned())
            },
        )
        .await
    }

    /// `fleetbus create msa NAME --cluster cluster1 --rules-file F`, with `rules` (YAML) in F.
    pub async fn create_msa_with_rules(&self, name: &str, rules: &str) -> anyhow::Result<String> {
        let path = self.nats.dir.path().join(format!("{name}-rules.yaml"));
        std::fs::write(&path, rules)?;
        let path = path.display().to_string();
        self.cli(&[
            "create",
            "msa",
            name,
            "--cluster",
            "cluster1",
            "--rules-file",
            &path,
        ])
        .await
    }
}

/// The `fleetbus` binary next to the test binaries (target/debug/fleetbus).
pub fn fleetbus_bin() -> PathBuf {
    sibling_bin("fleetbus")
}

/// A workspace binary built next to the running one (a test in `deps/` or a binary).
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .collect();
    let found = candidates.iter().find(|p| p.is_file()).cloned();
    found.unwrap_or_else(|| {
        panic!(
            "build the workspace binaries first (cargo build --bins): {name} missing next to {}",
            exe.display()
        )
    })
}

impl Fleet {
    /// `fleetbus ARGS` as `user`, as a person would run it (flags from the environment).
    pub fn command_as(&self, user: &str, args: &[&str]) -> std::process::Command {
        let flags = self.flags_for(user).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = std::process::Command::new(fleetbus_bin());
        cmd.args(args)
            .env("FLEETBUS_NATS_URL", &flags.nats_url)
            .env("FLEETBUS_CA", &flags.ca)
            .env("FLEETBUS_CERT", &flags.cert)
            .env("FLEETBUS_KEY", &flags.key)
            .env("FLEETBUS_SUBJECT_PREFIX", &flags.subject_prefix);
        cmd
    }

    /// `fleetbus proxy kubectl --cluster CLUSTER --sa SA -- ARGS` as `user`.
    pub fn proxy_kubectl(
        &self,
        user: &str,
        cluster: &str,
        sa: &str,
        args: &[&str],
    ) -> std::process::Command {
        let mut argv = vec!["proxy", "kubectl", "--cluster", cluster, "--sa", sa, "--"];
        argv.extend_from_slice(args);
        self.command_as(user, &argv)
    }
}
