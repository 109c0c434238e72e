//! A fresh fleet PKI and a real nats-server (TLS + JetStream + auth callout) per test.

use std::time::Duration;

use anyhow::Context;
use fleetbus_nats::init::InitOptions;
use fleetbus_nats::server::{
    AuthKeys, ClusterRoutes, NatsServer, ServerConfig, find_binary, free_port,
};
use fleetbus_nats::{PkiDir, TlsFiles, connect};
use fleetbus_schema::{Identity, Subjects};

/// One test's NATS world.
pub struct NatsEnv {
    /// Server before dir: it must die before its files go.
    pub server: NatsServer,
    /// The other servers, when this is a NATS cluster.
    pub others: Vec<NatsServer>,
    /// The fleet PKI (`certs init` output).
    pub pki: PkiDir,
    /// The callout nkeys.
    pub keys: AuthKeys,
    /// A random subject prefix.
    pub subjects: Subjects,
    /// Everything on disk.
    pub dir: tempfile::TempDir,
}

impl NatsEnv {
    /// Starts a server with a new PKI in a temporary folder.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_cluster(1)
    }

    /// Starts `n` servers forming one NATS cluster (routes over mutual TLS, JetStream on each).
    pub fn start_cluster(n: usize) -> anyhow::Result<Self> {
        Self::start_cluster_with(n, |_| Ok(()))
    }

    /// Starts one server, adjusting its config first (a leafnode listener, say).
    pub fn start_with(
        adjust: impl Fn(&mut ServerConfig) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        Self::start_cluster_with(1, adjust)
    }

    /// Like [`NatsEnv::start_cluster`], adjusting each server's config first.
    pub fn start_cluster_with(
        n: usize,
        adjust: impl Fn(&mut ServerConfig) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        fleetbus_nats::install_crypto_provider();
        init_tracing();
        let dir = tempfile::tempdir()?;
        let pki = PkiDir::new(dir.path().join("pki"));
        pki.init(&InitOptions::default())?;
        let keys = AuthKeys::load(&pki)?;
        let binary = find_binary()?;
        let route_ports = (0..n).map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
        let mut servers = Vec::new();
        for (i, port) in route_ports.iter().enumerate() {
            let mut config = ServerConfig::local(
                &pki,
                &keys,
                free_port()?,
                dir.path().join(format!("jetstream-{i}")),
            );
            config.name = format!("n{i}");
            if n > 1 {
                config.cluster = Some(ClusterRoutes {
                    name: "fleet".into(),
                    port: *port,
                    routes: route_ports
                        .iter()
                        .filter(|p| *p != port)
                        .map(|p| format!("tls://127.0.0.1:{p}"))
                        .collect(),
                });
            }
            adjust(&mut config)?;
            servers.push(NatsServer::start(
                &binary,
                config,
                &dir.path().join("nats"),
            )?);
        }
        let server = servers.remove(0);
        let subjects = Subjects::new(&format!("t{:08x}", rand_u32()))?;
        Ok(Self {
            server,
            others: servers,
            pki,
            keys,
            subjects,
            dir,
        })
    }

    /// The client URL (every server of a cluster, comma-separated).
    pub fn url(&self) -> String {
        std::iter::once(&self.server)
            .chain(&self.others)
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Issues (once) a certificate for `identity` and returns its TLS files.
    pub fn tls_for(&self, identity: &Identity) -> anyhow::Result<TlsFiles> {
        let name = identity.to_string().replace(':', "-");
        let certs = self.dir.path().join("identities");
        let pair = (
            certs.join(format!("{name}.crt")),
            certs.join(format!("{name}.key")),
        );
        if !pair.0.exists() {
            self.pki
                .issue(identity, pair.clone(), Duration::from_secs(3600))
                .context("issue test certificate")?;
        }
        Ok(TlsFiles {
            ca: self.pki.ca_cert(),
            cert: pair.0,
            key: pair.1,
        })
    }

    /// Connects as `identity` with a certificate from the fleet CA.
    pub async fn connect_as(&self, identity: &Identity) -> anyhow::Result<async_nats::Client> {
        let tls = self.tls_for(identity)?;
        self.connect_with(&tls, identity).await
    }

    /// Connects with explicit TLS files.
    pub async fn connect_with(
        &self,
        tls: &TlsFiles,
        identity: &Identity,
    ) -> anyhow::Result<async_nats::Client> {
        let options = connect::options(tls, &self.subjects, identity)
            .max_reconnects(Some(3))
            .event_callback(|e| async move { tracing::debug!(event = %e, "test client") });
        Ok(connect::connect(&self.url(), tls, identity, options).await?)
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

/// Everything fleetbus logged in this test process, at every level (nextest runs each test in
/// its own process), so tests can assert what never appears in a log line.
static CAPTURED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// All log lines so far, including debug and trace of the fleetbus crates, without terminal
/// colours (span fields are formatted once, by whichever layer saw the span first).
pub fn captured_logs() -> String {
    let raw = String::from_utf8_lossy(
        &CAPTURED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    without_ansi(&raw)
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

/// Test logs go to the test's captured output (`RUST_LOG` picks the level) and, at every level
/// of fleetbus's own crates, to [`captured_logs`].
pub fn init_tracing() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let shown = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,async_nats=warn".into());
    let everything = tracing_subscriber::EnvFilter::new(
        "fleetbus_hub=trace,fleetbus_spoke=trace,fleetbus_nats=trace,fleetbus_cli=trace",
    );
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(shown),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| Capture)
                .with_filter(everything),
        )
        .try_init();
}

/// A connection that reports the server's errors (permission violations) on a channel.
pub struct Observed {
    /// The connection.
    pub client: async_nats::Client,
    events: tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
}

impl NatsEnv {
    /// Connects as `identity` with `tls`, collecting server errors.
    pub async fn observed(&self, tls: &TlsFiles, identity: &Identity) -> anyhow::Result<Observed> {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let options = connect::options(tls, &self.subjects, identity)
            .max_reconnects(Some(3))
            .request_timeout(Some(Duration::from_secs(2)))
            .event_callback(move |e| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(e);
                }
            });
        let client = connect::connect(&self.url(), tls, identity, options).await?;
        Ok(Observed { client, events })
    }
}

impl Observed {
    /// Waits up to two seconds for the server to report a permission violation naming
    /// `subject` (`what` is `Publish` or `Subscription`).
    pub async fn expect_violation(&mut self, what: &str, subject: &str) -> anyhow::Result<()> {
        let wanted = format!(
            "permissions violation for {} to \"{}\"",
            what.to_lowercase(),
            subject.to_lowercase()
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(async_nats::Event::ServerError(e)))
                    if e.to_string().to_lowercase().contains(&wanted) =>
                {
                    return Ok(());
                }
                Ok(Some(_)) => continue,
                _ => anyhow::bail!("no server refusal for {what} to {subject:?}"),
            }
        }
    }

    /// Publishes to `subject` and asserts the server refuses it.
    pub async fn publish_refused(&mut self, subject: String) -> anyhow::Result<()> {
        self.client
            .publish(subject.clone(), "forged".into())
            .await?;
        self.client.flush().await?;
        self.expect_violation("Publish", &subject).await
    }

    /// Subscribes to `subject` and asserts the server refuses it.
    pub async fn subscribe_refused(&mut self, subject: String) -> anyhow::Result<()> {
        let _sub = self.client.subscribe(subject.clone()).await?;
        self.client.flush().await?;
        self.expect_violation("Subscription", &subject).await
    }

    /// Publishes to `subject` and asserts the server says nothing against it.
    pub async fn publish_allowed(&mut self, subject: String) -> anyhow::Result<()> {
        self.client.publish(subject.clone(), "ok".into()).await?;
        self.client.flush().await?;
        if self.expect_violation("Publish", &subject).await.is_ok() {
            anyhow::bail!("publish to {subject} was refused");
        }
        Ok(())
    }
}
