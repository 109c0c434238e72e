//! A real kube-apiserver with its own etcd on free loopback ports: RBAC on, a static admin
//! token in `system:masters`, and a service-account signing key so TokenRequest works. The
//! binaries come from `$FLEETBUS_KUBE_BIN`, `$KUBEBUILDER_ASSETS` or the testenv cache. On
//! request ([`KubeServer::start_with_node`]) it gets a real [`Node`] too: controllers,
//! scheduler and a kubelet, so pods run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use fleetbus_nats::files::write_atomic;
use fleetbus_nats::server::free_port;

use super::node::{ApiServer, Node};

/// A running etcd + kube-apiserver (and maybe a node); all die on drop.
pub struct KubeServer {
    apiserver: Child,
    etcd: Child,
    node: Option<Node>,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The apiserver's serving CA bundle (PEM).
    pub ca_pem: String,
    /// Bearer token of the `admin` user (`system:masters`).
    pub admin_token: String,
    /// Bearer token of the kubelet (`system:node:localhost`).
    node_token: String,
    /// An admin kubeconfig (0600).
    pub kubeconfig: PathBuf,
    /// The apiserver's audit log (metadata of every request, JSON lines).
    pub audit_log: PathBuf,
}

fn find_kube_bin() -> anyhow::Result<PathBuf> {
    let candidates = [
        std::env::var_os("FLEETBUS_KUBE_BIN").map(PathBuf::from),
        std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from),
        Some(fleetbus_nats::cache_dir().join("kube")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("kube-apiserver").is_file())
        .context("kube-apiserver not found: set FLEETBUS_KUBE_BIN or run scripts/testenv.sh")
}

fn find_etcd() -> PathBuf {
    std::env::var_os("FLEETBUS_ETCD").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

/// Starts `binary` with its output in `log`.
pub(super) fn spawn(binary: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::File::create(log)?;
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// `kubectl --kubeconfig=<kubeconfig>`, to add arguments to.
pub fn kubectl(kubeconfig: &Path) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()));
    cmd
}

impl KubeServer {
    /// The process ids of kube-apiserver and etcd (for CPU accounting).
    pub fn pids(&self) -> [u32; 2] {
        [self.apiserver.id(), self.etcd.id()]
    }

    /// `kubectl` as this server's admin.
    pub fn kubectl(&self) -> Command {
        kubectl(&self.kubeconfig)
    }

    /// Starts etcd, kube-apiserver and a real node (see [`Node`]) under `dir`, and waits until
    /// the node is Ready.
    pub async fn start_with_node(dir: &Path) -> anyhow::Result<Self> {
        let mut server = Self::start(dir).await?;
        let dir = dir.canonicalize()?;
        let node_kubeconfig = dir.join("node.kubeconfig");
        write_atomic(
            &node_kubeconfig,
            server
                .kubeconfig_yaml(&server.node_token, "node")
                .as_bytes(),
            true,
        )?;
        let api = ApiServer {
            admin_kubeconfig: &server.kubeconfig,
            node_kubeconfig: &node_kubeconfig,
            sa_key: &dir.join("sa.key"),
            ca_file: &dir.join("apiserver").join("apiserver.crt"),
        };
        server.node = Some(Node::start(&api, &find_kube_bin()?, &dir.join("node")).await?);
        Ok(server)
    }

    /// Whether this cluster runs pods.
    pub fn has_node(&self) -> bool {
        self.node.is_some()
    }

    /// Resident memory of every process of this cluster (etcd, apiserver, and the node's), in
    /// KiB.
    pub fn memory_kib(&self) -> u64 {
        super::node_host::resident_kib(&[self.etcd.id(), self.apiserver.id()])
            + self.node.as_ref().map_or(0, Node::memory_kib)
    }

    /// Starts etcd and kube-apiserver with their data, certificates and logs under `dir`, and
    /// waits until `/readyz` answers.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let bin = find_kube_bin()?;
        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args: Vec<String> = vec![
            "--name=default".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
        ];
        let etcd = spawn(&find_etcd(), &etcd_args, &dir.join("etcd.log"))?;

        let admin_token = format!("{:032x}", rand::random::<u128>());
        let node_token = format!("{:032x}", rand::random::<u128>());
        let tokens = dir.join("tokens.csv");
        write_atomic(
            &tokens,
            format!(
                "{admin_token},admin,admin-uid,system:masters\n{node_token},system:node:{},node-uid,system:nodes\n",
                super::node::NODE_NAME
            )
            .as_bytes(),
            true,
        )?;
        let (sa_key, sa_pub) = (dir.join("sa.key"), dir.join("sa.pub"));
        if !sa_key.exists() || !sa_pub.exists() {
            let key = rcgen::KeyPair::generate()?;
            write_atomic(&sa_key, key.serialize_pem().as_bytes(), true)?;
            write_atomic(&sa_pub, key.public_key_pem().as_bytes(), false)?;
        }
        let cert_dir = dir.join("apiserver");
        let policy = dir.join("audit-policy.yaml");
        write_atomic(
            &policy,
            b"apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
            false,
        )?;
        let audit_log = dir.join("audit.log");
        let api_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", cert_dir.display()),
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=Node,RBAC".into(),
            // The node is named localhost, so the apiserver reaches its kubelet on loopback.
            "--kubelet-preferred-address-types=Hostname".into(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            "--api-audiences=https://kubernetes.default.svc".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            "--allow-privileged=true".into(),
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", audit_log.display()),
        ];
        let apiserver = match spawn(
            &bin.join("kube-apiserver"),
            &api_args,
            &dir.join("kube-apiserver.log"),
        ) {
            Ok(child) => child,
            Err(e) => {
                let mut etcd = etcd;
                let _ = etcd.kill();
                return Err(e);
            }
        };
        let url = format!("https://127.0.0.1:{api_port}");
        let mut server = Self {
            apiserver,
            etcd,
            node: None,
            url,
            ca_pem: String::new(),
            admin_token,
            node_token,
            kubeconfig: dir.join("kubeconfig"),
            audit_log,
        };
        server.ca_pem = wait_for_file(&cert_dir.join("apiserver.crt"), Duration::from_secs(60))?;
        write_atomic(
            &server.kubeconfig,
            server
                .kubeconfig_yaml(&server.admin_token, "admin")
                .as_bytes(),
            true,
        )?;
        server
            .wait_ready(Duration::from_secs(90))
            .await
            .with_context(|| {
                format!(
                    "kube-apiserver did not become ready; see {}",
                    dir.join("kube-apiserver.log").display()
                )
            })?;
        Ok(server)
    }

    /// A kubeconfig for this server authenticating with `token`.
    pub fn kubeconfig_yaml(&self, token: &str, user: &str) -> String {
        Self::kubeconfig_for(&self.url, &self.ca_pem, token, user)
    }

    /// A kubeconfig for any apiserver URL and CA bundle.
    pub fn kubeconfig_for(url: &str, ca_pem: &str, token: &str, user: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: {user}\ncurrent-context: local\n",
            url
        )
    }

    /// A kube client as admin.
    pub async fn admin_client(&self) -> anyhow::Result<kube::Client> {
        let file = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await?;
        Ok(kube::Client::try_from(config)?)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = self.admin_client().await?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.apiserver.try_wait()? {
                anyhow::bail!("kube-apiserver exited ({status})");
            }
            let request = http::Request::get("/readyz").body(Vec::new())?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                result if Instant::now() >= deadline => anyhow::bail!("last answer: {result:?}"),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

fn wait_for_file(path: &Path, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.contains("END CERTIFICATE")
        {
            return Ok(text);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{} did not appear", path.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        // The node deletes its pods through the apiserver, so it goes first.
        drop(self.node.take());
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
