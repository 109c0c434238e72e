//! The README's run command, for real: `fleetbus local-up` starts nats-server, the hub, two
//! kube-apiservers and two spokes; the CLI, pointed at it by `env.sh`, accepts both clusters
//! and sees them available; each cluster is a real one-node cluster running the demo
//! Deployment; a spoke killed with SIGKILL is restarted and its cluster comes back by itself;
//! Ctrl-C stops everything.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fleetbus_cli::local::kube_server::kubectl;
use fleetbus_cli::local::node_host::command_lines;

fn fleetbus() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleetbus"))
}

/// The variables `env.sh` exports.
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn cli(env: &[(String, String)], args: &[&str]) -> (bool, String) {
    let out = Command::new(fleetbus())
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The pid of the spoke local-up runs for `cluster` with state under `dir`.
fn spoke_pid(dir: &Path, cluster: &str) -> u32 {
    let state = dir.join("spokes").join(cluster).display().to_string();
    command_lines()
        .into_iter()
        .find(|(_, cmd)| cmd.contains("fleetbus-spoke") && cmd.contains(&format!("{state} ")))
        .map(|(pid, _)| pid)
        .unwrap_or_else(|| panic!("no spoke for {cluster} runs"))
}

#[test]
fn local_up_runs_a_fleet_that_the_cli_manages_on_a_node() {
    let hub = fleetbus().with_file_name("fleetbus-hub");
    assert!(
        hub.is_file(),
        "build the workspace binaries first: {} missing",
        hub.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let port = fleetbus_nats::server::free_port().unwrap().to_string();
    let mut child = Command::new(fleetbus())
        .args(["local-up", "--state-dir"])
        .arg(dir.path())
        .args(["--nats-port", &port])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !printed
        .iter()
        .any(|l: &String| l.contains("fleetbus accept cluster1 cluster2"))
    {
        let line = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        printed.push(line.unwrap_or_else(|_| panic!("local-up did not get ready: {printed:?}")));
    }

    let env = env_file(&dir.path().join("env.sh"));
    eventually("both clusters pending", Duration::from_secs(30), || {
        let (ok, table) = cli(&env, &["get", "clusters"]);
        ok && table.matches(" pending ").count() == 2
    });
    let (ok, text) = cli(&env, &["accept", "cluster1", "cluster2"]);
    assert!(ok, "{text}");
    eventually("both clusters available", Duration::from_secs(30), || {
        let (_, table) = cli(&env, &["get", "clusters"]);
        table
            .lines()
            .filter(|l| l.contains(" true ") && l.contains(" True ") && l.contains("v1."))
            .count()
            == 2
    });
    let kubeconfig = dir.path().join("clusters/cluster1/kubeconfig");
    assert!(kubeconfig.is_file());
    eventually(
        "the demo Deployment running",
        Duration::from_secs(90),
        || {
            let out = kubectl(&kubeconfig)
                .args(["-n", "demo", "get", "deployment", "hello", "-o"])
                .arg("jsonpath={.status.readyReplicas}")
                .output()
                .unwrap();
            out.stdout == b"2"
        },
    );
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("cluster1") && l.contains(" MiB (")),
        "memory per cluster is printed: {printed:?}"
    );

    // env.sh puts the CLI on PATH.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && command -v fleetbus",
            dir.path().join("env.sh").display()
        ))
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "fleetbus is on PATH after env.sh");

    // A spoke that dies is restarted; its cluster goes Unknown and comes back on its own.
    let spoke = spoke_pid(dir.path(), "cluster1");
    Command::new("kill")
        .args(["-KILL", &spoke.to_string()])
        .status()
        .unwrap();
    let row = |table: &str| {
        table
            .lines()
            .find(|l| l.starts_with("cluster1 "))
            .unwrap_or_default()
            .to_owned()
    };
    eventually("cluster1 Unknown", Duration::from_secs(30), || {
        row(&cli(&env, &["get", "clusters"]).1).contains(" Unknown ")
    });
    eventually("cluster1 Available again", Duration::from_secs(60), || {
        row(&cli(&env, &["get", "clusters"]).1).contains(" True ")
    });
    assert_ne!(spoke_pid(dir.path(), "cluster1"), spoke, "a new spoke runs");

    // A work through the local fleet reaches cluster1's apiserver.
    let manifests = dir.path().join("manifests.yaml");
    std::fs::write(
        &manifests,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hello, namespace: default}\ndata: {k: v}\n",
    )
    .unwrap();
    let manifests = manifests.display().to_string();
    let (ok, text) = cli(
        &env,
        &[
            "create",
            "work",
            "hello",
            "--cluster",
            "cluster1",
            "--wait",
            "-f",
            &manifests,
        ],
    );
    assert!(
        ok && text.contains("manifestwork hello applied on cluster cluster1"),
        "{text}"
    );

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "local-up exited with {status}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert_eq!(rest.last().map(String::as_str), Some("stopped"), "{rest:?}");
}
