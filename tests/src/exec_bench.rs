//! `fleetbus-bench exec`: troubleshooting verbs through the tunnel against kubectl straight to the
//! same apiserver, in one run, with kubectl itself on both paths: `exec -- true` round trips
//! and `port-forward` throughput (an echo in the pod: each byte goes there and back, and is
//! checked). Needs root: the cluster is a real one-node cluster.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use fleetbus_cli::proxy::Session;
use fleetbus_schema::v1::ConditionStatus;

use crate::Fleet;

/// A pod with an echo on 8081 (one `cat` per connection).
const POD: &str = r##"apiVersion: v1
kind: Pod
metadata: {name: bench, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: local/busybox:1
    imagePullPolicy: Never
    command: [nc, -ll, -p, "8081", -e, cat]
"##;

const RULES: &str = "- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get]\n- apiGroups: [\"\"]\n  resources: [pods/exec, pods/portforward]\n  verbs: [get, create]\n";

/// Runs the benchmark and prints its tables.
pub async fn run(execs: usize, megabytes: usize) -> anyhow::Result<()> {
    eprintln!("starting nats-server, hub, a one-node cluster and its spoke ...");
    let fleet = Fleet::start().await?;
    let kube = fleet.kube_with_node("cluster1").await?;
    let config = fleet.spoke_config("cluster1", Some(&kube))?;
    let _spoke = fleet.join(config, ConditionStatus::True).await?;
    fleet.create_msa_with_rules("ops", RULES).await?;
    fleet.reported_token("ops", "cluster1").await?;
    let file = fleet.nats.dir.path().join("bench.yaml");
    std::fs::write(&file, POD)?;
    let ok = |out: std::process::Output| -> anyhow::Result<()> {
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    ok(kube.kubectl().args(["apply", "-f"]).arg(&file).output()?)?;
    ok(kube
        .kubectl()
        .args([
            "wait",
            "--for=condition=Ready",
            "pod/bench",
            "--timeout=90s",
        ])
        .output()?)?;

    let session = Session::start(&fleet.flags_for("admin")?, "cluster1", "ops", 0).await?;
    let tunneled = fleet.nats.dir.path().join("tunnel.kubeconfig");
    session.write_kubeconfig("cluster1", &tunneled)?;
    let direct = kube.kubeconfig.clone();
    let paths = [("direct", direct.as_path()), ("tunnel", tunneled.as_path())];

    println!("\nexec -- true, {execs} sequential kubectl runs (SPDY after the WebSocket attempt)");
    println!("{:<8} {:>10} {:>10} {:>10}", "path", "p50", "p90", "max");
    let mut p50s = Vec::new();
    for (name, kubeconfig) in paths {
        let mut times = Vec::new();
        for _ in 0..execs {
            let started = Instant::now();
            ok(kubectl(kubeconfig)
                .args(["exec", "bench", "--", "true"])
                .output()?)?;
            times.push(started.elapsed());
        }
        times.sort();
        let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
        println!(
            "{name:<8} {:>10} {:>10} {:>10}",
            ms(at(50)),
            ms(at(90)),
            ms(at(100))
        );
        p50s.push(at(50));
    }
    println!("added p50: {}", ms(p50s[1].saturating_sub(p50s[0])));

    println!("\nport-forward echo of {megabytes} MiB (there and back, checked), best of 3 rounds");
    let mut rates = Vec::new();
    for (name, kubeconfig) in paths {
        let rate = forward_rate(kubeconfig, megabytes)?;
        println!("{name:<8} {rate:>8.1} MB/s");
        rates.push(rate);
    }
    println!(
        "ratio    {:>8.2}x (target >= 0.80x; OCM's tunnel ~0.5x)",
        rates[1] / rates[0]
    );
    Ok(())
}

fn kubectl(kubeconfig: &Path) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig);
    cmd
}

/// The best of three uploads through one `kubectl port-forward`, in MB/s.
fn forward_rate(kubeconfig: &Path, megabytes: usize) -> anyhow::Result<f64> {
    let port = fleetbus_nats::server::free_port()?;
    let mut forward = kubectl(kubeconfig)
        .args(["port-forward", "pod/bench", &format!("{port}:8081")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut banner = [0; 64];
    let n = forward
        .stdout
        .as_mut()
        .context("stdout")?
        .read(&mut banner)?;
    anyhow::ensure!(n > 0, "kubectl port-forward did not start");
    let total = megabytes << 20;
    let mut best = 0.0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let conn = TcpStream::connect(("127.0.0.1", port))?;
        conn.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut writer = conn.try_clone()?;
        let upload = std::thread::spawn(move || -> std::io::Result<()> {
            let block = vec![0x5a; 1 << 20];
            for _ in 0..megabytes {
                writer.write_all(&block)?;
            }
            writer.shutdown(std::net::Shutdown::Write)
        });
        let (mut reader, mut got, mut buf) = (conn, 0usize, vec![0; 1 << 16]);
        loop {
            match reader.read(&mut buf)? {
                0 => break,
                n => {
                    anyhow::ensure!(
                        buf[..n].iter().all(|b| *b == 0x5a),
                        "the echo changed bytes"
                    );
                    got += n;
                }
            }
        }
        upload
            .join()
            .map_err(|_| anyhow::anyhow!("the upload panicked"))??;
        anyhow::ensure!(got == total, "{got} of {total} bytes came back");
        best = best.max(total as f64 / started.elapsed().as_secs_f64() / 1e6);
    }
    let _ = forward.kill();
    let _ = forward.wait();
    Ok(best)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
