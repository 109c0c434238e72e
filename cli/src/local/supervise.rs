//! Keeps `local-up`'s hub and spokes running the way compose's `restart: unless-stopped`
//! would: a child that exits is reported (name, exit status, log) and started again after a
//! backoff that doubles up to a minute and resets once the child has stayed up for a minute.
//! The first wait (5 s) outlasts the hub's lease, so a crashed spoke's cluster is seen going
//! `Unknown` before it comes back. Stopping is bounded: SIGTERM, a grace period, SIGKILL.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Up this long, a child counts as healthy again and its backoff starts over.
const STABLE: Duration = Duration::from_secs(60);

/// One supervised child process; killed on drop.
pub struct Supervised {
    /// What the user sees, e.g. `fleetbus-spoke cluster1`.
    pub name: String,
    binary: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    started: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
}

impl Supervised {
    /// Starts `binary` (a fleetbus binary beside this one, else on `PATH`) with `args`,
    /// appending its output to `log`.
    pub fn start(
        name: String,
        binary: &str,
        args: Vec<String>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut this = Self {
            name,
            binary: sibling(binary),
            args,
            log: log.to_owned(),
            child: None,
            started: Instant::now(),
            backoff: FIRST_BACKOFF,
            restart_at: None,
        };
        this.spawn().with_context(|| {
            format!("cannot start {binary}; build it with `cargo build --bins`")
        })?;
        Ok(this)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        self.child = Some(child);
        self.started = Instant::now();
        Ok(())
    }

    /// Notices an exit and restarts when its backoff has passed; reports both to `out`.
    pub fn poll(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            self.child = None;
            if self.started.elapsed() >= STABLE {
                self.backoff = FIRST_BACKOFF;
            }
            writeln!(
                out,
                "{} exited ({status}); log {}; restarting in {}s",
                self.name,
                self.log.display(),
                self.backoff.as_secs()
            )?;
            out.flush()?;
            self.restart_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        if let Some(at) = self.restart_at
            && Instant::now() >= at
        {
            self.restart_at = None;
            match self.spawn() {
                Ok(()) => writeln!(out, "{} restarted", self.name)?,
                Err(e) => {
                    writeln!(out, "{} could not be restarted: {e}", self.name)?;
                    self.restart_at = Some(Instant::now() + self.backoff);
                }
            }
            out.flush()?;
        }
        Ok(())
    }
}

impl Supervised {
    /// Asks the child to stop (SIGTERM) and not to be restarted.
    fn terminate(&mut self) {
        self.restart_at = None;
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Whether the child is gone (reaped, so dropping it kills nothing).
    fn exited(&mut self) -> bool {
        let gone = match &mut self.child {
            None => true,
            Some(child) => !matches!(child.try_wait(), Ok(None)),
        };
        if gone {
            self.child = None;
        }
        gone
    }
}

/// Stops every child the way a container runtime does: SIGTERM to all, up to `grace` for them
/// to exit (a spoke reports what it was doing and drains its connection), then SIGKILL to the
/// rest. Returns the names of those that had to be killed.
pub async fn stop_all(children: &mut [Supervised], grace: Duration) -> Vec<String> {
    for child in children.iter_mut() {
        child.terminate();
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !children.iter_mut().all(Supervised::exited) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    children
        .iter_mut()
        .filter_map(|child| {
            if child.exited() {
                return None;
            }
            if let Some(mut process) = child.child.take() {
                let _ = process.kill();
                let _ = process.wait();
            }
            Some(child.name.clone())
        })
        .collect()
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fleetbus binary that sits next to this one, or `name` to be found on `PATH`.
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .map(|exe| exe.with_file_name(name))
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_waits_for_children_that_exit_on_sigterm_and_kills_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let start = |name: &str, script: &str| {
            let args = vec!["-c".to_owned(), script.to_owned()];
            Supervised::start(name.into(), "sh", args, &log).unwrap()
        };
        // One stops on SIGTERM after a short cleanup, one ignores it.
        let mut children = vec![
            start(
                "polite",
                "trap 'sleep 0.3; exit 0' TERM; while :; do sleep 0.1; done",
            ),
            start("stubborn", "trap '' TERM; while :; do sleep 0.1; done"),
        ];
        // Let both shells install their traps.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let killed = stop_all(&mut children, Duration::from_secs(2)).await;
        let took = started.elapsed();
        assert_eq!(killed, ["stubborn"]);
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert!(children.iter_mut().all(Supervised::exited));

        let mut polite = vec![start(
            "polite",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        )];
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        assert!(
            stop_all(&mut polite, Duration::from_secs(10))
                .await
                .is_empty()
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn an_exited_child_is_reported_and_restarted_after_its_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let mut s = Supervised::start("true-ish".into(), "true", Vec::new(), &log).unwrap();
        s.backoff = Duration::from_millis(100);
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&out).contains("restarted") {
            assert!(
                Instant::now() < deadline,
                "{}",
                String::from_utf8_lossy(&out)
            );
            s.poll(&mut out).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("true-ish exited (exit status: 0); log "),
            "{text}"
        );
        assert!(text.contains("restarting in 0s"), "{text}");
        assert_eq!(s.backoff, Duration::from_millis(200), "the backoff doubles");
    }
}
