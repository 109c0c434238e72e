//! A real node for a [`KubeServer`](super::kube_server::KubeServer): kube-controller-manager
//! and kube-scheduler against it, and one kubelet on its own containerd, CNI bridge, pod subnet
//! and ports, so pods run and logs, exec, attach, cp and port-forward work. Made for one
//! machine and no registry: the images `local/pause:1` and `local/busybox:1` that
//! `scripts/testenv.sh` makes are imported at start (pods use `imagePullPolicy: Never`). Needs
//! root. Stopping it (drop) removes the pods, stops every process, unmounts, deletes the
//! bridge, and (the last node on the machine) restores the sysctls the kubelet changed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::kube_server::{kubectl, spawn};
use super::node_host::{self, Slot};

/// Kubelet's node name: the apiserver reaches it as `localhost` (`--kubelet-preferred-address-types=Hostname`).
pub const NODE_NAME: &str = "localhost";
/// How long a kubelet may take to register and report Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What a node needs to know of its apiserver.
pub struct ApiServer<'a> {
    /// An admin kubeconfig.
    pub admin_kubeconfig: &'a Path,
    /// A kubeconfig with the node's token (`system:node:localhost`).
    pub node_kubeconfig: &'a Path,
    /// The service-account signing key (for the controller-manager's token controller).
    pub sa_key: &'a Path,
    /// The apiserver's serving CA.
    pub ca_file: &'a Path,
}

/// A running node; everything stops on drop.
pub struct Node {
    procs: Vec<(Child, &'static str)>,
    containerd_sock: PathBuf,
    admin_kubeconfig: PathBuf,
    dir: PathBuf,
    // Released (and the host restored, for the last node) after drop has stopped everything.
    slot: Slot,
}

/// The binaries a node runs, found before anything starts.
struct Binaries {
    controller_manager: PathBuf,
    scheduler: PathBuf,
    kubelet: PathBuf,
    containerd: PathBuf,
    images: Vec<PathBuf>,
}

impl Binaries {
    fn find(kube_bin: &Path) -> anyhow::Result<Self> {
        if !is_root() {
            anyhow::bail!(
                "a node needs root (it runs containerd and a kubelet, and adds a bridge); run as root or without a node"
            );
        }
        let kube = |name: &str| {
            let path = kube_bin.join(name);
            path.is_file().then_some(path).with_context(|| {
                format!(
                    "{name} not found in {}: run scripts/testenv.sh (it builds it once)",
                    kube_bin.display()
                )
            })
        };
        let containerd = which("containerd").context(
            "containerd not found: apt-get install containerd (or run scripts/testenv.sh)",
        )?;
        which("ctr").context("ctr not found: apt-get install containerd")?;
        if !Path::new("/usr/lib/cni/bridge").is_file() {
            anyhow::bail!(
                "the CNI plugins are missing (/usr/lib/cni/bridge): apt-get install containernetworking-plugins"
            );
        }
        let image_dir = std::env::var_os("FLEETBUS_IMAGES")
            .map_or_else(|| fleetbus_nats::cache_dir().join("images"), PathBuf::from);
        let images: Vec<PathBuf> = ["pause.tar", "busybox.tar"]
            .iter()
            .map(|i| image_dir.join(i))
            .collect();
        if let Some(missing) = images.iter().find(|i| !i.is_file()) {
            anyhow::bail!(
                "image {} not found: run scripts/testenv.sh (it makes local/pause:1 and local/busybox:1)",
                missing.display()
            );
        }
        Ok(Self {
            controller_manager: kube("kube-controller-manager")?,
            scheduler: kube("kube-scheduler")?,
            kubelet: kube("kubelet")?,
            containerd,
            images,
        })
    }
}

impl Node {
    /// Starts a node for `api` with its files under `dir`, and waits until it is Ready.
    pub async fn start(api: &ApiServer<'_>, kube_bin: &Path, dir: &Path) -> anyhow::Result<Self> {
        let bin = Binaries::find(kube_bin)?;
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let slot = Slot::claim(&dir).context("cannot claim a node slot")?;
        let mut node = Self {
            procs: Vec::new(),
            containerd_sock: slot.run_dir.join("containerd.sock"),
            admin_kubeconfig: api.admin_kubeconfig.to_owned(),
            dir: dir.clone(),
            slot,
        };
        node.start_containerd(&bin)?;
        node.import_images(&bin.images)?;
        node.start_controllers(&bin, api)?;
        node.start_kubelet(&bin, api)?;
        node.wait_ready().await?;
        Ok(node)
    }

    fn spawn(&mut self, name: &'static str, binary: &Path, args: &[String]) -> anyhow::Result<()> {
        let child = spawn(binary, args, &self.dir.join(format!("{name}.log")))?;
        self.slot.record_pid(child.id())?;
        self.procs.push((child, name));
        Ok(())
    }

    fn start_containerd(&mut self, bin: &Binaries) -> anyhow::Result<()> {
        let slot = &self.slot;
        let cni_dir = self.dir.join("cni");
        std::fs::create_dir_all(&cni_dir)?;
        let index = slot.index;
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": format!("fleetbus-node-{index}"),
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": slot.bridge(),
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("10.88.{index}.0/24")}]],
                        "dataDir": slot.run_dir.join("ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        });
        std::fs::write(cni_dir.join("10-fleetbus.conflist"), conflist.to_string())?;
        let run = &slot.run_dir;
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{run}/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/local/pause:1"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
            root = self.dir.join("containerd").display(),
            state = run.join("state").display(),
            sock = self.containerd_sock.display(),
            run = run.display(),
            cni = cni_dir.display(),
        );
        let config_file = self.dir.join("containerd.toml");
        std::fs::write(&config_file, config)?;
        // containerd (with its shims) and the kubelet share a mount namespace of their own in
        // which /var/log/pods and /var/log/containers are this node's folders: the kubelet's
        // paths for logs are fixed, and a kubelet deletes the log folders of pods it does not
        // know, so two nodes on one machine would delete each other's logs. Mounts made in
        // there go away with the node.
        let logs = self.dir.join("logs");
        for sub in ["pods", "containers"] {
            std::fs::create_dir_all(logs.join(sub))?;
        }
        let args = vec![
            "--mount".into(),
            "--propagation=slave".into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            concat!(
                r#"for d in pods containers; do mkdir -p /var/log/$d && "#,
                r#"mount --bind "$0/$d" /var/log/$d || exit 1; done; exec "$@""#
            )
            .into(),
            logs.display().to_string(),
            bin.containerd.display().to_string(),
            format!("--config={}", config_file.display()),
        ];
        self.spawn("containerd", Path::new("unshare"), &args)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.containerd_sock.exists() {
            self.check_alive()?;
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "containerd did not open its socket; see {}",
                    self.dir.join("containerd.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.containerd_sock)
            .args(["-n", "k8s.io"]);
        cmd
    }

    fn import_images(&self, images: &[PathBuf]) -> anyhow::Result<()> {
        for image in images {
            let output = self.ctr().args(["images", "import"]).arg(image).output()?;
            if !output.status.success() {
                anyhow::bail!(
                    "cannot import {}: {}",
                    image.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        }
        Ok(())
    }

    fn start_controllers(&mut self, bin: &Binaries, api: &ApiServer<'_>) -> anyhow::Result<()> {
        let admin = api.admin_kubeconfig.display();
        let common = [
            format!("--kubeconfig={admin}"),
            format!("--authentication-kubeconfig={admin}"),
            format!("--authorization-kubeconfig={admin}"),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=0".into(),
            "--port=0".into(),
            "--leader-elect=false".into(),
        ];
        let mut cm = common.to_vec();
        cm.extend([
            format!(
                "--service-account-private-key-file={}",
                api.sa_key.display()
            ),
            format!("--root-ca-file={}", api.ca_file.display()),
            "--controllers=*,-nodeipam,-service,-route,-cloud-node-lifecycle".into(),
        ]);
        self.spawn("kube-controller-manager", &bin.controller_manager, &cm)?;
        self.spawn("kube-scheduler", &bin.scheduler, &common)
    }

    fn start_kubelet(&mut self, bin: &Binaries, api: &ApiServer<'_>) -> anyhow::Result<()> {
        let root = self.dir.join("kubelet");
        std::fs::create_dir_all(&root)?;
        let (port, healthz) = (
            fleetbus_nats::server::free_port()?,
            fleetbus_nats::server::free_port()?,
        );
        let args = vec![
            format!("--kubeconfig={}", api.node_kubeconfig.display()),
            format!("--hostname-override={NODE_NAME}"),
            "--address=127.0.0.1".into(),
            format!("--port={port}"),
            "--healthz-bind-address=127.0.0.1".into(),
            format!("--healthz-port={healthz}"),
            "--read-only-port=0".into(),
            format!("--root-dir={}", root.display()),
            format!("--cert-dir={}", root.join("pki").display()),
            format!(
                "--volume-plugin-dir={}",
                root.join("volume-plugins").display()
            ),
            "--container-runtime=remote".into(),
            format!(
                "--container-runtime-endpoint=unix://{}",
                self.containerd_sock.display()
            ),
            "--pod-infra-container-image=docker.io/local/pause:1".into(),
            "--cgroup-driver=cgroupfs".into(),
            "--fail-swap-on=false".into(),
            "--cgroups-per-qos=false".into(),
            "--enforce-node-allocatable=".into(),
            "--make-iptables-util-chains=false".into(),
            "--image-gc-high-threshold=100".into(),
            "--image-gc-low-threshold=99".into(),
            "--eviction-hard=memory.available<1Mi,nodefs.available<1%,imagefs.available<1%".into(),
            "--sync-frequency=10s".into(),
        ];
        let containerd = self
            .procs
            .iter()
            .find(|(_, name)| *name == "containerd")
            .map(|(child, _)| child.id())
            .context("containerd is not running")?;
        let mut nsenter = vec![
            format!("--target={containerd}"),
            "--mount".into(),
            "--".into(),
            bin.kubelet.display().to_string(),
        ];
        nsenter.extend(args);
        self.spawn("kubelet", Path::new("nsenter"), &nsenter)
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (child, name) in &mut self.procs {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "{name} exited ({status}); see {}",
                    self.dir.join(format!("{name}.log")).display()
                );
            }
        }
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive()?;
            let output = kubectl(&self.admin_kubeconfig)
                .args(["get", "node", NODE_NAME, "-o"])
                .arg(r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#)
                .stderr(Stdio::null())
                .output()
                .context("kubectl not found")?;
            if output.status.success() && output.stdout == b"True" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "the node did not become Ready within {READY_TIMEOUT:?}; see {}",
                    self.dir.join("kubelet.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Resident memory of the node's processes (controllers, kubelet, containerd and what runs
    /// under it), in KiB.
    pub fn memory_kib(&self) -> u64 {
        let pids: Vec<u32> = self.procs.iter().map(|(c, _)| c.id()).collect();
        node_host::resident_kib(&pids)
    }

    /// The node's folder (logs of each process are `<dir>/<name>.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops everything the node started.
    fn stop(&mut self) {
        // No new pods: controllers and scheduler first.
        self.kill("kube-controller-manager");
        self.kill("kube-scheduler");
        // The kubelet stops the containers and tears down their sandboxes.
        let _ = kubectl(&self.admin_kubeconfig)
            .args([
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=1",
                "--timeout=40s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.kill("kubelet");
        self.remove_containers();
        self.kill("containerd");
        let dirs = [self.dir.clone(), self.slot.run_dir.clone()];
        node_host::kill_matching(&dirs);
        node_host::unmount_under(&dirs);
        node_host::delete_bridge(&self.slot.bridge());
    }

    fn kill(&mut self, name: &str) {
        for (child, n) in &mut self.procs {
            if *n == name {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Whatever the kubelet left: kill and remove every task and container.
    fn remove_containers(&self) {
        let Ok(out) = self.ctr().args(["tasks", "ls", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self
                .ctr()
                .args(["tasks", "kill", "-s", "SIGKILL", id])
                .output();
            let _ = self.ctr().args(["tasks", "delete", "-f", id]).output();
        }
        let Ok(out) = self.ctr().args(["containers", "ls", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.ctr().args(["containers", "delete", id]).output();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether this process runs as root (effective uid 0), read from `/proc/self/status`.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}
