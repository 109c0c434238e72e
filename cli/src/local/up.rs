//! `fleetbus local-up`: nats-server (mutual TLS, JetStream, auth callout), the hub, and per
//! cluster an etcd + kube-apiserver with a spoke that asks to join, all on loopback and all
//! stopped by Ctrl-C. State stays in `--state-dir` so a second run keeps the fleet.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use fleetbus_nats::PkiDir;
use fleetbus_nats::init::InitOptions;
use fleetbus_nats::server::{AuthKeys, NatsServer, ServerConfig, find_binary};
use fleetbus_schema::ClusterName;

use super::kube_server::KubeServer;

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
}

/// A child process killed on drop.
struct Proc(Child, &'static str);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let hub = spawn_sibling(
        "fleetbus-hub",
        &["--nats-url", &url, "--pki-dir", &root],
        &state.join("hub.log"),
    )?;
    writeln!(out, "hub           log {}", state.join("hub.log").display())?;

    let mut kubes = Vec::new();
    let mut spokes = Vec::new();
    for cluster in &clusters {
        let dir = state.join("clusters").join(cluster.as_str());
        write!(out, "{cluster:<13} starting etcd + kube-apiserver ...")?;
        out.flush()?;
        let kube = KubeServer::start(&dir).await?;
        writeln!(
            out,
            " {}  (admin kubeconfig {})",
            kube.url,
            kube.kubeconfig.display()
        )?;
        let spoke_state = state.join("spokes").join(cluster.as_str());
        let log = state.join("spokes").join(format!("{cluster}.log"));
        std::fs::create_dir_all(&spoke_state)?;
        spokes.push(spawn_sibling(
            "fleetbus-spoke",
            &[
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
            ],
            &log,
        )?);
        kubes.push(kube);
    }

    let env_file = state.join("env.sh");
    let (admin_cert, admin_key) = pki.user("admin");
    let env = format!(
        "export FLEETBUS_NATS_URL={url}\nexport FLEETBUS_CA={}\nexport FLEETBUS_CERT={}\nexport FLEETBUS_KEY={}\nexport FLEETBUS_PKI_DIR={root}\n",
        pki.ca_cert().display(),
        admin_cert.display(),
        admin_key.display()
    );
    fleetbus_nats::files::write_atomic(&env_file, env.as_bytes(), false)?;
    let names: Vec<&str> = clusters.iter().map(ClusterName::as_str).collect();
    writeln!(out, "\nThe spokes have asked to join. In another shell:\n")?;
    writeln!(out, "  source {}", env_file.display())?;
    writeln!(out, "  fleetbus get clusters")?;
    writeln!(out, "  fleetbus accept {}", names.join(" "))?;
    writeln!(out, "  fleetbus get clusters")?;
    writeln!(
        out,
        "  fleetbus create work hello --cluster {} --wait -f manifests.yaml   # then: fleetbus get work\n",
        names.first().copied().unwrap_or("cluster1")
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
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        for proc in &mut watched {
            if let Ok(Some(status)) = proc.0.try_wait() {
                anyhow::bail!(
                    "{} exited ({status}); see the logs in {}",
                    proc.1,
                    state.display()
                );
            }
        }
    }
    drop(watched);
    drop(kubes);
    drop(nats);
    writeln!(out, "stopped")?;
    Ok(())
}

/// Starts a fleetbus binary that sits next to this one (or on `PATH`).
fn spawn_sibling(name: &'static str, args: &[&str], log: &Path) -> anyhow::Result<Proc> {
    let beside = std::env::current_exe()?.with_file_name(name);
    let binary = if beside.is_file() {
        beside
    } else {
        PathBuf::from(name)
    };
    let file = std::fs::File::create(log)?;
    let child = Command::new(&binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {name}; build it with `cargo build --bins`"))?;
    Ok(Proc(child, name))
}
