//! The `proxy` subcommands.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use fleetbus_schema::ClusterName;
use fleetbus_schema::v1::Acceptance;
use tokio::io::AsyncBufReadExt;

use super::local::request_id;
use super::tunnel::Tunnel;
use super::{INTERACTIVE_BANNER, Session};
use crate::cli::HubFlags;
use crate::hub_client::HubClient;
use crate::output::table;

/// `fleetbus proxy kubectl`: one command (stdin, stdout, stderr and exit code passed through),
/// or an interactive prompt.
pub async fn kubectl(
    hub: &HubFlags,
    cluster: &str,
    sa: &str,
    interactive: bool,
    args: Vec<String>,
) -> anyhow::Result<ExitCode> {
    if !interactive && args.is_empty() {
        anyhow::bail!("give a kubectl command after `--`, or -i for the interactive mode");
    }
    let session = Session::start(hub, cluster, sa, 0).await?;
    // The kubeconfig lives in a private temporary folder removed on exit.
    let dir = tempfile::Builder::new()
        .prefix("fleetbus-proxy-")
        .tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    session.write_kubeconfig(cluster, &kubeconfig)?;
    if !interactive {
        return run_kubectl(&session, &kubeconfig, &args).await;
    }
    println!("{INTERACTIVE_BANNER}");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        print!("kubectl> ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next_line().await? else {
            break;
        };
        let line = line.trim();
        if line == "exit" {
            break;
        }
        if line.is_empty() {
            continue;
        }
        let words = match shell_words::split(line) {
            Ok(words) => words,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let words = if words.first().map(String::as_str) == Some("kubectl") {
            words[1..].to_vec()
        } else {
            words
        };
        // kubectl prints its own errors; the session goes on.
        run_kubectl(&session, &kubeconfig, &words).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs kubectl against the session. kubectl's exit code is passed through, except that an
/// exec, attach or port-forward the tunnel broke (the spoke died, the stream went silent) is a
/// failure even where kubectl reads the closed connection as success.
async fn run_kubectl(
    session: &Session,
    kubeconfig: &std::path::Path,
    args: &[String],
) -> anyhow::Result<ExitCode> {
    session.take_broken();
    let status = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .status()
        .await
        .map_err(|e| anyhow::anyhow!("cannot run kubectl: {e}"))?;
    let code = status.code().unwrap_or(1).clamp(0, 255) as u8;
    if code == 0
        && let Some(cause) = session.take_broken()
    {
        eprintln!("error: the session through the tunnel broke: {cause}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::from(code))
}

/// `fleetbus proxy serve`: a loopback endpoint and a kubeconfig for any client, until Ctrl-C.
pub async fn serve(
    hub: &HubFlags,
    cluster: &str,
    sa: &str,
    port: u16,
    kubeconfig_out: Option<PathBuf>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let session = Session::start(hub, cluster, sa, port).await?;
    let path =
        kubeconfig_out.unwrap_or_else(|| PathBuf::from(format!("{cluster}-{sa}.kubeconfig")));
    session.write_kubeconfig(cluster, &path)?;
    writeln!(
        out,
        "serving cluster {cluster} as {sa} on https://{}",
        session.addr
    )?;
    writeln!(out, "kubeconfig (0600): {}", path.display())?;
    writeln!(out, "  kubectl --kubeconfig {} get ns", path.display())?;
    out.flush()?;
    fleetbus_nats::process::shutdown_on_signal()
        .cancelled()
        .await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// `fleetbus proxy health`: a `/healthz` round trip through each cluster's tunnel.
pub async fn health(
    hub: &HubFlags,
    only: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let client = HubClient::connect(hub).await?;
    let names: Vec<String> = match only {
        Some(name) => vec![ClusterName::new(name)?.to_string()],
        None => client
            .all_clusters()
            .await?
            .into_iter()
            .filter(|c| c.acceptance() == Acceptance::Accepted)
            .map(|c| c.name)
            .collect(),
    };
    let mut rows = Vec::new();
    let mut healthy = true;
    for name in names {
        let cluster = ClusterName::new(name.as_str())?;
        let tunnel = Tunnel::new(
            client.nats().clone(),
            client.subjects().clone(),
            cluster,
            client.user().clone(),
        );
        let (parts, _) = http::Request::get("/healthz").body(())?.into_parts();
        let started = Instant::now();
        let result = tunnel.request(&parts, Bytes::new(), &request_id()).await;
        let latency = format!("{:.1}ms", started.elapsed().as_secs_f64() * 1000.0);
        let (state, detail) = match result {
            Ok(response) if response.status().is_success() => ("ok".to_owned(), latency),
            Ok(response) => (format!("HTTP {}", response.status().as_u16()), latency),
            Err(e) => ("unreachable".to_owned(), e.to_string()),
        };
        healthy &= state == "ok";
        rows.push(vec![name, state, detail]);
    }
    if rows.is_empty() {
        writeln!(out, "No accepted clusters.")?;
    } else {
        write!(out, "{}", table(&["CLUSTER", "TUNNEL", "LATENCY"], &rows))?;
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
