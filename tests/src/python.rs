//! Running the Python examples (`examples/python`) against a test's fleet, as an independent
//! NATS client would: nats-py and protobuf classes compiled from `schema/proto`, nothing of
//! fleetbus's Rust code. The interpreter is `$FLEETBUS_PYTHON` (scripts/testenv.sh installs
//! nats-py, protobuf and grpcio-tools next to nats-server and exports it).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::Context;
use fleetbus_nats::TlsFiles;
use fleetbus_schema::Identity;

use crate::Fleet;

/// The examples' folder in the workspace.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/python")
}

/// The Python that has nats-py and grpcio-tools.
pub fn python() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("FLEETBUS_PYTHON")
        .map(PathBuf::from)
        .context("FLEETBUS_PYTHON is not set: run eval \"$(scripts/testenv.sh)\" first")?;
    anyhow::ensure!(
        path.is_file(),
        "FLEETBUS_PYTHON={} is not a file",
        path.display()
    );
    Ok(path)
}

/// A finished example run.
#[derive(Debug)]
pub struct Run {
    /// Exit status success.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Each stdout line as JSON.
    pub fn json_lines(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect()
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Fleet {
    /// `python examples/python/<script> ARGS` as `identity` (whose TLS files are `tls`).
    pub fn example(
        &self,
        identity: &Identity,
        tls: &TlsFiles,
        script: &str,
        args: &[&str],
    ) -> anyhow::Result<Command> {
        let mut cmd = Command::new(python()?);
        cmd.current_dir(examples_dir())
            .arg(script)
            .args(args)
            .env("FLEETBUS_NATS_URL", self.nats.url())
            .env("FLEETBUS_CA", &tls.ca)
            .env("FLEETBUS_CERT", &tls.cert)
            .env("FLEETBUS_KEY", &tls.key)
            .env("FLEETBUS_IDENTITY", identity.to_string())
            .env("FLEETBUS_SUBJECT_PREFIX", self.nats.subjects.prefix())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }

    /// Runs an example to the end (at most `timeout`) as `identity`.
    pub async fn run_example(
        &self,
        identity: &Identity,
        script: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Run> {
        let tls = self.tls_of(identity)?;
        let child = self.example(identity, &tls, script, args)?.spawn()?;
        wait(child, timeout).await
    }

    /// The TLS files of `identity` (the admin's from the PKI, others issued on first use).
    pub fn tls_of(&self, identity: &Identity) -> anyhow::Result<TlsFiles> {
        match identity {
            Identity::User(u) if u.as_str() == "admin" => {
                let flags = self.flags_for("admin")?;
                Ok(TlsFiles {
                    ca: flags.ca,
                    cert: flags.cert,
                    key: flags.key,
                })
            }
            other => self.nats.tls_for(other),
        }
    }
}

/// Waits for `child` to exit, killing it after `timeout`.
pub async fn wait(child: Child, timeout: Duration) -> anyhow::Result<Run> {
    let id = child.id();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(timeout, output).await {
        Ok(output) => Ok(output??.into()),
        Err(_) => {
            // Ends only the child this test started, by its id.
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            anyhow::bail!("example did not finish within {timeout:?}")
        }
    }
}
