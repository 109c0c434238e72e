//! Clusters with a real node (controllers, scheduler, kubelet on containerd): pods run, a
//! ManifestWork's Deployment rolls out and reports real status, deleting it takes its pods, and
//! logs of a real pod come through the tunnel. Teardown leaves nothing on the machine.
//! Node tests are named `…_on_a_node`: `.config/nextest.toml` runs them one at a time, so the
//! host sysctls they check are theirs alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_cli::local::node_host::{SYSCTLS, command_lines, read_sysctl};
use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::tunnel_seed::no_stream_left;
use fleetbus_tests::works::{condition, create_work, one_cluster_with_node, work_json};
use fleetbus_tests::{Fleet, eventually};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

fn kubectl(kube: &KubeServer, args: &[&str]) -> std::process::Output {
    kube.kubectl().args(args).output().expect("kubectl runs")
}

fn kubectl_ok(kube: &KubeServer, args: &[&str]) -> String {
    let out = kubectl(kube, args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Deployment of busybox that prints a numbered line every second.
fn deployment(name: &str, namespace: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: local/busybox:1
        imagePullPolicy: Never
        command: [sh, -c, 'i=0; while true; do echo "line $i"; i=$((i+1)); sleep 1; done']
"#
    )
}

/// Processes whose command line names `dir`.
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    command_lines()
        .into_iter()
        .filter_map(|(_, cmd)| cmd.contains(&needle).then_some(cmd))
        .collect()
}

fn bridges() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("fbnode"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_and_teardown_leaves_nothing_on_a_node() -> anyhow::Result<()> {
    let before: Vec<String> = SYSCTLS.iter().map(|s| read_sysctl(s)).collect();
    let bridges_before = bridges();
    let host_logs = || {
        ["/var/log/pods", "/var/log/containers"]
            .map(|d| std::fs::read_dir(d).map_or(0, |d| d.count()))
    };
    let host_logs_before = host_logs();
    let dir = tempfile::tempdir()?;
    let root = dir.path().canonicalize()?;
    let kube = KubeServer::start_with_node(&root).await?;
    let started = kube.memory_kib();
    assert!(
        started > 100 * 1024,
        "a cluster takes memory: {started} KiB"
    );
    kubectl_ok(&kube, &["create", "namespace", "demo"]);
    let file = root.join("web.yaml");
    std::fs::write(&file, deployment("web", "demo", 2))?;
    kubectl_ok(&kube, &["apply", "-f", &file.display().to_string()]);
    kubectl_ok(
        &kube,
        &[
            "-n",
            "demo",
            "rollout",
            "status",
            "deployment/web",
            "--timeout=90s",
        ],
    );
    let logs = eventually("a log line of a real pod", WAIT, || async {
        let out = kubectl(&kube, &["-n", "demo", "logs", "deployment/web"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("line 1").then_some(text)
    })
    .await?;
    assert!(logs.starts_with("line 0\n"), "{logs}");
    // Shims name their containerd's socket, which lives in the node slot's run folder.
    let shims = || {
        processes_under(Path::new("/run/fleetbus-nodes"))
            .into_iter()
            .filter(|c| c.contains("containerd-shim"))
            .count()
    };
    assert!(
        shims() >= 2,
        "a shim per pod runs under the node's containerd"
    );
    assert!(
        processes_under(&root).len() >= 4,
        "controllers, kubelet, containerd"
    );
    assert_ne!(bridges(), bridges_before, "the node has its own bridge");

    drop(kube);
    assert_eq!(processes_under(&root), Vec::<String>::new());
    assert_eq!(shims(), 0, "no shim outlives its node");
    assert_eq!(bridges(), bridges_before, "the node's bridge is gone");
    assert_eq!(
        host_logs(),
        host_logs_before,
        "pod logs stay in the node's own folder"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(
        !mounts.contains(&root.display().to_string()),
        "nothing stays mounted"
    );
    let after: Vec<String> = SYSCTLS.iter().map(|s| read_sysctl(s)).collect();
    assert_eq!(after, before, "the sysctls of {SYSCTLS:?} are restored");
    Ok(())
}

fn deployment_work(replicas: u32) -> String {
    let manifest = deployment("web", "demo", replicas).replace('\n', "\n      ");
    format!(
        r#"apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
spec:
  workload:
    manifests:
    - {{apiVersion: v1, kind: Namespace, metadata: {{name: demo}}}}
    - {manifest}
  manifestConfigs:
  - resourceIdentifier: {{group: apps, resource: deployments, name: web, namespace: demo}}
    feedbackRules:
    - type: WellKnownStatus
    - type: JSONPaths
      jsonPaths: [{{name: available, path: '.conditions[?(@.type=="Available")].status'}}]
"#
    )
}

/// The status feedback of the work's Deployment, once it reports `ready` ready replicas.
async fn feedback_with_ready(fleet: &Fleet, ready: i64) -> anyhow::Result<Value> {
    eventually(
        &format!("{ready} ready replicas reported"),
        WAIT,
        || async {
            let w = work_json(fleet, "web", "cluster1").await.ok()?;
            let web = w["status"]["resourceStatus"]["manifests"]
                .as_array()?
                .iter()
                .find(|m| m["resourceMeta"]["kind"] == "Deployment")?
                .clone();
            let values = web["statusFeedback"]["values"].as_array()?.clone();
            let ready_now = values
                .iter()
                .find(|v| v["name"] == "ReadyReplicas")?
                .get("fieldValue")?["integer"]
                .as_i64()?;
            (ready_now == ready).then_some(Value::Array(values))
        },
    )
    .await
}

fn value<'a>(values: &'a Value, name: &str) -> &'a Value {
    &values
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {values}"))["fieldValue"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_rolls_out_scales_and_takes_its_pods_on_a_node() -> anyhow::Result<()> {
    let (fleet, kube, _spoke) = one_cluster_with_node("cluster1").await?;
    create_work(&fleet, "web", "cluster1", &deployment_work(2), &["--wait"]).await?;
    let values = feedback_with_ready(&fleet, 2).await?;
    assert_eq!(
        value(&values, "AvailableReplicas"),
        &json!({"type": "Integer", "integer": 2})
    );
    assert_eq!(
        value(&values, "available"),
        &json!({"type": "String", "string": "True"})
    );
    let w = work_json(&fleet, "web", "cluster1").await?;
    assert_eq!(
        condition(&w["status"]["conditions"], "Available").unwrap()["status"],
        "True"
    );

    // A new generation scales it; the feedback follows the real rollout.
    create_work(
        &fleet,
        "web",
        "cluster1",
        &deployment_work(3),
        &["--overwrite", "--wait"],
    )
    .await?;
    let values = feedback_with_ready(&fleet, 3).await?;
    assert_eq!(
        value(&values, "Replicas"),
        &json!({"type": "Integer", "integer": 3})
    );

    // Deleting the work removes the Deployment; the garbage collector takes its pods and the
    // namespace deletion finishes.
    fleet
        .cli(&["delete", "work", "web", "--cluster", "cluster1", "--wait"])
        .await?;
    eventually("pods and namespace gone", WAIT, || async {
        let out = kubectl(&kube, &["get", "namespace", "demo", "--ignore-not-found"]);
        let pods = kubectl(&kube, &["get", "pods", "-A", "-o", "name"]);
        (out.status.success() && out.stdout.is_empty() && pods.stdout.is_empty()).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_reported_by_the_work_on_a_node() -> anyhow::Result<()> {
    let (fleet, _kube, _spoke) = one_cluster_with_node("cluster1").await?;
    let work = r#"apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
spec:
  workload:
    manifests:
    - apiVersion: v1
      kind: Pod
      metadata: {name: broken, namespace: default}
      spec:
        containers: [{name: main, image: local/missing:1, imagePullPolicy: Never}]
  manifestConfigs:
  - resourceIdentifier: {resource: pods, name: broken, namespace: default}
    feedbackRules:
    - type: JSONPaths
      jsonPaths: [{name: waiting, path: '.containerStatuses[0].state.waiting.reason'}]
"#;
    create_work(&fleet, "broken", "cluster1", work, &["--wait"]).await?;
    eventually("ErrImageNeverPull in the work's feedback", WAIT, || async {
        let w = work_json(&fleet, "broken", "cluster1").await.ok()?;
        let text = w["status"]["resourceStatus"].to_string();
        text.contains("ErrImageNeverPull").then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_logs_follow_through_the_tunnel_on_a_node() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube_with_node("cluster1").await?;
    let config = fleet.spoke_config("cluster1", Some(&kube))?;
    let stats = config.stats.clone();
    let _spoke = fleet.join(config, ConditionStatus::True).await?;
    fleet
        .create_msa_with_rules(
            "ops",
            "- apiGroups: [\"\", apps]\n  resources: [pods, pods/log, deployments]\n  verbs: [get, list, watch]\n",
        )
        .await?;
    fleet.reported_token("ops", "cluster1").await?;
    let file = fleet.nats.dir.path().join("web.yaml");
    std::fs::write(&file, deployment("web", "default", 1))?;
    kubectl_ok(&kube, &["apply", "-f", &file.display().to_string()]);
    kubectl_ok(
        &kube,
        &["rollout", "status", "deployment/web", "--timeout=90s"],
    );
    let proxy = |args: &[&str]| fleet.proxy_kubectl("admin", "cluster1", "ops", args);

    let out = eventually("logs through the tunnel", WAIT, || async {
        let out = proxy(&["logs", "deployment/web"]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains("line 1")).then_some(text)
    })
    .await?;
    assert!(out.starts_with("line 0\n"), "{out}");

    // `logs -f` keeps flowing for 30 s, a line a second, and ends cleanly when kubectl goes.
    let mut follow = proxy(&["logs", "-f", "deployment/web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = follow.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            seen.push((started.elapsed(), line));
            if started.elapsed() > Duration::from_secs(32) {
                break;
            }
        }
        seen
    })
    .await?;
    let (last_at, last) = lines.last().cloned().unwrap();
    assert!(
        last_at > Duration::from_secs(30),
        "the stream flowed for {last_at:?} (last line {last:?})"
    );
    let numbers: Vec<u64> = lines
        .iter()
        .filter_map(|(_, l)| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    follow.kill()?;
    follow.wait()?;
    no_stream_left(&stats, WAIT).await?;
    Ok(())
}
