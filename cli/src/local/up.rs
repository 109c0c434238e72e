//! `fleetbus local-up`: nats-server (mutual TLS, JetStream, auth callout), the hub, and per
//! cluster an etcd + kube-apiserver with a real node (as root; `--bare` for API-only clusters)
//! running a small demo Deployment, and a spoke that asks to join. All on loopback; a hub or
//! spoke that exits is restarted; Ctrl-C stops everything. State stays in `--state-dir` so a
//! second run keeps the fleet.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context;
use fleetbus_nats::PkiDir;
use fleetbus_nats::init::InitOptions;
use fleetbus_nats::server::{AuthKeys, NatsServer, ServerConfig, find_binary};
use fleetbus_schema::ClusterName;

use super::kube_server::KubeServer;
use super::supervise::{self, Supervised};

/// `fleetbus local-up` flags.
#[derive(Debug, clap::Args)]
pub struct LocalUpArgs {
    /// Folder for certificates, data and logs.
    #[arg(
        long,
        env = "FLEETBUS_LOCAL_STATE_DIR",
        default_value = ".fleetbus/local"
    )]
    pub state_dir: PathBuf,
    /// Client port of nats-server.
    #[arg(long, default_value_t = 4222)]
    pub nats_port: u16,
    /// Clusters to create, each with its own kube-apiserver and spoke.
    #[arg(long, default_value = "cluster1,cluster2", value_delimiter = ',')]
    pub clusters: Vec<String>,
    /// Clusters without nodes: kube-apiservers only, no pods (small or unprivileged machines).
    #[arg(long, env = "FLEETBUS_LOCAL_BARE", conflicts_with = "nodes")]
    pub bare: bool,
    /// Run a node per cluster even when not root (the default as root).
    #[arg(long)]
    pub nodes: bool,
}

/// How long the hub and spokes may take to stop after SIGTERM (the spoke's own grace period is
/// 10 s) before they are killed.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// The demo workload each cluster with a node runs: real pods that log.
const DEMO: &str = include_str!("demo.yaml");

/// Starts everything, prints what to run next, waits for Ctrl-C.
pub async fn run(args: LocalUpArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let clusters = args
        .clusters
        .iter()
        .map(|c| ClusterName::new(c.as_str()))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(&args.state_dir)?;
    let state = args.state_dir.canonicalize()?;
    let pki = PkiDir::new(state.join("pki"));
    if !pki.ca_cert().exists() {
        pki.init(&InitOptions::default())?;
        writeln!(out, "created fleet PKI in {}", pki.root().display())?;
    }
    let keys = AuthKeys::load(&pki)?;
    if std::net::TcpListener::bind(("127.0.0.1", args.nats_port)).is_err() {
        anyhow::bail!(
            "port {} is in use; pick another with --nats-port",
            args.nats_port
        );
    }
    let config = ServerConfig::local(&pki, &keys, args.nats_port, state.join("jetstream"));
    let nats = NatsServer::start(&find_binary()?, config, &state.join("nats"))?;
    let url = nats.url();
    writeln!(
        out,
        "nats-server   {url}  (log {})",
        nats.log_path().display()
    )?;

    let root = pki.root().display().to_string();
    let hub = Supervised::start(
        "fleetbus-hub".into(),
        "fleetbus-hub",
        argv(&["--nats-url", &url, "--pki-dir", &root]),
        &state.join("hub.log"),
    )?;
    writeln!(out, "hub           log {}", state.join("hub.log").display())?;

    let nodes = wants_nodes(&args, out)?;
    let mut kubes = Vec::new();
    let mut spokes = Vec::new();
    for cluster in &clusters {
        let dir = state.join("clusters").join(cluster.as_str());
        let started = std::time::Instant::now();
        let kube = if nodes {
            write!(
                out,
                "{cluster:<13} starting etcd, kube-apiserver and a node ..."
            )?;
            out.flush()?;
            let kube = KubeServer::start_with_node(&dir).await?;
            apply_demo(&kube)?;
            kube
        } else {
            write!(out, "{cluster:<13} starting etcd + kube-apiserver ...")?;
            out.flush()?;
            KubeServer::start(&dir).await?
        };
        writeln!(
            out,
            " {} in {:.0?}  (admin kubeconfig {})",
            kube.url,
            started.elapsed(),
            kube.kubeconfig.display()
        )?;
        let spoke_state = state.join("spokes").join(cluster.as_str());
        let log = state.join("spokes").join(format!("{cluster}.log"));
        std::fs::create_dir_all(&spoke_state)?;
        spokes.push(Supervised::start(
            format!("fleetbus-spoke {cluster}"),
            "fleetbus-spoke",
            argv(&[
                "--cluster-name",
                cluster.as_str(),
                "--nats-url",
                &url,
                "--bootstrap-dir",
                &root,
                "--state-dir",
                &spoke_state.display().to_string(),
                "--kubeconfig",
                &kube.kubeconfig.display().to_string(),
                "--labels",
                &format!("name={cluster}"),
            ]),
            &log,
        )?);
        kubes.push(kube);
    }

    let env_file = state.join("env.sh");
    let (admin_cert, admin_key) = pki.user("admin");
    // The CLI that runs local-up goes first on PATH, so `fleetbus` works in the user's shell.
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let env = format!(
        "export FLEETBUS_NATS_URL={url}\nexport FLEETBUS_CA={}\nexport FLEETBUS_CERT={}\nexport FLEETBUS_KEY={}\nexport FLEETBUS_PKI_DIR={root}\nexport PATH=\"{bin_dir}:$PATH\"\n",
        pki.ca_cert().display(),
        admin_cert.display(),
        admin_key.display()
    );
    fleetbus_nats::files::write_atomic(&env_file, env.as_bytes(), false)?;
    let names: Vec<&str> = clusters.iter().map(ClusterName::as_str).collect();
    print_memory(out, &names, &kubes)?;
    writeln!(out, "\nThe spokes have asked to join. In another shell:\n")?;
    writeln!(out, "  source {}", env_file.display())?;
    writeln!(out, "  fleetbus get clusters")?;
    writeln!(out, "  fleetbus accept {}", names.join(" "))?;
    writeln!(out, "  fleetbus get clusters")?;
    writeln!(
        out,
        "  # then the seed's example (a service account, its role, kubectl through the tunnel):\n  # README.md, \"A first session\"\n"
    )?;
    writeln!(
        out,
        "Look at a cluster directly: kubectl --kubeconfig {}/clusters/<name>/kubeconfig get ns",
        state.display()
    )?;
    writeln!(
        out,
        "Ctrl-C stops everything; the state stays in {}.",
        state.display()
    )?;
    out.flush()?;

    let shutdown = fleetbus_nats::process::shutdown_on_signal();
    let mut watched = vec![hub];
    watched.extend(spokes);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
        for proc in &mut watched {
            proc.poll(out)?;
        }
    }
    for name in supervise::stop_all(&mut watched, STOP_GRACE).await {
        writeln!(out, "{name} did not stop within {STOP_GRACE:?}; killed")?;
    }
    drop(kubes);
    drop(nats);
    writeln!(out, "stopped")?;
    Ok(())
}

fn argv(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

/// Nodes as root (or with `--nodes`), none with `--bare`; says so plainly when not root.
fn wants_nodes(args: &LocalUpArgs, out: &mut impl Write) -> std::io::Result<bool> {
    if args.bare {
        return Ok(false);
    }
    if args.nodes || super::node::is_root() {
        return Ok(true);
    }
    writeln!(
        out,
        "not root: the clusters get no node (no pods). A node runs containerd and a kubelet and adds a bridge, which needs root: run local-up as root for real one-node clusters, or pass --bare to keep API-only clusters without this note."
    )?;
    Ok(false)
}

fn apply_demo(kube: &KubeServer) -> anyhow::Result<()> {
    let mut child = kube
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl not found")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(DEMO.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        anyhow::bail!(
            "cannot create the demo Deployment: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn print_memory(out: &mut impl Write, names: &[&str], kubes: &[KubeServer]) -> std::io::Result<()> {
    for (name, kube) in names.iter().zip(kubes) {
        let what = if kube.has_node() {
            "etcd, kube-apiserver, controller-manager, scheduler, kubelet, containerd and its pods"
        } else {
            "etcd and kube-apiserver"
        };
        writeln!(
            out,
            "{name:<13} memory {} MiB ({what})",
            kube.memory_kib() / 1024
        )?;
    }
    Ok(())
}
