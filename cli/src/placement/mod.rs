//! `fleetbus create|get|delete placement`, cluster sets (`create clusterset`, `clusterset set`,
//! `get clustersets`) and `label cluster`, like clusteradm and kubectl.

pub mod input;
pub mod shape;

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{
    Cluster, ClusterLabelRequest, ClusterNames, ClusterSet, ClusterSetAssignment, ClusterSetList,
    ConditionStatus, CreatePlacementRequest, Empty, GroupStrategy, ObjectRef, Placement,
    PlacementList,
};

use crate::cli::{HubFlags, Output};
use crate::hub_client::HubClient;
use crate::output::{age, now_ms, status_text, table};

/// `fleetbus clusterset …`
#[derive(Debug, Subcommand)]
pub enum ClustersetCommand {
    /// Put clusters into a cluster set (OCM's label cluster.open-cluster-management.io/clusterset).
    Set {
        /// Cluster names.
        #[arg(required = true)]
        clusters: Vec<String>,
        /// The cluster set.
        #[arg(long)]
        clusterset: String,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
}

/// `fleetbus label …`
#[derive(Debug, Subcommand)]
pub enum LabelCommand {
    /// Set (`k=v`) or remove (`k-`) labels of a cluster, like `kubectl label`.
    Cluster {
        /// Cluster name.
        cluster: String,
        /// `key=value` to set, `key-` to remove.
        #[arg(required = true)]
        labels: Vec<String>,
        /// Allow changing a label the cluster already has.
        #[arg(long)]
        overwrite: bool,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
}

/// `fleetbus create placement NAME (-f FILE | flags)`.
#[derive(Debug, Args)]
pub struct CreatePlacementArgs {
    /// Placement name (a DNS-1123 label).
    pub name: String,
    /// An OCM Placement document (YAML or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "filename", conflicts_with_all = ["clustersets", "selector", "claim_selector", "number_of_clusters", "tolerations", "clusters_per_group"])]
    pub file: Option<PathBuf>,
    /// Select from these cluster sets only (repeatable).
    #[arg(long = "clusterset")]
    pub clustersets: Vec<String>,
    /// Cluster labels to match, kubectl style: `env=prod,tier in (a,b),!legacy`.
    #[arg(long)]
    pub selector: Option<String>,
    /// ClusterClaims to match, same syntax (`kubeversion.open-cluster-management.io=v1.20.2`).
    #[arg(long)]
    pub claim_selector: Option<String>,
    /// Select at most this many clusters.
    #[arg(long)]
    pub number_of_clusters: Option<i32>,
    /// Tolerate a taint: `KEY[=VALUE][:EFFECT]` (repeatable), e.g.
    /// `cluster.open-cluster-management.io/unreachable`.
    #[arg(long = "toleration")]
    pub tolerations: Vec<String>,
    /// decisionStrategy.groupStrategy.clustersPerDecisionGroup: a number or a percentage.
    #[arg(long)]
    pub clusters_per_group: Option<String>,
    /// Update the placement if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Hub connection.
    #[command(flatten)]
    pub hub: HubFlags,
}

/// `fleetbus get placement [NAME]`.
#[derive(Debug, Args)]
pub struct GetPlacementArgs {
    /// One placement, with its decision groups.
    pub name: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    /// Hub connection.
    #[command(flatten)]
    pub hub: HubFlags,
}

/// `fleetbus get clustersets`.
#[derive(Debug, Args)]
pub struct GetClustersetsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    /// Hub connection.
    #[command(flatten)]
    pub hub: HubFlags,
}

/// A name and the hub (`create clusterset S`, `delete placement P`, …).
#[derive(Debug, Args)]
pub struct NamedArgs {
    /// Name.
    pub name: String,
    /// Hub connection.
    #[command(flatten)]
    pub hub: HubFlags,
}

fn read(file: &std::path::Path) -> anyhow::Result<(String, String)> {
    if file == std::path::Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(("stdin".into(), text));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    Ok((file.display().to_string(), text))
}

/// The placement `args` describe.
fn placement_of(args: &CreatePlacementArgs) -> anyhow::Result<Placement> {
    if let Some(file) = &args.file {
        let (source, text) = read(file)?;
        return input::parse_document(&source, &text, &args.name);
    }
    let mut selector = fleetbus_schema::v1::ClusterSelector::default();
    if let Some(s) = &args.selector {
        selector.label_selector = Some(input::parse_selector(s)?);
    }
    if let Some(s) = &args.claim_selector {
        let mut claims = input::parse_selector(s)?;
        // OCM's claimSelector has matchExpressions only.
        for (key, value) in std::mem::take(&mut claims.match_labels) {
            claims
                .match_expressions
                .push(fleetbus_schema::v1::LabelSelectorRequirement {
                    key,
                    operator: "In".into(),
                    values: vec![value],
                });
        }
        selector.claim_selector = Some(claims);
    }
    let predicates = if selector == Default::default() {
        Vec::new()
    } else {
        vec![fleetbus_schema::v1::ClusterPredicate {
            required_cluster_selector: Some(selector),
        }]
    };
    Ok(Placement {
        name: args.name.clone(),
        cluster_sets: args.clustersets.clone(),
        predicates,
        number_of_clusters: args.number_of_clusters,
        tolerations: args
            .tolerations
            .iter()
            .map(|t| input::parse_toleration(t))
            .collect::<anyhow::Result<_>>()?,
        group_strategy: args.clusters_per_group.as_ref().map(|c| GroupStrategy {
            clusters_per_decision_group: c.clone(),
            decision_groups: Vec::new(),
        }),
        ..Default::default()
    })
}

/// `fleetbus create placement`.
pub async fn create(args: CreatePlacementArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let placement = placement_of(&args)?;
    let client = HubClient::connect(&args.hub).await?;
    let before = match client
        .call::<_, Placement>(
            ApiEndpoint::PlacementGet,
            &ObjectRef {
                name: args.name.clone(),
            },
        )
        .await
    {
        Ok(p) => Some(p.generation),
        Err(crate::hub_client::CallError::Hub { code: 404, .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let request = CreatePlacementRequest {
        placement: Some(placement),
        overwrite: args.overwrite,
    };
    let stored: Placement = client.call(ApiEndpoint::PlacementCreate, &request).await?;
    let verb = match before {
        None => "created",
        Some(g) if g == stored.generation => "unchanged",
        Some(_) => "configured",
    };
    writeln!(out, "placement {} {verb}", stored.name)?;
    Ok(())
}

fn satisfied(p: &Placement) -> (String, String) {
    let status = p.status.clone().unwrap_or_default();
    match status
        .conditions
        .iter()
        .find(|c| c.r#type == "PlacementSatisfied")
    {
        Some(c) => (status_text(c.status()).to_owned(), c.reason.clone()),
        None => ("Unknown".into(), "Pending".into()),
    }
}

/// `fleetbus get placement [NAME]`.
pub async fn get(args: GetPlacementArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = HubClient::connect(&args.hub).await?;
    let items = match &args.name {
        Some(name) => vec![
            client
                .call::<_, Placement>(ApiEndpoint::PlacementGet, &ObjectRef { name: name.clone() })
                .await?,
        ],
        None => {
            let list: PlacementList = client.call(ApiEndpoint::PlacementList, &Empty {}).await?;
            list.items
        }
    };
    match args.output {
        Output::Table if items.is_empty() => writeln!(out, "No placements found.")?,
        Output::Table => {
            let now = now_ms();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|p| {
                    let (ok, reason) = satisfied(p);
                    let selected = p
                        .status
                        .as_ref()
                        .map_or(0, |s| s.number_of_selected_clusters);
                    vec![
                        p.name.clone(),
                        ok,
                        reason,
                        selected.to_string(),
                        age(p.created_ms, now),
                    ]
                })
                .collect();
            let header = ["NAME", "SUCCEEDED", "REASON", "SELECTEDCLUSTERS", "AGE"];
            write!(out, "{}", table(&header, &rows))?;
            if args.name.is_some() {
                write_groups(&items[0], out)?;
            }
        }
        Output::Json | Output::Yaml => {
            let value = match &args.name {
                Some(_) => shape::placement(&items[0]),
                None => shape::list(items.iter().map(shape::placement).collect()),
            };
            print(&value, args.output, out)?;
        }
    }
    Ok(())
}

fn write_groups(p: &Placement, out: &mut impl Write) -> anyhow::Result<()> {
    let status = p.status.clone().unwrap_or_default();
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.r#type == "PlacementSatisfied" && c.status() != ConditionStatus::True)
    {
        writeln!(out, "\n{}", c.message)?;
    }
    if status.decision_groups.is_empty() {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = status
        .decision_groups
        .iter()
        .map(|g| {
            vec![
                g.index.to_string(),
                if g.name.is_empty() {
                    "-".into()
                } else {
                    g.name.clone()
                },
                g.clusters_count.to_string(),
                g.clusters.join(","),
            ]
        })
        .collect();
    writeln!(out)?;
    write!(
        out,
        "{}",
        table(&["GROUP", "NAME", "COUNT", "CLUSTERS"], &rows)
    )?;
    Ok(())
}

pub(crate) fn print(
    value: &serde_json::Value,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match output {
        Output::Yaml => write!(out, "{}", serde_yaml::to_string(value)?)?,
        _ => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
    }
    Ok(())
}

/// `fleetbus delete placement NAME`.
pub async fn delete(args: NamedArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = HubClient::connect(&args.hub).await?;
    let _: Empty = client
        .call(
            ApiEndpoint::PlacementDelete,
            &ObjectRef {
                name: args.name.clone(),
            },
        )
        .await?;
    writeln!(out, "placement {} deleted", args.name)?;
    Ok(())
}

/// `fleetbus create clusterset NAME`.
pub async fn create_set(args: NamedArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = HubClient::connect(&args.hub).await?;
    let set: ClusterSet = client
        .call(
            ApiEndpoint::ClusterSetCreate,
            &ObjectRef { name: args.name },
        )
        .await?;
    writeln!(out, "clusterset {} created", set.name)?;
    Ok(())
}

/// `fleetbus delete clusterset NAME`.
pub async fn delete_set(args: NamedArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = HubClient::connect(&args.hub).await?;
    let _: Empty = client
        .call(
            ApiEndpoint::ClusterSetDelete,
            &ObjectRef {
                name: args.name.clone(),
            },
        )
        .await?;
    writeln!(out, "clusterset {} deleted", args.name)?;
    Ok(())
}

/// `fleetbus get clustersets`.
pub async fn get_sets(args: GetClustersetsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = HubClient::connect(&args.hub).await?;
    let list: ClusterSetList = client.call(ApiEndpoint::ClusterSetList, &Empty {}).await?;
    match args.output {
        Output::Table if list.items.is_empty() => writeln!(out, "No clustersets found.")?,
        Output::Table => {
            let now = now_ms();
            let rows: Vec<Vec<String>> = list
                .items
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.cluster_count.to_string(),
                        age(s.created_ms, now),
                    ]
                })
                .collect();
            write!(out, "{}", table(&["NAME", "CLUSTERS", "AGE"], &rows))?;
        }
        output => print(
            &shape::list(list.items.iter().map(shape::cluster_set).collect()),
            output,
            out,
        )?,
    }
    Ok(())
}

/// `fleetbus clusterset set C… --clusterset S`.
pub async fn assign(command: ClustersetCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let ClustersetCommand::Set {
        clusters,
        clusterset,
        hub,
    } = command;
    let client = HubClient::connect(&hub).await?;
    let request = ClusterSetAssignment {
        clusters,
        cluster_set: clusterset.clone(),
    };
    let done: ClusterNames = client.call(ApiEndpoint::ClusterSetAssign, &request).await?;
    for name in done.names {
        writeln!(out, "cluster {name} is in clusterset {clusterset}")?;
    }
    Ok(())
}

/// Reads `k=v` / `k-` arguments.
pub fn label_request(
    cluster: &str,
    labels: &[String],
    overwrite: bool,
) -> anyhow::Result<ClusterLabelRequest> {
    let mut request = ClusterLabelRequest {
        cluster: cluster.to_owned(),
        overwrite,
        ..Default::default()
    };
    for arg in labels {
        if let Some((k, v)) = arg.split_once('=') {
            request.set.insert(k.to_owned(), v.to_owned());
        } else if let Some(k) = arg.strip_suffix('-') {
            request.remove.push(k.to_owned());
        } else {
            anyhow::bail!("invalid label {arg:?}: expected key=value or key-");
        }
    }
    Ok(request)
}

/// `fleetbus label cluster C k=v k2-`.
pub async fn label(command: LabelCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let LabelCommand::Cluster {
        cluster,
        labels,
        overwrite,
        hub,
    } = command;
    let request = label_request(&cluster, &labels, overwrite)?;
    let client = HubClient::connect(&hub).await?;
    let labelled: Cluster = client.call(ApiEndpoint::ClustersLabel, &request).await?;
    writeln!(out, "cluster {} labeled", labelled.name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_arguments_read_like_kubectl() {
        let r = label_request("c1", &["env=prod".into(), "old-".into()], false).unwrap();
        assert_eq!(r.set["env"], "prod");
        assert_eq!(r.remove, ["old"]);
        assert!(
            label_request("c1", &["env".into()], false)
                .unwrap_err()
                .to_string()
                .contains("expected key=value or key-")
        );
    }
}
