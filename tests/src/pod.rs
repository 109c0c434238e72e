//! A one-node cluster with a pod to troubleshoot through the tunnel, and kubectl through
//! `fleetbus proxy kubectl` on either of its transports.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use fleetbus_cli::local::kube_server::KubeServer;

use crate::Fleet;

/// A pod that logs a line a second and serves an echo on port 8080 (one `cat` per connection,
/// so a half-closed connection is answered in full and then closed).
pub const WEB: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: NAME, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: local/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, 'nc -ll -p 8080 -e cat & i=0; while true; do echo "line $i"; i=$((i+1)); sleep 1; done']
"#;

/// The rules of the MSA `ops`: read pods and their logs, exec, attach and port-forward.
pub const OPS_RULES: &str = "- apiGroups: [\"\"]\n  resources: [pods, pods/log]\n  verbs: [get, list]\n- apiGroups: [\"\"]\n  resources: [pods/exec, pods/attach, pods/portforward]\n  verbs: [get, create]\n";

/// Starts [`WEB`] as pod `name` and waits until it is Ready.
pub fn start_web(fleet: &Fleet, kube: &KubeServer, name: &str) -> anyhow::Result<()> {
    let file = fleet.nats.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, WEB.replace("NAME", name))?;
    let apply = kube.kubectl().args(["apply", "-f"]).arg(&file).output()?;
    anyhow::ensure!(apply.status.success(), "{}", text(&apply.stderr));
    let ready = kube
        .kubectl()
        .args(["wait", "--for=condition=Ready", &format!("pod/{name}")])
        .arg("--timeout=90s")
        .output()?;
    anyhow::ensure!(ready.status.success(), "{}", text(&ready.stderr));
    Ok(())
}

/// The two ways kubectl 1.32 reaches exec and port-forward: its default, and SPDY only.
pub const TRANSPORTS: [(&str, &str); 2] = [("default", ""), ("spdy", "false")];

/// kubectl as admin through the tunnel to cluster1 with `sa`'s token; `websockets` is
/// `"false"` for SPDY only, empty for kubectl's default.
pub fn kubectl(fleet: &Fleet, sa: &str, websockets: &str, args: &[&str]) -> Command {
    let mut cmd = fleet.proxy_kubectl("admin", "cluster1", sa, args);
    if !websockets.is_empty() {
        cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets);
    }
    cmd
}

/// Runs `cmd` with `stdin` as its input and collects what it printed.
pub fn run(mut cmd: Command, stdin: &[u8]) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let input = child.stdin.take();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(mut input) = input {
            let _ = input.write_all(&data);
        }
    });
    let out = child.wait_with_output();
    let _ = writer.join();
    out
}

/// Bytes as text, lossily.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
