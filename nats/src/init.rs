//! `fleetbus certs init`: a complete PKI folder for a new fleet.

use std::net::IpAddr;
use std::time::Duration;

use fleetbus_schema::{Identity, UserName};

use crate::files::write_atomic;
use crate::layout::PkiDir;
use crate::pki::{Ca, Issued, PkiError};
use crate::server::AuthKeys;

/// What `certs init` makes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// DNS names of nats-server (clients dial one of them). `localhost` is always included.
    pub server_names: Vec<String>,
    /// IP addresses of nats-server. `127.0.0.1` is always included.
    pub server_ips: Vec<IpAddr>,
    /// The first admin user.
    pub admin: UserName,
    /// CA lifetime.
    pub ca_validity: Duration,
    /// Lifetime of server, hub and admin certificates.
    pub validity: Duration,
    /// Lifetime of the bootstrap certificate (short: it only lets a spoke ask to join).
    pub bootstrap_validity: Duration,
}

/// Why init failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The folder already holds a CA; refusing to overwrite a fleet.
    #[error("{0} already holds a fleet CA; refusing to overwrite it")]
    Exists(String),
    /// Generating certificates failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Writing files failed.
    #[error("cannot write the PKI folder")]
    Io(#[from] std::io::Error),
}

const DAY: u64 = 86_400;

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            server_names: Vec::new(),
            server_ips: Vec::new(),
            admin: UserName::new("admin").unwrap_or_else(|_| unreachable!()),
            ca_validity: Duration::from_secs(10 * 365 * DAY),
            validity: Duration::from_secs(365 * DAY),
            bootstrap_validity: Duration::from_secs(7 * DAY),
        }
    }
}

impl PkiDir {
    /// Writes a new fleet CA, the nats-server certificate, the hub, bootstrap and admin client
    /// certificates and the auth-callout nkeys. Private keys are 0600.
    pub fn init(&self, options: &InitOptions) -> Result<(), InitError> {
        if self.ca_key().exists() || self.ca_cert().exists() {
            return Err(InitError::Exists(self.root().display().to_string()));
        }
        let (ca, ca_key) = Ca::generate("fleetbus fleet CA", options.ca_validity)?;
        write_atomic(&self.ca_cert(), ca.cert_pem().as_bytes(), false)?;
        write_atomic(&self.ca_key(), ca_key.as_bytes(), true)?;

        let mut dns = vec!["localhost".to_owned()];
        dns.extend(options.server_names.iter().cloned());
        let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into()];
        ips.extend(options.server_ips.iter().copied());
        let server = ca.issue_server(&dns, &ips, options.validity)?;
        self.write_pair(self.pair("server"), &server)?;

        let hub = ca.issue_client(&Identity::Hub, options.validity)?;
        self.write_pair(self.pair("hub"), &hub)?;
        let bootstrap = ca.issue_client(&Identity::Bootstrap, options.bootstrap_validity)?;
        self.write_pair(self.pair("bootstrap"), &bootstrap)?;
        let admin = ca.issue_client(&Identity::User(options.admin.clone()), options.validity)?;
        self.write_pair(self.user(options.admin.as_str()), &admin)?;

        let keys = AuthKeys::generate();
        keys.save(self)?;
        let auth = crate::server::auth_block(
            &keys.issuer.public_key(),
            &keys.callout.public_key(),
            &keys.system.public_key(),
        );
        write_atomic(&self.nats_auth_conf(), auth.as_bytes(), false)?;
        let secret: [u8; 32] = rand::random();
        write_atomic(
            &self.secrets_key(),
            data_encoding::HEXLOWER.encode(&secret).as_bytes(),
            true,
        )?;
        Ok(())
    }

    /// Loads the CA (certificate and key) of this folder.
    pub fn load_ca(&self) -> Result<Ca, InitError> {
        let cert = std::fs::read_to_string(self.ca_cert())?;
        let key = std::fs::read_to_string(self.ca_key())?;
        Ok(Ca::load(&cert, &key)?)
    }

    /// Issues a client certificate for `identity` into `pair`.
    pub fn issue(
        &self,
        identity: &Identity,
        pair: (std::path::PathBuf, std::path::PathBuf),
        validity: Duration,
    ) -> Result<(), InitError> {
        let issued = self.load_ca()?.issue_client(identity, validity)?;
        self.write_pair(pair, &issued)
    }

    /// Issues a server certificate for another nats-server (a leaf node in a spoke's network)
    /// named `name`, also valid for `ips`, into `servers/<name>.crt` and `.key`.
    pub fn issue_server(
        &self,
        name: &str,
        ips: &[IpAddr],
        validity: Duration,
    ) -> Result<(std::path::PathBuf, std::path::PathBuf), InitError> {
        let pair = self.server(name);
        let issued = self
            .load_ca()?
            .issue_server(&[name.to_owned()], ips, validity)?;
        self.write_pair(pair.clone(), &issued)?;
        Ok(pair)
    }

    /// Writes a certificate (0644) and its key (0600).
    pub fn write_pair(
        &self,
        (cert, key): (std::path::PathBuf, std::path::PathBuf),
        issued: &Issued,
    ) -> Result<(), InitError> {
        write_atomic(&key, issued.key_pem.as_bytes(), true)?;
        write_atomic(&cert, issued.cert_pem.as_bytes(), false)?;
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_everything_with_private_keys_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::new(dir.path());
        pki.init(&InitOptions::default()).unwrap();
        for key in [
            pki.ca_key(),
            pki.pair("server").1,
            pki.pair("hub").1,
            pki.pair("bootstrap").1,
            pki.user("admin").1,
            pki.nkey("issuer"),
            pki.secrets_key(),
        ] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        assert_eq!(pki.tls("hub").identity().unwrap(), Identity::Hub);
        assert!(matches!(
            pki.init(&InitOptions::default()),
            Err(InitError::Exists(_))
        ));
    }
}
