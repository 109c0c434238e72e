//! The `fleetbus` command line: the fleet PKI, admin and user commands over the hub API, and
//! `local-up`. It talks to the hub only through the contract in `fleetbus-schema`.
//!
//! Must not depend on hub or spoke internals.

pub mod audit;
pub mod audit_durable;
pub mod certs;
pub mod cli;
pub mod clusters;
pub mod credentials;
pub mod hub_client;
pub mod local;
pub mod msa;
pub mod output;
pub mod placement;
pub mod proxy;
pub mod work;
pub mod workset;

use std::io::Write;

use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{WhoAmIReply, WhoAmIRequest};

use fleetbus_schema::v1::{Grant, ManagedServiceAccount};

use std::process::ExitCode;

use crate::cli::{
    AuditCommand, Cli, Command, CreateCommand, DeleteCommand, GetCommand, ProxyCommand,
};

/// Runs one command, writing its output to `out`; the exit code is kubectl's for
/// `proxy kubectl`, success otherwise.
pub async fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Certs { command } => done(certs::run(command, out)),
        Command::Get { what } => done(get(what, out).await),
        Command::Accept { clusters, hub } => {
            done(clusters::decide(&hub, ApiEndpoint::ClustersAccept, clusters, out).await)
        }
        Command::Deny { clusters, hub } => {
            done(clusters::decide(&hub, ApiEndpoint::ClustersDeny, clusters, out).await)
        }
        Command::Delete {
            what: DeleteCommand::Cluster { clusters, hub },
        } => done(clusters::decide(&hub, ApiEndpoint::ClustersDelete, clusters, out).await),
        Command::Delete {
            what: DeleteCommand::Msa { name, cluster, hub },
        } => done(msa::delete(&hub, &cluster, &name, out).await),
        Command::Delete {
            what:
                DeleteCommand::Work {
                    name,
                    cluster: Some(cluster),
                    wait,
                    hub,
                    ..
                },
        } => done(work::delete(&hub, &cluster, &name, wait.timeout(), out).await),
        Command::Delete {
            what:
                DeleteCommand::Work {
                    name,
                    placement,
                    wait,
                    hub,
                    ..
                },
        } => done(workset::delete(&hub, &name, placement.as_deref(), wait.timeout(), out).await),
        Command::Delete {
            what: DeleteCommand::Workset { name, wait, hub },
        } => done(workset::delete(&hub, &name, None, wait.timeout(), out).await),
        Command::Delete {
            what: DeleteCommand::Placement(args),
        } => done(placement::delete(args, out).await),
        Command::Delete {
            what: DeleteCommand::Clusterset(args),
        } => done(placement::delete_set(args, out).await),
        Command::Clusterset { command } => done(placement::assign(command, out).await),
        Command::Label { what } => done(placement::label(what, out).await),
        Command::Create { what } => done(create(what, out).await),
        Command::Grant {
            user,
            cluster,
            msa: name,
            hub,
        } => done(msa::grant(&hub, grant(user, cluster, name), false, out).await),
        Command::Revoke {
            user,
            cluster,
            msa: name,
            hub,
        } => done(msa::grant(&hub, grant(user, cluster, name), true, out).await),
        Command::Whoami { hub } => {
            let client = hub_client::HubClient::connect(&hub).await?;
            let me: WhoAmIReply = client.call(ApiEndpoint::WhoAmI, &WhoAmIRequest {}).await?;
            writeln!(
                out,
                "{}{}",
                me.identity,
                if me.admin { " (admin)" } else { "" }
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxy {
            command:
                ProxyCommand::Kubectl {
                    cluster,
                    sa,
                    interactive,
                    args,
                    hub,
                },
        } => proxy::commands::kubectl(&hub, &cluster, &sa, interactive, args).await,
        Command::Proxy {
            command:
                ProxyCommand::Serve {
                    cluster,
                    sa,
                    port,
                    kubeconfig_out,
                    hub,
                },
        } => done(proxy::commands::serve(&hub, &cluster, &sa, port, kubeconfig_out, out).await),
        Command::Proxy {
            command: ProxyCommand::Health { cluster, hub },
        } => proxy::commands::health(&hub, cluster.as_deref(), out).await,
        Command::LocalUp(args) => done(local::up::run(args, out).await),
        Command::Audit {
            command:
                AuditCommand::Tail {
                    cluster,
                    user,
                    kind,
                    since,
                    limit,
                    follow,
                    output,
                    durable,
                    hub,
                },
        } => {
            let options = audit::TailOptions {
                cluster,
                user,
                kind,
                since,
                limit,
                follow,
                json: output == "json",
                durable,
            };
            done(audit::tail(&hub, options, out).await)
        }
        Command::Audit {
            command: AuditCommand::DeleteDurable { name, hub },
        } => done(audit_durable::delete(&hub, &name, out).await),
    }
}

fn grant(user: String, cluster: String, msa: String) -> Grant {
    Grant {
        user,
        cluster,
        msa,
        ..Default::default()
    }
}

async fn get(what: GetCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match what {
        GetCommand::Clusters { output, hub } => clusters::get(&hub, output, out).await,
        GetCommand::Msa {
            name,
            cluster,
            output,
            hub,
        } => msa::get(&hub, &cluster, name.as_deref(), output, out).await,
        GetCommand::Token {
            name,
            cluster,
            output,
            hub,
        } => msa::token(&hub, &cluster, &name, output, out).await,
        GetCommand::Grants { output, hub } => msa::grants(&hub, output, out).await,
        GetCommand::Work {
            name: Some(name),
            placement: Some(placement),
            output,
            hub,
            ..
        } => workset::get_for_placement(&hub, &name, &placement, output, out).await,
        GetCommand::Work {
            name,
            cluster,
            output,
            hub,
            ..
        } => work::get(&hub, &cluster, name.as_deref(), output, out).await,
        GetCommand::Placement(args) => placement::get(args, out).await,
        GetCommand::Clustersets(args) => placement::get_sets(args, out).await,
        GetCommand::Workset(args) => workset::get(args, out).await,
        GetCommand::Credentials { dir, output, hub } => {
            credentials::get(&hub, dir.as_deref(), output, out).await
        }
    }
}

async fn create(what: CreateCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match what {
        CreateCommand::Work {
            name,
            cluster: Some(cluster),
            file,
            overwrite,
            wait,
            hub,
            ..
        } => {
            let options = work::CreateOptions {
                name: &name,
                cluster: &cluster,
                file: &file,
                overwrite,
                wait: wait.timeout(),
            };
            work::create(&hub, options, out).await
        }
        CreateCommand::Work {
            name,
            placement,
            rollout,
            file,
            overwrite,
            wait,
            hub,
            ..
        } => {
            let options = workset::CreateOptions {
                name: &name,
                placement: placement.as_deref(),
                file: &file,
                overwrite,
                rollout: &rollout,
                wait: wait.timeout(),
            };
            workset::create(&hub, options, out).await
        }
        CreateCommand::Clusterset(args) => placement::create_set(args, out).await,
        CreateCommand::Placement(args) => placement::create(args, out).await,
        msa @ CreateCommand::Msa { .. } => create_msa(msa, out).await,
    }
}

async fn create_msa(what: CreateCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let CreateCommand::Msa {
        name,
        cluster,
        validity,
        ttl_after_creation,
        rules_file,
        rules_namespace,
        hub,
    } = what
    else {
        anyhow::bail!("not a managed service account");
    };
    let rules = match rules_file {
        Some(path) => msa::read_rules(&path)?,
        None => Vec::new(),
    };
    let request = ManagedServiceAccount {
        name,
        cluster,
        validity_seconds: validity.as_secs() as i64,
        ttl_seconds_after_creation: ttl_after_creation.map_or(0, |d| d.as_secs().max(1) as i64),
        rules,
        rules_namespace: rules_namespace.unwrap_or_default(),
        ..Default::default()
    };
    msa::create(&hub, request, out).await
}
