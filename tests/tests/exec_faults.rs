//! Faults in the middle of a troubleshooting session, on a real node: the pod dies under an
//! `exec` and a `logs -f`, a client stops reading in the middle of a copy, the spoke process
//! is killed mid-`exec`. Each ends its own session as it would end straight on the cluster (or
//! with a clear error), leaves every other stream untouched, and the spoke holds nothing after.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_schema::tunnel::IDLE_TIMEOUT;
use fleetbus_schema::v1::{AuditEvent, ConditionStatus};
use fleetbus_spoke::config::Stats;
use fleetbus_tests::audit::events;
use fleetbus_tests::fleet::Running;
use fleetbus_tests::pod::{OPS_RULES, kubectl, run, start_web, text};
use fleetbus_tests::tunnel_seed::no_stream_left;
use fleetbus_tests::{Fleet, eventually};

const WAIT: Duration = Duration::from_secs(90);

/// A long-running command whose output is collected as it comes; killed when dropped.
struct Streaming {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Streaming {
    fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let collect = |mut from: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let into = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0; 4096];
                while let Ok(n @ 1..) = from.read(&mut chunk) {
                    into.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
            buf
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Ok(Self {
            child,
            stdout,
            stderr,
        })
    }

    fn stdout(&self) -> String {
        text(&self.stdout.lock().unwrap())
    }

    fn stderr(&self) -> String {
        text(&self.stderr.lock().unwrap())
    }

    async fn printed(&self, what: &str, marker: &str) -> anyhow::Result<()> {
        eventually(&format!("{what} printed {marker:?}"), WAIT, || async {
            self.stdout().contains(marker).then_some(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; stderr: {}", self.stderr()))
    }

    /// Waits for the command to end on its own, within `bound`.
    async fn ended(&mut self, what: &str, bound: Duration) -> anyhow::Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                started.elapsed() < bound,
                "{what} still running after {bound:?}; stderr: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fleet with cluster1 on a real node, the MSA `ops` and pod `web` running.
async fn cluster() -> anyhow::Result<(Fleet, KubeServer, Running, Arc<Stats>)> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube_with_node("cluster1").await?;
    let config = fleet.spoke_config("cluster1", Some(&kube))?;
    let stats = config.stats.clone();
    let spoke = fleet.join(config, ConditionStatus::True).await?;
    fleet.create_msa_with_rules("ops", OPS_RULES).await?;
    fleet.reported_token("ops", "cluster1").await?;
    start_web(&fleet, &kube, "web")?;
    Ok((fleet, kube, spoke, stats))
}

/// Sends `data` on `conn` and reads the echo back.
fn echo(conn: &mut TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    conn.write_all(data)?;
    let mut got = vec![0; data.len()];
    conn.read_exact(&mut got)?;
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_dies_mid_stream_ends_its_sessions_as_it_would_directly() -> anyhow::Result<()> {
    let (fleet, kube, _spoke, stats) = cluster().await?;
    start_web(&fleet, &kube, "other")?;
    let exec = |mut cmd: Command| {
        cmd.args(["exec", "web", "--", "sh", "-c", "echo started; sleep 600"]);
        cmd
    };
    let logs = |mut cmd: Command| {
        cmd.args(["logs", "-f", "web"]);
        cmd
    };
    let tunnel = || kubectl(&fleet, "ops", "", &[]);
    let sessions = [
        ("exec through the tunnel", exec(tunnel())),
        ("exec direct", exec(kube.kubectl())),
        ("logs -f through the tunnel", logs(tunnel())),
        ("logs -f direct", logs(kube.kubectl())),
    ];
    let mut running = Vec::new();
    for (what, cmd) in sessions {
        running.push((what, Streaming::spawn(cmd)?));
    }
    for (what, session) in &running {
        let marker = if what.starts_with("exec") {
            "started"
        } else {
            "line "
        };
        session.printed(what, marker).await?;
    }
    // Another stream, to another pod, stays open throughout.
    let port = fleetbus_nats::server::free_port()?;
    let forward = Streaming::spawn(kubectl(
        &fleet,
        "ops",
        "",
        &["port-forward", "pod/other", &format!("{port}:8080")],
    ))?;
    forward.printed("port-forward", "Forwarding from").await?;
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    assert_eq!(echo(&mut conn, b"before")?, b"before");

    let delete = kube
        .kubectl()
        .args(["delete", "pod", "web", "--grace-period=1", "--wait=false"])
        .output()?;
    assert!(delete.status.success(), "{}", text(&delete.stderr));
    let mut ended = Vec::new();
    for (what, session) in &mut running {
        let status = session.ended(what, WAIT).await?;
        ended.push((*what, status.code(), session.stderr()));
    }
    let code = |what: &str| ended.iter().find(|e| e.0 == what).unwrap().1;
    assert_eq!(
        code("exec through the tunnel"),
        code("exec direct"),
        "{ended:?}"
    );
    assert_ne!(code("exec direct"), Some(0), "{ended:?}");
    assert_eq!(
        code("logs -f through the tunnel"),
        code("logs -f direct"),
        "{ended:?}"
    );

    // The other pod's stream did not notice.
    assert_eq!(echo(&mut conn, b"after")?, b"after");
    drop(conn);
    drop(forward);
    no_stream_left(&stats, WAIT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_mid_copy_holds_back_only_its_own_stream() -> anyhow::Result<()>
{
    let (fleet, kube, _spoke, stats) = cluster().await?;
    const SIZE: usize = 64 * 1024 * 1024;
    let make = kube
        .kubectl()
        .args(["exec", "web", "--", "sh", "-c"])
        .arg(format!("head -c {SIZE} /dev/zero > /tmp/big"))
        .output()?;
    assert!(make.status.success(), "{}", text(&make.stderr));

    // What `kubectl cp web:/tmp/big …` runs, into a pipe nobody reads.
    let copy = ["exec", "web", "--", "tar", "cf", "-", "/tmp/big"];
    let mut stalled = kubectl(&fleet, "ops", "", &copy)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        stalled.try_wait()?.is_none(),
        "the stalled copy ended on its own"
    );

    // Other streams to the same pod and the same cluster carry on.
    let out = run(
        kubectl(
            &fleet,
            "ops",
            "",
            &["exec", "web", "--", "echo", "still here"],
        ),
        b"",
    )?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "still here\n");
    let out = run(
        kubectl(&fleet, "ops", "", &["logs", "--tail=1", "web"]),
        b"",
    )?;
    assert!(
        text(&out.stdout).starts_with("line "),
        "{}",
        text(&out.stderr)
    );

    // The client goes away: its stream ends on the spoke, having moved only what the client
    // took plus the windows in between, not the whole file.
    stalled.kill()?;
    stalled.wait()?;
    no_stream_left(&stats, WAIT).await?;
    let session = eventually("the copy's audit event", WAIT, || async {
        let events: Vec<AuditEvent> = events(&fleet)
            .await
            .ok()?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        events.into_iter().filter_map(|e| e.session).find(|s| {
            s.command
                .iter()
                .map(String::as_str)
                .eq(copy[3..].iter().copied())
        })
    })
    .await?;
    assert!(
        session.bytes_to_client < (SIZE / 4) as i64,
        "{} of {SIZE} bytes moved to a client that read none",
        session.bytes_to_client
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_killed_mid_exec_ends_the_session_with_an_error_and_serves_again_on_restart()
-> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube_with_node("cluster1").await?;
    let config = fleet.spoke_config("cluster1", Some(&kube))?;
    let spoke = fleet.join(config.clone(), ConditionStatus::True).await?;
    fleet.create_msa_with_rules("ops", OPS_RULES).await?;
    fleet.reported_token("ops", "cluster1").await?;
    spoke.stop().await?;
    start_web(&fleet, &kube, "web")?;
    let log = fleet.nats.dir.path().join("spoke.log");
    let mut process = KillOnDrop(fleet.spoke_process(&config, &log)?);
    fleet
        .wait_available("cluster1", ConditionStatus::True, WAIT)
        .await?;

    let mut session = Streaming::spawn(kubectl(
        &fleet,
        "ops",
        "",
        &["exec", "web", "--", "sh", "-c", "echo started; sleep 600"],
    ))?;
    session.printed("exec", "started").await?;
    process.0.kill()?;
    process.0.wait()?;
    let killed = Instant::now();
    let status = session
        .ended("exec after the spoke died", IDLE_TIMEOUT + WAIT)
        .await?;
    println!(
        "kubectl exec ended {:?} after the spoke was killed: {status}",
        killed.elapsed()
    );
    assert!(!status.success());
    assert!(!session.stderr().trim().is_empty(), "no error shown");

    // The restarted spoke serves new sessions.
    let _restarted = KillOnDrop(fleet.spoke_process(&config, &log.with_extension("2.log"))?);
    let out = eventually("exec through the restarted spoke", WAIT, || async {
        let out = run(
            kubectl(&fleet, "ops", "", &["exec", "web", "--", "echo", "back"]),
            b"",
        )
        .ok()?;
        out.status.success().then_some(out)
    })
    .await?;
    assert_eq!(text(&out.stdout), "back\n");
    Ok(())
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
