//! The `fleetbus` command line: the fleet PKI, admin and user commands over the hub API, and
//! `local-up`. It talks to the hub only through the contract in `fleetbus-schema`.
//!
//! Must not depend on hub or spoke internals.

pub mod certs;
pub mod cli;
pub mod clusters;
pub mod hub_client;
pub mod local;
pub mod msa;
pub mod output;

use std::io::Write;

use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{WhoAmIReply, WhoAmIRequest};

use fleetbus_schema::v1::{Grant, ManagedServiceAccount};

use crate::cli::{Cli, Command, CreateCommand, DeleteCommand, GetCommand};

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Certs { command } => certs::run(command, out),
        Command::Get {
            what: GetCommand::Clusters { output, hub },
        } => clusters::get(&hub, output, out).await,
        Command::Accept { clusters, hub } => {
            clusters::decide(&hub, ApiEndpoint::ClustersAccept, clusters, out).await
        }
        Command::Deny { clusters, hub } => {
            clusters::decide(&hub, ApiEndpoint::ClustersDeny, clusters, out).await
        }
        Command::Delete {
            what: DeleteCommand::Cluster { clusters, hub },
        } => clusters::decide(&hub, ApiEndpoint::ClustersDelete, clusters, out).await,
        Command::Whoami { hub } => {
            let client = hub_client::HubClient::connect(&hub).await?;
            let me: WhoAmIReply = client.call(ApiEndpoint::WhoAmI, &WhoAmIRequest {}).await?;
            writeln!(
                out,
                "{}{}",
                me.identity,
                if me.admin { " (admin)" } else { "" }
            )?;
            Ok(())
        }
        Command::LocalUp(args) => local::up::run(args, out).await,
        Command::Create {
            what:
                CreateCommand::Msa {
                    name,
                    cluster,
                    validity,
                    ttl_after_creation,
                    rules_file,
                    rules_namespace,
                    hub,
                },
        } => {
            let rules = match rules_file {
                Some(path) => msa::read_rules(&path)?,
                None => Vec::new(),
            };
            let request = ManagedServiceAccount {
                name,
                cluster,
                validity_seconds: validity.as_secs() as i64,
                ttl_seconds_after_creation: ttl_after_creation
                    .map_or(0, |d| d.as_secs().max(1) as i64),
                rules,
                rules_namespace: rules_namespace.unwrap_or_default(),
                ..Default::default()
            };
            msa::create(&hub, request, out).await
        }
        Command::Get {
            what:
                GetCommand::Msa {
                    name,
                    cluster,
                    output,
                    hub,
                },
        } => msa::get(&hub, &cluster, name.as_deref(), output, out).await,
        Command::Get {
            what:
                GetCommand::Token {
                    name,
                    cluster,
                    output,
                    hub,
                },
        } => msa::token(&hub, &cluster, &name, output, out).await,
        Command::Get {
            what: GetCommand::Grants { output, hub },
        } => msa::grants(&hub, output, out).await,
        Command::Delete {
            what: DeleteCommand::Msa { name, cluster, hub },
        } => msa::delete(&hub, &cluster, &name, out).await,
        Command::Grant {
            user,
            cluster,
            msa: name,
            hub,
        } => {
            msa::grant(
                &hub,
                Grant {
                    user,
                    cluster,
                    msa: name,
                    ..Default::default()
                },
                false,
                out,
            )
            .await
        }
        Command::Revoke {
            user,
            cluster,
            msa: name,
            hub,
        } => {
            msa::grant(
                &hub,
                Grant {
                    user,
                    cluster,
                    msa: name,
                    ..Default::default()
                },
                true,
                out,
            )
            .await
        }
    }
}
