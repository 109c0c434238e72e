//! The hub as its own process, so that its CPU and memory can be measured apart from the
//! simulated spokes that share the benchmark's process.

use std::process::{Child, Command, Stdio};

use crate::fleet::Fleet;

/// A running `fleetbus-hub`; killed on drop.
pub struct HubProcess {
    child: Child,
}

impl HubProcess {
    /// Starts `fleetbus-hub` (next to the running binary) for `fleet`'s NATS, logging warnings
    /// and errors to `hub.log` in the fleet's folder.
    pub fn start(fleet: &Fleet) -> anyhow::Result<Self> {
        let binary = crate::fleet::sibling_bin("fleetbus-hub");
        let log = std::fs::File::create(fleet.nats.dir.path().join("hub.log"))?;
        let child = Command::new(binary)
            .arg("--nats-url")
            .arg(fleet.nats.url())
            .arg("--pki-dir")
            .arg(fleet.nats.pki.root())
            .arg("--subject-prefix")
            .arg(fleet.nats.subjects.prefix())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self { child })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
