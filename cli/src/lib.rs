//! The `fleetbus` command line: the fleet PKI, admin and user commands over the hub API, and
//! `local-up`. It talks to the hub only through the contract in `fleetbus-schema`.
//!
//! Must not depend on hub or spoke internals.

pub mod certs;
pub mod cli;
pub mod clusters;
pub mod hub_client;
pub mod local;
pub mod output;

use std::io::Write;

use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{WhoAmIReply, WhoAmIRequest};

use crate::cli::{Cli, Command, DeleteCommand, GetCommand};

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
    }
}
