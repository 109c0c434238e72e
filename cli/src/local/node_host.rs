//! What a node shares with the machine it runs on, and how several nodes (parallel tests, a
//! test beside `local-up`) share it safely: each claims a numbered slot (its own bridge, pod
//! subnet and run folder), the host sysctls the kubelet and CNI change are recorded before the
//! first node starts and restored when the last one stops, and a slot whose owner died without
//! cleaning up is cleaned by the next node that starts. One lock file serialises all of it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Host-wide settings a node changes: kubelet sets the first three at start
/// (`vm.overcommit_memory=1`, `kernel.panic=10`, `kernel.panic_on_oops=1`).
pub const SYSCTLS: [&str; 4] = [
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
];

/// Most nodes on one machine.
const SLOTS: u8 = 64;

/// A claimed slot; released (and the host restored when it was the last) on drop.
#[derive(Debug)]
pub struct Slot {
    /// 0..64: names the bridge `fbnode<N>` and the subnet `10.88.<N>.0/24`.
    pub index: u8,
    /// A short folder for the node's sockets and runtime state (unix socket paths are short).
    pub run_dir: PathBuf,
    file: PathBuf,
}

impl Slot {
    /// Claims a free slot for a node whose files live in `node_dir`.
    pub fn claim(node_dir: &Path) -> io::Result<Self> {
        let root = root();
        std::fs::create_dir_all(&root)?;
        let _lock = Lock::take(&root)?;
        let mut live = 0;
        let mut free = None;
        for index in 0..SLOTS {
            let file = root.join(format!("slot-{index}"));
            match std::fs::read_to_string(&file) {
                Ok(text) if owner_alive(&text) => live += 1,
                Ok(text) => {
                    reap(index, &text);
                    let _ = std::fs::remove_file(&file);
                    free.get_or_insert(index);
                }
                Err(_) => {
                    free.get_or_insert(index);
                }
            }
        }
        let index = free.ok_or_else(|| io::Error::other("all 64 node slots are in use"))?;
        let saved = root.join("sysctls");
        if live == 0 && !saved.exists() {
            let values: Vec<String> = SYSCTLS.iter().map(|s| read_sysctl(s)).collect();
            std::fs::write(&saved, values.join("\n"))?;
        }
        let run_dir = root.join(format!("node-{index}"));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir)?;
        let file = root.join(format!("slot-{index}"));
        std::fs::write(
            &file,
            format!(
                "owner {}\ndir {}\nrun {}\n",
                std::process::id(),
                node_dir.display(),
                run_dir.display()
            ),
        )?;
        Ok(Self {
            index,
            run_dir,
            file,
        })
    }

    /// The bridge this node's pods sit on.
    pub fn bridge(&self) -> String {
        bridge_name(self.index)
    }

    /// Records a process of the node, so a later node can stop it if this one dies unclean.
    pub fn record_pid(&self, pid: u32) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new().append(true).open(&self.file)?;
        writeln!(file, "pid {pid}")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let root = root();
        let Ok(_lock) = Lock::take(&root) else { return };
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir_all(&self.run_dir);
        let others = (0..SLOTS).any(|i| {
            std::fs::read_to_string(root.join(format!("slot-{i}")))
                .is_ok_and(|text| owner_alive(&text))
        });
        if !others {
            restore_sysctls(&root);
        }
    }
}

/// Where slots live: on tmpfs where the machine has `/run`, so a reboot forgets them.
fn root() -> PathBuf {
    let run = Path::new("/run");
    if run.is_dir() {
        run.join("fleetbus-nodes")
    } else {
        std::env::temp_dir().join("fleetbus-nodes")
    }
}

fn bridge_name(index: u8) -> String {
    format!("fbnode{index}")
}

/// An exclusive lock on `<root>/lock`, held until drop.
struct Lock(std::fs::File);

impl Lock {
    fn take(root: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))?;
        file.lock()?;
        Ok(Self(file))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn field<'a>(text: &'a str, key: &str) -> impl Iterator<Item = &'a str> {
    text.lines()
        .filter_map(move |l| l.strip_prefix(key)?.strip_prefix(' '))
}

fn owner_alive(text: &str) -> bool {
    field(text, "owner")
        .next()
        .is_some_and(|pid| Path::new("/proc").join(pid).exists())
}

/// Stops what a dead node left: its processes, shims and containers, mounts and bridge.
fn reap(index: u8, text: &str) {
    let pids: Vec<u32> = field(text, "pid").filter_map(|p| p.parse().ok()).collect();
    let dirs: Vec<PathBuf> = field(text, "dir")
        .chain(field(text, "run"))
        .map(PathBuf::from)
        .collect();
    tracing::warn!(slot = index, "cleaning up after a node whose owner exited");
    kill_tree(&pids);
    kill_matching(&dirs);
    unmount_under(&dirs);
    delete_bridge(&bridge_name(index));
    for run in field(text, "run") {
        let _ = std::fs::remove_dir_all(run);
    }
}

/// Kills every process whose command line names one of `dirs` (containerd shims carry their
/// containerd's socket path), with all their descendants.
pub fn kill_matching(dirs: &[PathBuf]) {
    let needles: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let roots: Vec<u32> = command_lines()
        .into_iter()
        .filter(|(_, cmdline)| needles.iter().any(|n| cmdline.contains(n.as_str())))
        .map(|(pid, _)| pid)
        .collect();
    kill_tree(&roots);
}

/// Every other process with its command line, arguments joined by spaces.
pub fn command_lines() -> Vec<(u32, String)> {
    processes()
        .into_iter()
        .filter(|(pid, _)| *pid != std::process::id())
        .filter_map(|(pid, _)| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect()
}

/// SIGKILLs `pids` and every descendant of them.
pub fn kill_tree(pids: &[u32]) {
    let mut doomed = descendants(pids);
    doomed.retain(|p| *p != std::process::id());
    if doomed.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .args(doomed.iter().map(u32::to_string))
        .stderr(std::process::Stdio::null())
        .status();
}

/// Resident memory of `pids` and all their descendants, in KiB.
pub fn resident_kib(pids: &[u32]) -> u64 {
    descendants(pids)
        .iter()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
            line.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// `pids` and every descendant of them.
fn descendants(pids: &[u32]) -> Vec<u32> {
    let table = processes();
    let mut all: Vec<u32> = pids.to_vec();
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        all.extend(
            table
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    all
}

/// (pid, parent pid) of every process.
fn processes() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // The command name may contain spaces; fields after its ')' are fixed.
            let rest = stat.rsplit_once(')')?.1;
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Lazily unmounts every mount point under `dirs`, deepest first.
pub fn unmount_under(dirs: &[PathBuf]) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| dirs.iter().any(|d| Path::new(p).starts_with(d)))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = std::process::Command::new("umount")
            .args(["-l", point])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Deletes a network link if it exists.
pub fn delete_bridge(name: &str) {
    if Path::new("/sys/class/net").join(name).exists() {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", name])
            .status();
    }
}

/// The current value of a sysctl (`kernel/panic`), trimmed; empty if unreadable.
pub fn read_sysctl(name: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn restore_sysctls(root: &Path) {
    let saved = root.join("sysctls");
    let Ok(text) = std::fs::read_to_string(&saved) else {
        return;
    };
    for (name, value) in SYSCTLS.iter().zip(text.lines()) {
        if !value.is_empty()
            && read_sysctl(name) != value
            && let Err(e) = std::fs::write(Path::new("/proc/sys").join(name), value)
        {
            tracing::warn!(sysctl = name, error = %e, "cannot restore a sysctl");
        }
    }
    let _ = std::fs::remove_file(saved);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_files_name_their_owner_pids_and_dirs() {
        let text = "owner 1\ndir /a/b\nrun /run/x\npid 10\npid 11\n";
        assert!(owner_alive(text));
        assert!(!owner_alive("owner 999999999\n"));
        assert!(!owner_alive("garbage"));
        assert_eq!(field(text, "pid").collect::<Vec<_>>(), ["10", "11"]);
        assert_eq!(field(text, "dir").collect::<Vec<_>>(), ["/a/b"]);
    }

    #[test]
    fn process_table_has_this_process_and_its_parent() {
        let table = processes();
        assert!(table.iter().any(|(pid, _)| *pid == std::process::id()));
    }
}
