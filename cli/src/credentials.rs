//! `fleetbus get credentials`: every certificate and token of the fleet in one place, with
//! expiry, flagging those with less than 20 % of their life left. The hub reports spoke
//! certificates and MSA tokens; the PKI folder (when given) adds the CA, nats-server, hub,
//! bootstrap, user and auditor certificates that `fleetbus certs` issued.

use std::io::Write;
use std::path::Path;

use fleetbus_nats::{PkiDir, pki};
use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{Credential, CredentialList, Empty};
use serde_json::json;

use crate::cli::{HubFlags, Output};
use crate::hub_client::HubClient;
use crate::output::{now_ms, table, timestamp};

/// Below this share of its lifetime left, a credential is flagged.
const RENEW_BELOW: f64 = 0.20;

/// Runs the command.
pub async fn get(
    hub: &HubFlags,
    pki_dir: Option<&Path>,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    let list: CredentialList = client.call(ApiEndpoint::CredentialsList, &Empty {}).await?;
    let mut items = list.items;
    if let Some(dir) = pki_dir {
        items.extend(local(&PkiDir::new(dir)));
    }
    items.sort_by_key(|c| c.not_after_ms);
    let now = now_ms();
    match output {
        Output::Table => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|c| {
                    let cluster = if c.cluster.is_empty() {
                        "-".into()
                    } else {
                        c.cluster.clone()
                    };
                    let expires = timestamp(c.not_after_ms).as_str().unwrap_or("-").to_owned();
                    vec![
                        c.kind.clone(),
                        c.name.clone(),
                        cluster,
                        expires,
                        format!("{:.0}%", left(c, now) * 100.0),
                        state(c, now).into(),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table(
                    &["KIND", "NAME", "CLUSTER", "EXPIRES", "LIFE LEFT", "STATUS"],
                    &rows
                )
            )?;
        }
        Output::Json | Output::Yaml => {
            let values: Vec<_> = items
                .iter()
                .map(|c| json!({"kind": c.kind, "name": c.name, "cluster": c.cluster, "notBefore": timestamp(c.not_before_ms), "notAfter": timestamp(c.not_after_ms), "status": state(c, now)}))
                .collect();
            if output == Output::Json {
                writeln!(out, "{}", serde_json::to_string_pretty(&values)?)?;
            } else {
                write!(out, "{}", serde_yaml::to_string(&values)?)?;
            }
        }
    }
    Ok(())
}

/// The share of its lifetime a credential has left (0 when expired).
fn left(c: &Credential, now: i64) -> f64 {
    let life = (c.not_after_ms - c.not_before_ms).max(1) as f64;
    ((c.not_after_ms - now) as f64 / life).clamp(0.0, 1.0)
}

fn state(c: &Credential, now: i64) -> &'static str {
    match left(c, now) {
        l if l <= 0.0 => "expired",
        l if l < RENEW_BELOW => "renew soon",
        _ => "ok",
    }
}

/// Certificates in the PKI folder.
fn local(pki: &PkiDir) -> Vec<Credential> {
    let mut found = Vec::new();
    let mut add = |kind: &str, path: &Path| {
        let Ok(pem) = std::fs::read_to_string(path) else {
            return;
        };
        let Ok(info) = pki::inspect(&pem) else { return };
        let name = info.identity.map_or_else(
            || {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            },
            |i| i.to_string(),
        );
        found.push(Credential {
            kind: kind.into(),
            name,
            cluster: String::new(),
            not_before_ms: info.not_before_ms,
            not_after_ms: info.not_after_ms,
        });
    };
    add("ca", &pki.ca_cert());
    for (kind, name) in [
        ("server-certificate", "server"),
        ("hub-certificate", "hub"),
        ("bootstrap-certificate", "bootstrap"),
    ] {
        add(kind, &pki.pair(name).0);
    }
    for (kind, folder) in [
        ("user-certificate", "users"),
        ("auditor-certificate", "auditors"),
    ] {
        let mut paths: Vec<_> = std::fs::read_dir(pki.root().join(folder))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "crt"))
            .collect();
        paths.sort();
        for path in paths {
            add(kind, &path);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(not_before_ms: i64, not_after_ms: i64) -> Credential {
        Credential {
            not_before_ms,
            not_after_ms,
            ..Default::default()
        }
    }

    #[test]
    fn flags_the_last_fifth_of_a_lifetime() {
        assert_eq!(state(&cred(0, 100), 50), "ok");
        assert_eq!(state(&cred(0, 100), 81), "renew soon");
        assert_eq!(state(&cred(0, 100), 100), "expired");
    }

    #[test]
    fn reads_the_pki_folder() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::new(dir.path());
        pki.init(&fleetbus_nats::init::InitOptions::default())
            .unwrap();
        let kinds: Vec<String> = local(&pki)
            .into_iter()
            .map(|c| format!("{} {}", c.kind, c.name))
            .collect();
        assert_eq!(
            kinds,
            [
                "ca ca",
                "server-certificate server",
                "hub-certificate hub",
                "bootstrap-certificate bootstrap",
                "user-certificate user:admin"
            ]
        );
    }
}
