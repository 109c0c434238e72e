//! `fleetbus create work NAME --placement P -f FILE` (a ManifestWorkReplicaSet, like
//! `clusteradm create work -r`), `get workset` / `get work NAME --placement P` with the rollout
//! per cluster, `delete work NAME --placement P`, and `--wait` with a progress bar.

pub mod input;
pub mod shape;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{
    Condition, ConditionStatus, CreateWorkSetRequest, Empty, ManifestWork, ObjectRef, RolloutType,
    WorkSet, WorkSetList,
};
use prost::Message;

use crate::cli::{HubFlags, Output};
use crate::hub_client::{CallError, HubClient};
use crate::output::{age, now_ms, status_text, table};
use crate::placement::print;

pub use input::RolloutFlags;

/// How long a stopped rollout must stay stopped before `--wait` gives up (a failing cluster
/// may recover, and the rollout then continues).
const FAILURE_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(200);
const BAR: usize = 10;

/// `fleetbus get workset [NAME]`.
#[derive(Debug, Args)]
pub struct GetWorkSetArgs {
    /// One ManifestWorkReplicaSet, with its rollout per cluster.
    pub name: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    /// Hub connection.
    #[command(flatten)]
    pub hub: HubFlags,
}

/// What `create work --placement` was asked.
pub struct CreateOptions<'a> {
    /// Set name.
    pub name: &'a str,
    /// `--placement`, if given.
    pub placement: Option<&'a str>,
    /// File, or `-`.
    pub file: &'a Path,
    /// Update an existing set.
    pub overwrite: bool,
    /// Rollout flags.
    pub rollout: &'a RolloutFlags,
    /// Wait for the rollout.
    pub wait: Option<Duration>,
}

fn read(file: &Path) -> anyhow::Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(("stdin".into(), text));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    Ok((file.display().to_string(), text))
}

async fn get_opt(client: &HubClient, name: &str) -> anyhow::Result<Option<WorkSet>> {
    match client
        .call(
            ApiEndpoint::WorkSetGet,
            &ObjectRef {
                name: name.to_owned(),
            },
        )
        .await
    {
        Ok(set) => Ok(Some(set)),
        Err(CallError::Hub { code: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn placements(set: &WorkSet) -> String {
    set.placement_refs
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// `fleetbus create work NAME --placement P -f FILE`.
pub async fn create(
    hub: &HubFlags,
    options: CreateOptions<'_>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (source, text) = read(options.file)?;
    let parsed = input::parse(
        &source,
        &text,
        options.name,
        options.placement,
        options.rollout,
    )?;
    let client = HubClient::connect(hub).await?;
    let encoded = parsed.template.manifests.encode_to_vec();
    let mut request = CreateWorkSetRequest {
        work_set: Some(WorkSet {
            name: options.name.to_owned(),
            template: Some(ManifestWork {
                name: options.name.to_owned(),
                delete_option: parsed.template.delete_option,
                manifest_configs: parsed.template.manifest_configs,
                ..Default::default()
            }),
            placement_refs: parsed.refs,
            ..Default::default()
        }),
        overwrite: options.overwrite,
        ..Default::default()
    };
    if crate::work::fits_inline(encoded.len()) {
        request.manifests = Some(parsed.template.manifests);
    } else {
        (request.upload_id, request.upload_chunks) = crate::work::upload(&client, &encoded).await?;
    }
    let before = get_opt(&client, options.name).await?;
    let stored: WorkSet = client.call(ApiEndpoint::WorkSetCreate, &request).await?;
    let verb = match before {
        None => "created",
        Some(b)
            if b.generation == stored.generation && b.placement_refs == stored.placement_refs =>
        {
            "unchanged"
        }
        Some(_) => "configured",
    };
    writeln!(
        out,
        "manifestworkreplicaset {} {verb} for placement {} (generation {})",
        stored.name,
        placements(&stored),
        stored.generation
    )?;
    if let Some(timeout) = options.wait {
        wait_rolled_out(&client, &stored, timeout, out).await?;
    }
    Ok(())
}

fn find<'a>(set: &'a WorkSet, kind: &str) -> Option<&'a Condition> {
    set.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
}

/// `[###-------] 3/10 clusters applied`.
pub fn bar(applied: i32, desired: i32) -> String {
    let filled = if desired > 0 {
        (applied.max(0) as usize * BAR / desired as usize).min(BAR)
    } else {
        0
    };
    format!(
        "[{}{}] {applied}/{desired} clusters applied",
        "#".repeat(filled),
        "-".repeat(BAR - filled)
    )
}

/// Where a rollout stands, in one line.
fn progress(set: &WorkSet) -> String {
    let status = set.status.clone().unwrap_or_default();
    if status.observed_generation < set.generation {
        return format!("generation {} not rolled out yet", set.generation);
    }
    let summary = status.summary.unwrap_or_default();
    let mut line = bar(summary.applied, summary.desired_total);
    match find(set, "PlacementVerified") {
        Some(c) if c.status() != ConditionStatus::True => {
            line.push_str(&format!(" ({})", c.message))
        }
        _ => {}
    }
    if summary.failed > 0 {
        line.push_str(&format!(", {} failed", summary.failed));
    }
    line
}

async fn wait_rolled_out(
    client: &HubClient,
    created: &WorkSet,
    timeout: Duration,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut shown = String::new();
    let mut stopped_since: Option<Instant> = None;
    loop {
        let set = get_opt(client, &created.name).await?.ok_or_else(|| {
            anyhow::anyhow!(
                "manifestworkreplicaset {} disappeared while waiting",
                created.name
            )
        })?;
        let line = progress(&set);
        if line != shown {
            eprintln!(
                "[{:>4.1}s] {}: {line}",
                started.elapsed().as_secs_f32(),
                set.name
            );
            shown = line;
        }
        let current = set
            .status
            .as_ref()
            .is_some_and(|s| s.observed_generation >= created.generation);
        let rolled = find(&set, "PlacementRolledOut").filter(|_| current);
        match rolled {
            Some(c) if c.status() == ConditionStatus::True => {
                let s = set
                    .status
                    .as_ref()
                    .and_then(|s| s.summary)
                    .unwrap_or_default();
                let failed = if s.failed > 0 {
                    format!("; {} failed within maxFailures", s.failed)
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "manifestworkreplicaset {} rolled out to {} of {} clusters (generation {}{failed})",
                    set.name, s.applied, s.desired_total, set.generation
                )?;
                return Ok(());
            }
            Some(c) if c.reason == "Failed" => {
                let since = *stopped_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= FAILURE_GRACE {
                    anyhow::bail!("manifestworkreplicaset {}: {}", set.name, c.message);
                }
            }
            _ => stopped_since = None,
        }
        if started.elapsed() >= timeout {
            anyhow::bail!(
                "timed out after {} waiting for manifestworkreplicaset {} to roll out: {shown}",
                humantime::format_duration(timeout),
                set.name
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn strategy_name(set: &WorkSet) -> String {
    set.placement_refs
        .iter()
        .map(|r| {
            let kind = r
                .rollout_strategy
                .as_ref()
                .map_or(RolloutType::All, |s| s.r#type());
            match kind {
                RolloutType::All => "All",
                RolloutType::Progressive => "Progressive",
                RolloutType::ProgressivePerGroup => "ProgressivePerGroup",
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `fleetbus get workset [NAME]`.
pub async fn get(args: GetWorkSetArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = HubClient::connect(&args.hub).await?;
    let items = match &args.name {
        Some(name) => vec![
            get_opt(&client, name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("ManifestWorkReplicaSet {name} not found"))?,
        ],
        None => {
            let list: WorkSetList = client.call(ApiEndpoint::WorkSetList, &Empty {}).await?;
            list.items
        }
    };
    show(&items, args.name.is_some(), args.output, out)
}

/// `fleetbus get work NAME --placement P`: the set, if it uses that placement.
pub async fn get_for_placement(
    hub: &HubFlags,
    name: &str,
    placement: &str,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    let set = get_opt(&client, name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("ManifestWorkReplicaSet {name} not found"))?;
    if !set.placement_refs.iter().any(|r| r.name == placement) {
        anyhow::bail!(
            "ManifestWorkReplicaSet {name} does not use placement {placement} (it uses {})",
            placements(&set)
        );
    }
    show(&[set], true, output, out)
}

fn show(items: &[WorkSet], one: bool, output: Output, out: &mut impl Write) -> anyhow::Result<()> {
    match output {
        Output::Table if items.is_empty() => writeln!(out, "No manifestworkreplicasets found.")?,
        Output::Table => {
            let now = now_ms();
            let rows: Vec<Vec<String>> = items.iter().map(|s| row(s, now)).collect();
            let header = [
                "NAME",
                "PLACEMENTS",
                "ROLLOUT",
                "GENERATION",
                "CLUSTERS",
                "APPLIED",
                "AVAILABLE",
                "DEGRADED",
                "ROLLEDOUT",
                "AGE",
            ];
            write!(out, "{}", table(&header, &rows))?;
            if one {
                write_clusters(&items[0], out)?;
            }
        }
        Output::Json | Output::Yaml => {
            let value = if one {
                shape::work_set(&items[0])
            } else {
                crate::placement::shape::list(items.iter().map(shape::work_set).collect())
            };
            print(&value, output, out)?;
        }
    }
    Ok(())
}

fn row(s: &WorkSet, now: i64) -> Vec<String> {
    let summary = s
        .status
        .clone()
        .unwrap_or_default()
        .summary
        .unwrap_or_default();
    let rolled = match find(s, "PlacementRolledOut") {
        _ if s.deletion_ms > 0 => "Deleting".to_owned(),
        Some(c) => format!("{} ({})", status_text(c.status()), c.reason),
        None => "Unknown".into(),
    };
    vec![
        s.name.clone(),
        placements(s),
        strategy_name(s),
        s.generation.to_string(),
        summary.desired_total.to_string(),
        summary.applied.to_string(),
        summary.available.to_string(),
        summary.degraded.to_string(),
        rolled,
        age(s.created_ms, now),
    ]
}

fn write_clusters(set: &WorkSet, out: &mut impl Write) -> anyhow::Result<()> {
    for c in set.status.iter().flat_map(|s| s.conditions.iter()) {
        if c.status() != ConditionStatus::True && !c.message.is_empty() {
            writeln!(out, "{}: {}", c.r#type, c.message)?;
        }
    }
    if set.clusters.is_empty() {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = set
        .clusters
        .iter()
        .map(|c| {
            vec![
                c.cluster.clone(),
                c.placement.clone(),
                c.group_index.to_string(),
                c.status.clone(),
                c.generation.to_string(),
                c.message.clone(),
            ]
        })
        .collect();
    writeln!(out)?;
    write!(
        out,
        "{}",
        table(
            &[
                "CLUSTER",
                "PLACEMENT",
                "GROUP",
                "ROLLOUT",
                "GENERATION",
                "MESSAGE"
            ],
            &rows
        )
    )?;
    if set.clusters_omitted > 0 {
        writeln!(out, "… and {} more clusters", set.clusters_omitted)?;
    }
    Ok(())
}

/// `fleetbus delete work NAME --placement P`: every generated work goes, then the set.
pub async fn delete(
    hub: &HubFlags,
    name: &str,
    placement: Option<&str>,
    wait: Option<Duration>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    if let Some(p) = placement {
        let set = get_opt(&client, name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("ManifestWorkReplicaSet {name} not found"))?;
        if !set.placement_refs.iter().any(|r| r.name == p) {
            anyhow::bail!("ManifestWorkReplicaSet {name} does not use placement {p}");
        }
    }
    let _: WorkSet = client
        .call(
            ApiEndpoint::WorkSetDelete,
            &ObjectRef {
                name: name.to_owned(),
            },
        )
        .await?;
    writeln!(out, "manifestworkreplicaset {name} deletion requested")?;
    let Some(timeout) = wait else { return Ok(()) };
    let started = Instant::now();
    let mut shown = String::new();
    loop {
        let Some(set) = get_opt(&client, name).await? else {
            writeln!(
                out,
                "manifestworkreplicaset {name} deleted from every cluster"
            )?;
            return Ok(());
        };
        let line = format!(
            "waiting for every cluster to remove the resources of generation {}",
            set.generation
        );
        if line != shown {
            eprintln!("[{:>4.1}s] {name}: {line}", started.elapsed().as_secs_f32());
            shown = line;
        }
        if started.elapsed() >= timeout {
            anyhow::bail!(
                "timed out after {} waiting for manifestworkreplicaset {name} to be deleted",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar() {
        assert_eq!(bar(3, 10), "[###-------] 3/10 clusters applied");
        assert_eq!(bar(0, 0), "[----------] 0/0 clusters applied");
        assert_eq!(bar(10, 10), "[##########] 10/10 clusters applied");
        assert_eq!(bar(1, 3), "[###-------] 1/3 clusters applied");
    }
}
