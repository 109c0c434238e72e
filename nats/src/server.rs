//! nats-server configuration for a fleet (mutual TLS, JetStream, auth callout) and a launcher
//! that runs a real server as a child process for `fleetbus local-up` and tests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::callout::{AUTH_ACCOUNT, FLEET_ACCOUNT, SYS_ACCOUNT};
use crate::connect::TlsFiles;
use crate::files::write_atomic;
use crate::layout::PkiDir;

/// The nkeys of a fleet's auth setup.
pub struct AuthKeys {
    /// Account key that signs callout answers (seed only on the hub).
    pub issuer: nkeys::KeyPair,
    /// User key of the hub's callout connection.
    pub callout: nkeys::KeyPair,
    /// User key of the hub's system-account connection.
    pub system: nkeys::KeyPair,
}

/// An nkey seed file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read nkey seed {path}: {reason}")]
pub struct NkeyError {
    /// The file.
    pub path: PathBuf,
    /// Why (never the seed).
    pub reason: String,
}

impl AuthKeys {
    /// Fresh keys.
    pub fn generate() -> Self {
        Self {
            issuer: nkeys::KeyPair::new_account(),
            callout: nkeys::KeyPair::new_user(),
            system: nkeys::KeyPair::new_user(),
        }
    }

    /// Reads the seeds from a PKI folder.
    pub fn load(pki: &PkiDir) -> Result<Self, NkeyError> {
        Ok(Self {
            issuer: read_seed(&pki.nkey("issuer"))?,
            callout: read_seed(&pki.nkey("callout"))?,
            system: read_seed(&pki.nkey("system"))?,
        })
    }

    /// Writes the seeds (0600) into a PKI folder.
    pub fn save(&self, pki: &PkiDir) -> std::io::Result<()> {
        for (name, key) in [
            ("issuer", &self.issuer),
            ("callout", &self.callout),
            ("system", &self.system),
        ] {
            let seed = key.seed().map_err(std::io::Error::other)?;
            write_atomic(&pki.nkey(name), seed.as_bytes(), true)?;
        }
        Ok(())
    }
}

/// Reads one nkey seed file.
pub fn read_seed(path: &Path) -> Result<nkeys::KeyPair, NkeyError> {
    let err = |reason: String| NkeyError {
        path: path.to_owned(),
        reason,
    };
    let seed = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    nkeys::KeyPair::from_seed(seed.trim()).map_err(|_| err("not an nkey seed".into()))
}

/// One nats-server of a fleet.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `server_name`, unique in a cluster.
    pub name: String,
    /// Interface to listen on for clients.
    pub host: String,
    /// Client port.
    pub port: u16,
    /// Monitoring port on loopback, if any.
    pub http_port: Option<u16>,
    /// Server certificate and the fleet CA that client certificates must chain to.
    pub tls: TlsFiles,
    /// JetStream file store.
    pub store_dir: PathBuf,
    /// Public key of the callout issuer account key.
    pub issuer: String,
    /// Public key of the hub's callout connection.
    pub callout_user: String,
    /// Public key of the hub's system connection.
    pub system_user: String,
    /// Largest message the server accepts (default 1 MiB).
    pub max_payload: Option<u32>,
    /// Routes to the other servers, when this one is part of a NATS cluster.
    pub cluster: Option<ClusterRoutes>,
    /// Port for leaf nodes in spokes' networks, if they may dial in (see [`leafnodes_block`]).
    pub leafnode_port: Option<u16>,
}

/// Membership of a NATS cluster (routes over mutual TLS with the fleet CA).
#[derive(Debug, Clone)]
pub struct ClusterRoutes {
    /// The cluster's name (the same on every server).
    pub name: String,
    /// This server's route port.
    pub port: u16,
    /// Route URLs of the other servers (`tls://host:port`).
    pub routes: Vec<String>,
}

impl ServerConfig {
    /// A loopback server for `pki`'s fleet, storing JetStream data under `store_dir`.
    pub fn local(pki: &PkiDir, keys: &AuthKeys, port: u16, store_dir: PathBuf) -> Self {
        Self {
            name: format!("fleetbus-{port}"),
            host: "127.0.0.1".into(),
            port,
            http_port: None,
            tls: pki.tls("server"),
            store_dir,
            issuer: keys.issuer.public_key(),
            callout_user: keys.callout.public_key(),
            system_user: keys.system.public_key(),
            max_payload: None,
            cluster: None,
            leafnode_port: None,
        }
    }

    /// The URL leaf nodes dial, if leaf nodes may connect.
    pub fn leafnode_url(&self) -> Option<String> {
        self.leafnode_port
            .map(|port| format!("tls://{}:{port}", self.host))
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("tls://{}:{}", self.host, self.port)
    }

    /// The configuration file text.
    pub fn render(&self) -> String {
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let mut c = String::new();
        let _ = writeln!(c, "# Rendered by fleetbus.\nserver_name: {:?}", self.name);
        let _ = writeln!(c, "host: {:?}\nport: {}", self.host, self.port);
        if let Some(http) = self.http_port {
            let _ = writeln!(c, "http: \"127.0.0.1:{http}\"");
        }
        if let Some(max) = self.max_payload {
            let _ = writeln!(c, "max_payload: {max}");
        }
        let _ = writeln!(
            c,
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: true\n  timeout: 5\n}}",
            q(&self.tls.cert),
            q(&self.tls.key),
            q(&self.tls.ca)
        );
        let _ = writeln!(c, "jetstream {{\n  store_dir: {}\n}}", q(&self.store_dir));
        if let Some(cluster) = &self.cluster {
            let routes: Vec<String> = cluster.routes.iter().map(|r| format!("{r:?}")).collect();
            let _ = writeln!(
                c,
                "cluster {{\n  name: {:?}\n  listen: \"{}:{}\"\n  routes: [ {} ]\n  tls {{\n    cert_file: {}\n    key_file: {}\n    ca_file: {}\n    verify: true\n    timeout: 5\n  }}\n}}",
                cluster.name,
                self.host,
                cluster.port,
                routes.join(", "),
                q(&self.tls.cert),
                q(&self.tls.key),
                q(&self.tls.ca)
            );
        }
        if let Some(port) = self.leafnode_port {
            c.push_str(&leafnodes_block(
                &format!("{}:{port}", self.host),
                &self.tls,
            ));
        }
        c.push_str(&auth_block(
            &self.issuer,
            &self.callout_user,
            &self.system_user,
        ));
        c
    }
}

/// The accounts and auth-callout part of a fleet's server config. `certs init` writes it as
/// `nats-auth.conf`, so a hand-written server config (such as `nats/nats-server.conf`) can
/// `include` it.
pub fn auth_block(issuer: &str, callout_user: &str, system_user: &str) -> String {
    format!(
        "accounts {{\n  {AUTH_ACCOUNT} {{ users: [ {{ nkey: {callout_user:?} }} ] }}\n  {FLEET_ACCOUNT} {{ jetstream: enabled }}\n  {SYS_ACCOUNT} {{ users: [ {{ nkey: {system_user:?} }} ] }}\n}}\nsystem_account: {SYS_ACCOUNT}\nauthorization {{\n  timeout: 5\n  auth_callout {{\n    issuer: {issuer:?}\n    auth_users: [ {callout_user:?}, {system_user:?} ]\n    account: {AUTH_ACCOUNT}\n  }}\n}}\n"
    )
}

/// The `leafnodes` listener of a hub's nats-server: mutual TLS with the fleet CA and no
/// `authorization` block of its own, so nats-server hands each leaf connection to the auth
/// callout exactly like a client. The hub sees the leaf's certificate, admits it only as a
/// spoke of an accepted cluster (or the bootstrap identity), and answers with that identity's
/// permissions; nats-server applies them to everything the leaf sends in and receives.
pub fn leafnodes_block(listen: &str, tls: &TlsFiles) -> String {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    format!(
        "leafnodes {{\n  listen: {listen:?}\n  tls {{\n    cert_file: {}\n    key_file: {}\n    ca_file: {}\n    verify: true\n    timeout: 5\n  }}\n}}\n",
        q(&tls.cert),
        q(&tls.key),
        q(&tls.ca)
    )
}

/// A launcher failure.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No nats-server binary was found.
    #[error("nats-server not found: set FLEETBUS_NATS_SERVER or run scripts/testenv.sh")]
    NotFound,
    /// Writing the config or starting the process failed.
    #[error("cannot start nats-server")]
    Io(#[from] std::io::Error),
    /// It exited or never listened.
    #[error("nats-server did not become ready within {0:?}; see {1}")]
    NotReady(Duration, PathBuf),
}

/// Finds nats-server: `$FLEETBUS_NATS_SERVER`, then `PATH`, then the testenv cache.
pub fn find_binary() -> Result<PathBuf, LaunchError> {
    if let Some(path) = std::env::var_os("FLEETBUS_NATS_SERVER") {
        return Ok(path.into());
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let cache = crate::cache_dir();
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/nats-server"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().ok_or(LaunchError::NotFound)
}

/// A running nats-server child process; killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    binary: PathBuf,
    config: ServerConfig,
    config_path: PathBuf,
    log_path: PathBuf,
}

impl NatsServer {
    /// Writes `config` into `dir` and starts the server, waiting until it accepts connections.
    pub fn start(binary: &Path, config: ServerConfig, dir: &Path) -> Result<Self, LaunchError> {
        std::fs::create_dir_all(dir)?;
        let config_path = dir.join(format!("{}.conf", config.name));
        write_atomic(&config_path, config.render().as_bytes(), true)?;
        let mut server = Self {
            child: None,
            binary: binary.to_owned(),
            log_path: dir.join(format!("{}.log", config.name)),
            config,
            config_path,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), LaunchError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        wait_listening(&self.config.host, self.config.port, Duration::from_secs(15))
            .map_err(|_| LaunchError::NotReady(Duration::from_secs(15), self.log_path.clone()))
    }

    /// The client URL.
    pub fn url(&self) -> String {
        self.config.url()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts it again with the same config and data.
    pub fn restart(&mut self) -> Result<(), LaunchError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts TCP connections on `host:port`.
pub fn wait_listening(host: &str, port: u16, timeout: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match std::net::TcpStream::connect((host, port)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(25)),
        }
    }
}

pub use crate::ports::free_port;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_mtls_jetstream_and_callout() {
        let keys = AuthKeys::generate();
        let pki = PkiDir::new("/pki");
        let text = ServerConfig::local(&pki, &keys, 4222, "/data".into()).render();
        assert!(text.contains("verify: true"));
        assert!(text.contains("ca_file: \"/pki/ca.crt\""));
        assert!(text.contains("store_dir: \"/data\""));
        assert!(text.contains(&format!("issuer: {:?}", keys.issuer.public_key())));
        assert!(text.contains("account: AUTH"));
        assert!(!text.contains(&keys.issuer.seed().unwrap()));
        assert!(!text.contains("leafnodes"));
    }

    #[test]
    fn leafnodes_listen_with_mutual_tls_and_no_authorization_of_their_own() {
        let keys = AuthKeys::generate();
        let mut config = ServerConfig::local(&PkiDir::new("/pki"), &keys, 4222, "/data".into());
        config.leafnode_port = Some(7422);
        let text = config.render();
        let block = &text[text.find("leafnodes {").unwrap()..];
        let block = &block[..block.find("\n}\n").unwrap()];
        assert!(block.contains("listen: \"127.0.0.1:7422\""), "{block}");
        assert!(block.contains("verify: true"), "{block}");
        assert!(!block.contains("authorization"), "the auth callout decides");
        assert_eq!(config.leafnode_url().unwrap(), "tls://127.0.0.1:7422");
    }
}
