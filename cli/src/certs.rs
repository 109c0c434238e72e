//! `fleetbus certs init|user|auditor`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use fleetbus_nats::PkiDir;
use fleetbus_nats::init::InitOptions;
use fleetbus_schema::{Identity, UserName};

use crate::cli::CertsCommand;

/// Runs a `certs` subcommand, reporting what was written on `out`.
pub fn run(command: CertsCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init {
            dir,
            server_names,
            server_ips,
            admin,
            bootstrap_validity,
        } => {
            let pki = PkiDir::new(&dir);
            let options = InitOptions {
                server_names,
                server_ips,
                admin: UserName::new(admin)?,
                bootstrap_validity,
                ..InitOptions::default()
            };
            pki.init(&options)?;
            writeln!(out, "fleet PKI written to {}", dir.display())?;
            writeln!(
                out,
                "  ca.crt ca.key             fleet CA (keep ca.key on the hub only)"
            )?;
            writeln!(out, "  server.crt server.key     nats-server")?;
            writeln!(out, "  hub.crt hub.key           fleetbus://hub")?;
            writeln!(
                out,
                "  bootstrap.crt .key        fleetbus://bootstrap (give to new spokes with ca.crt)"
            )?;
            writeln!(
                out,
                "  users/{0}.crt .key    fleetbus://user/{0} (admin)",
                options.admin
            )?;
            writeln!(
                out,
                "  nkeys/                    auth-callout keys (hub only)"
            )?;
        }
        CertsCommand::User {
            name,
            dir,
            validity,
        } => {
            let identity = Identity::User(UserName::new(name)?);
            issue(&PkiDir::new(dir), &identity, validity, out)?;
        }
        CertsCommand::Auditor {
            name,
            dir,
            validity,
        } => {
            let identity = Identity::Auditor(UserName::new(name)?);
            issue(&PkiDir::new(dir), &identity, validity, out)?;
        }
        CertsCommand::Server {
            name,
            dir,
            ips,
            validity,
        } => {
            let pki = PkiDir::new(dir);
            if pki.server(&name).0.exists() {
                anyhow::bail!("{} already exists", pki.server(&name).0.display());
            }
            let (cert, key) = pki.issue_server(&name, &ips, validity).with_context(|| {
                format!("cannot issue a certificate from {}", pki.root().display())
            })?;
            writeln!(
                out,
                "nats-server {name}: {} {}",
                cert.display(),
                key.display()
            )?;
        }
    }
    Ok(())
}

fn issue(
    pki: &PkiDir,
    identity: &Identity,
    validity: Duration,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let name = identity.name().unwrap_or_default();
    let pair = match identity {
        Identity::Auditor(_) => pki.auditor(name),
        _ => pki.user(name),
    };
    if pair.0.exists() {
        anyhow::bail!("{} already exists", pair.0.display());
    }
    pki.issue(identity, pair.clone(), validity)
        .with_context(|| format!("cannot issue a certificate from {}", pki.root().display()))?;
    writeln!(out, "{identity}: {} {}", pair.0.display(), pair.1.display())?;
    Ok(())
}
