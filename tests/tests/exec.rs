//! Troubleshooting a pod in another network through the tunnel, with kubectl itself: `exec`
//! (exit codes, stdin, a real terminal that follows a resize), `attach`, `cp` both ways and
//! `port-forward` with several connections, each over kubectl's default (WebSocket first, then
//! SPDY on apiserver 1.20) and with WebSockets turned off. Grants and the apiserver's own RBAC
//! decide who may exec, and each session is one audit event.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_schema::v1::{AuditEvent, ConditionStatus};
use fleetbus_spoke::config::Stats;
use fleetbus_tests::audit::events;
use fleetbus_tests::fleet::Running;
use fleetbus_tests::pod::{OPS_RULES, TRANSPORTS, kubectl, run, start_web, text};
use fleetbus_tests::tunnel_seed::no_stream_left;
use fleetbus_tests::{Fleet, eventually, sha256};

const WAIT: Duration = Duration::from_secs(90);

/// A fleet with one cluster on a real node running pod `web`, an MSA `ops` allowed to exec.
async fn cluster_with_pod() -> anyhow::Result<(Fleet, KubeServer, Running, Arc<Stats>)> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube_with_node("cluster1").await?;
    let config = fleet.spoke_config("cluster1", Some(&kube))?;
    let stats = config.stats.clone();
    let spoke = fleet.join(config, ConditionStatus::True).await?;
    fleet.create_msa_with_rules("ops", OPS_RULES).await?;
    fleet
        .create_msa_with_rules(
            "viewer",
            "- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get, list]\n",
        )
        .await?;
    fleet.reported_token("ops", "cluster1").await?;
    fleet.reported_token("viewer", "cluster1").await?;
    start_web(&fleet, &kube, "web")?;
    Ok((fleet, kube, spoke, stats))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attach_cp_and_port_forward_through_the_tunnel_on_a_node() -> anyhow::Result<()> {
    let (fleet, _kube, _spoke, stats) = cluster_with_pod().await?;
    let payload: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let local = fleet.nats.dir.path().join("payload.bin");
    std::fs::write(&local, &payload)?;
    for (name, websockets) in TRANSPORTS {
        let k = |args: &[&str]| kubectl(&fleet, "ops", websockets, args);
        // The exit code passes through.
        let out = run(
            k(&[
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ]),
            b"",
        )?;
        assert_eq!(out.status.code(), Some(3), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "out\n", "{name}");
        assert!(
            text(&out.stderr).starts_with("err\n"),
            "{name}: {}",
            text(&out.stderr)
        );
        // stdin reaches the command, and its EOF ends it.
        let out = run(
            k(&["exec", "-i", "web", "--", "cat"]),
            b"data through stdin\n",
        )?;
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "data through stdin\n", "{name}");
        // cp both ways, 16 MiB, checksums equal.
        let remote = format!("default/web:/tmp/{name}.bin");
        let out = run(k(&["cp", &local.display().to_string(), &remote]), b"")?;
        assert!(out.status.success(), "{name}: cp in: {}", text(&out.stderr));
        let out = run(
            k(&[
                "exec",
                "web",
                "--",
                "sha256sum",
                &format!("/tmp/{name}.bin"),
            ]),
            b"",
        )?;
        assert_eq!(
            text(&out.stdout).split(' ').next(),
            Some(sha256(&payload).as_str()),
            "{name}"
        );
        let back = fleet.nats.dir.path().join(format!("{name}-back.bin"));
        let out = run(k(&["cp", &remote, &back.display().to_string()]), b"")?;
        assert!(
            out.status.success(),
            "{name}: cp out: {}",
            text(&out.stderr)
        );
        assert_eq!(
            sha256(&std::fs::read(&back)?),
            sha256(&payload),
            "{name}: cp out"
        );
        // attach follows the running container's output.
        let mut attach = k(&["attach", "web", "-c", "main"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdout = attach.stdout.take().unwrap();
        let seen = tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            let mut buf = [0; 256];
            while !String::from_utf8_lossy(&seen).contains("\nline ") {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            text(&seen)
        })
        .await?;
        attach.kill()?;
        attach.wait()?;
        assert!(seen.contains("line "), "{name}: attach saw {seen:?}");
        port_forward(&fleet, websockets, name).await?;
    }
    no_stream_left(&stats, WAIT).await?;

    // One audit event per session, with what ran where and how it ended.
    let events: Vec<AuditEvent> = events(&fleet).await?.into_iter().map(|(_, e)| e).collect();
    let execs: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.kind == "proxy" && e.action == "exec")
        .collect();
    let failed = execs
        .iter()
        .find(|e| e.session.as_ref().is_some_and(|s| s.exit_code == Some(3)))
        .expect("the exec that exited 3 is audited");
    let session = failed.session.as_ref().unwrap();
    assert_eq!(failed.actor, "user:admin");
    assert_eq!(failed.cluster, "cluster1");
    assert_eq!(
        (session.namespace.as_str(), session.pod.as_str()),
        ("default", "web")
    );
    assert_eq!(
        session.command,
        ["sh", "-c", "echo out; echo err >&2; exit 3"]
    );
    assert_eq!(session.protocol, "SPDY/3.1");
    assert!(session.bytes_to_client > 0);
    let stdin = execs
        .iter()
        .find(|e| e.session.as_ref().is_some_and(|s| s.command == ["cat"]))
        .unwrap();
    let s = stdin.session.as_ref().unwrap();
    assert_eq!(s.exit_code, Some(0));
    assert!(s.bytes_from_client >= "data through stdin\n".len() as i64);
    assert!(events.iter().any(|e| e.action == "portforward"));
    assert!(events.iter().any(|e| e.action == "attach"));
    Ok(())
}

/// Several connections at once through one port-forward, one of them half-closed first;
/// each gets exactly its own bytes back.
async fn port_forward(fleet: &Fleet, websockets: &str, name: &str) -> anyhow::Result<()> {
    let port = fleetbus_nats::server::free_port()?;
    let mut forward = kubectl(
        fleet,
        "ops",
        websockets,
        &["port-forward", "pod/web", &format!("{port}:8080")],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let mut first = [0; 64];
    let n = forward.stdout.as_mut().unwrap().read(&mut first)?;
    assert!(
        text(&first[..n]).contains("Forwarding from"),
        "{name}: {}",
        text(&first[..n])
    );
    let clients: Vec<_> = (0..4u8)
        .map(|i| {
            std::thread::spawn(move || -> std::io::Result<(Vec<u8>, Vec<u8>)> {
                let mut conn = TcpStream::connect(("127.0.0.1", port))?;
                conn.set_read_timeout(Some(Duration::from_secs(60)))?;
                let sent: Vec<u8> = (0..256 * 1024u32).map(|j| (j as u8) ^ i).collect();
                conn.write_all(&sent)?;
                // Half-close: the echo answers everything, then closes its side.
                conn.shutdown(std::net::Shutdown::Write)?;
                let mut got = Vec::new();
                conn.read_to_end(&mut got)?;
                Ok((sent, got))
            })
        })
        .collect();
    for client in clients {
        let (sent, got) = client.join().unwrap()?;
        assert_eq!(got.len(), sent.len(), "{name}: echo length");
        assert!(got == sent, "{name}: echo bytes");
    }
    forward.kill()?;
    forward.wait()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_needs_a_grant_and_the_apiservers_permission_on_a_node() -> anyhow::Result<()> {
    let (fleet, _kube, _spoke, _) = cluster_with_pod().await?;
    // The apiserver's own refusal, as it wrote it, for a token without pods/exec.
    let out = run(
        kubectl(&fleet, "viewer", "", &["exec", "web", "--", "true"]),
        b"",
    )?;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            r#"cannot create resource "pods/exec" in API group "" in the namespace "default""#
        ),
        "{stderr}"
    );
    assert!(stderr.contains("system:serviceaccount:"), "{stderr}");
    // A user without a grant does not get as far as the tunnel.
    let out = run(
        fleet.proxy_kubectl("bob", "cluster1", "ops", &["exec", "web", "--", "true"]),
        b"",
    )?;
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim(),
        "error: user bob is not granted managed service account ops on cluster cluster1"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_terminal_shows_the_prompt_and_follows_a_resize_on_a_node() -> anyhow::Result<()>
{
    let (fleet, _kube, _spoke, _) = cluster_with_pod().await?;
    let cmd = kubectl(&fleet, "ops", "", &["exec", "-ti", "web", "--", "sh"]);
    let mut line = String::from("env");
    for (key, value) in cmd.get_envs() {
        if let (Some(key), Some(value)) = (key.to_str(), value.and_then(|v| v.to_str())) {
            line.push_str(&format!(" {key}='{value}'"));
        }
    }
    line.push_str(&format!(" '{}'", cmd.get_program().to_string_lossy()));
    for arg in cmd.get_args() {
        line.push_str(&format!(" '{}'", arg.to_string_lossy()));
    }
    let socket = format!("fleetbus-exec-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux runs")
    };
    let _cleanup = Cleanup(socket.clone());
    // The pane stays after kubectl ends, so a failure shows on the screen.
    let line = format!("{line}; echo kubectl exited $?; sleep 600");
    let started = tmux(&["new-session", "-d", "-x", "80", "-y", "24", &line]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    let screen = || text(&tmux(&["capture-pane", "-p"]).stdout);
    eventually("the shell's prompt", WAIT, || async {
        screen().contains("/ #").then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}", screen()))?;
    tmux(&["send-keys", "stty size", "Enter"]);
    eventually("the terminal's size", WAIT, || async {
        screen().contains("24 80").then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}", screen()))?;
    tmux(&["resize-window", "-x", "100", "-y", "30"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tmux(&["send-keys", "clear; stty size", "Enter"]);
    eventually("the new size", WAIT, || async {
        screen().contains("30 100").then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}", screen()))?;
    tmux(&["send-keys", "exit 0", "Enter"]);
    eventually("the session ends", WAIT, || async {
        screen().contains("kubectl exited 0").then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}", screen()))?;
    Ok(())
}

/// Kills the test's tmux server, however the test ends.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}
