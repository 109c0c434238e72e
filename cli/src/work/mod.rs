//! `fleetbus create|get|delete work`: ManifestWorks like `clusteradm create work` and
//! `kubectl get manifestwork`, with `--wait` that follows the spoke's report.

pub mod input;
pub mod shape;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::chunks::{self, CHUNK_BYTES};
use fleetbus_schema::v1::{
    Condition, ConditionStatus, CreateWorkRequest, Empty, ManifestWork, UploadChunk, WorkRef,
};
use prost::Message;

use crate::cli::{HubFlags, Output};
use crate::hub_client::{CallError, HubClient};
use crate::output::{age, now_ms, status_text, table};

/// How long `Applied=False` must last before `--wait` gives up (the spoke retries failures,
/// for example a custom resource whose CRD is not established yet).
const FAILURE_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(200);
/// Manifests up to this size go inline with the create request.
const INLINE_BYTES: usize = CHUNK_BYTES - 64 * 1024;

/// What `create work` was asked.
pub struct CreateOptions<'a> {
    /// Work name.
    pub name: &'a str,
    /// Cluster.
    pub cluster: &'a str,
    /// File, or `-` for stdin.
    pub file: &'a Path,
    /// Update an existing work.
    pub overwrite: bool,
    /// Wait for the spoke's report.
    pub wait: Option<Duration>,
}

fn read_input(file: &Path) -> anyhow::Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(("stdin".into(), text));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    Ok((file.display().to_string(), text))
}

/// `fleetbus create work`.
pub async fn create(
    hub: &HubFlags,
    options: CreateOptions<'_>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (source, text) = read_input(options.file)?;
    let parsed = input::parse(&source, &text)?;
    let client = HubClient::connect(hub).await?;
    let encoded = parsed.manifests.encode_to_vec();
    let mut request = CreateWorkRequest {
        work: Some(ManifestWork {
            name: options.name.to_owned(),
            cluster: options.cluster.to_owned(),
            delete_option: parsed.delete_option,
            manifest_configs: parsed.manifest_configs,
            ..Default::default()
        }),
        overwrite: options.overwrite,
        ..Default::default()
    };
    if encoded.len() <= INLINE_BYTES {
        request.manifests = Some(parsed.manifests);
    } else {
        (request.upload_id, request.upload_chunks) = upload(&client, &encoded).await?;
    }
    let before = if options.overwrite {
        get_opt(&client, options.cluster, options.name).await?
    } else {
        None
    };
    let stored: ManifestWork = client.call(ApiEndpoint::WorkCreate, &request).await?;
    let verb = match before {
        None => "created",
        Some(b) if b.generation == stored.generation => "unchanged",
        Some(_) => "configured",
    };
    writeln!(
        out,
        "manifestwork {} {verb} on cluster {} (generation {})",
        stored.name, stored.cluster, stored.generation
    )?;
    if let Some(timeout) = options.wait {
        wait_applied(&client, &stored, timeout, out).await?;
    }
    Ok(())
}

/// Whether encoded manifests of this size go inline with a create request.
pub fn fits_inline(len: usize) -> bool {
    len <= INLINE_BYTES
}

/// Uploads large encoded manifests in chunks (`work.upload`); returns the upload id and the
/// number of chunks for the create request.
pub async fn upload(client: &HubClient, encoded: &[u8]) -> anyhow::Result<(String, i32)> {
    let id = format!("{:032x}", rand::random::<u128>());
    let count = chunks::count(encoded.len());
    for index in 0..count {
        eprintln!(
            "uploading manifests: chunk {} of {count} ({} MiB in all)",
            index + 1,
            encoded.len() / (1024 * 1024)
        );
        let chunk = UploadChunk {
            upload_id: id.clone(),
            index: index as i32,
            data: chunks::at(encoded, index * CHUNK_BYTES).to_vec(),
        };
        let _: Empty = client.call(ApiEndpoint::WorkUpload, &chunk).await?;
    }
    Ok((id, count as i32))
}

async fn get_opt(
    client: &HubClient,
    cluster: &str,
    name: &str,
) -> anyhow::Result<Option<ManifestWork>> {
    let r = WorkRef {
        cluster: cluster.to_owned(),
        name: name.to_owned(),
    };
    match client.call(ApiEndpoint::WorkGet, &r).await {
        Ok(w) => Ok(Some(w)),
        Err(CallError::Hub { code: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn find<'a>(conditions: &'a [Condition], kind: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.r#type == kind)
}

/// Where a work stands, in one line.
pub fn progress(w: &ManifestWork) -> String {
    let status = w.status.clone().unwrap_or_default();
    if status.reported_ms == 0 || status.observed_generation < w.generation {
        return format!(
            "generation {} not yet applied by cluster {} (it has generation {})",
            w.generation, w.cluster, status.observed_generation
        );
    }
    match find(&status.conditions, "Applied") {
        Some(c) if c.status() == ConditionStatus::True => {
            format!("applied {} manifests", status.manifests.len())
        }
        Some(c) => format!("not applied: {}", c.message),
        None => "no Applied condition reported yet".into(),
    }
}

async fn wait_applied(
    client: &HubClient,
    created: &ManifestWork,
    timeout: Duration,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut shown = String::new();
    let mut failing_since: Option<Instant> = None;
    loop {
        let w = get_opt(client, &created.cluster, &created.name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("work {} disappeared while waiting", created.name))?;
        let line = progress(&w);
        if line != shown {
            eprintln!(
                "[{:>4.1}s] {}/{}: {line}",
                started.elapsed().as_secs_f32(),
                w.cluster,
                w.name
            );
            shown = line;
        }
        let status = w.status.clone().unwrap_or_default();
        if status.observed_generation >= created.generation && status.reported_ms > 0 {
            match find(&status.conditions, "Applied").map(Condition::status) {
                Some(ConditionStatus::True) => {
                    writeln!(
                        out,
                        "manifestwork {} applied on cluster {} (generation {})",
                        w.name, w.cluster, status.observed_generation
                    )?;
                    return Ok(());
                }
                Some(ConditionStatus::False) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= FAILURE_GRACE {
                        anyhow::bail!(
                            "manifestwork {} failed on cluster {}: {}",
                            w.name,
                            w.cluster,
                            shown
                        );
                    }
                }
                _ => failing_since = None,
            }
        }
        if started.elapsed() >= timeout {
            anyhow::bail!(
                "timed out after {} waiting for manifestwork {} on cluster {}: {shown}",
                humantime::format_duration(timeout),
                w.name,
                w.cluster
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `fleetbus get work`.
pub async fn get(
    hub: &HubFlags,
    cluster: &str,
    name: Option<&str>,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    let items = match name {
        Some(name) => {
            if cluster.is_empty() {
                anyhow::bail!("--cluster is required with a work name");
            }
            vec![
                client
                    .call(
                        ApiEndpoint::WorkGet,
                        &WorkRef {
                            cluster: cluster.to_owned(),
                            name: name.to_owned(),
                        },
                    )
                    .await?,
            ]
        }
        None => client.all_works(cluster).await?,
    };
    match output {
        Output::Table if items.is_empty() => writeln!(out, "No works found.")?,
        Output::Table => {
            let now = now_ms();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|w| {
                    let status = w.status.clone().unwrap_or_default();
                    let current =
                        status.observed_generation >= w.generation && status.reported_ms > 0;
                    let cell = |kind: &str| match find(&status.conditions, kind) {
                        _ if w.deletion_ms > 0 => "Deleting".to_owned(),
                        _ if !current => format!("Pending (has {})", status.observed_generation),
                        Some(c) => status_text(c.status()).to_owned(),
                        None => "Unknown".to_owned(),
                    };
                    vec![
                        w.name.clone(),
                        w.cluster.clone(),
                        w.generation.to_string(),
                        cell("Applied"),
                        cell("Available"),
                        age(w.created_ms, now),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table(
                    &[
                        "NAME",
                        "CLUSTER",
                        "GENERATION",
                        "APPLIED",
                        "AVAILABLE",
                        "AGE"
                    ],
                    &rows
                )
            )?;
        }
        Output::Json if name.is_some() => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&shape::work(&items[0]))?
        )?,
        Output::Yaml if name.is_some() => {
            write!(out, "{}", serde_yaml::to_string(&shape::work(&items[0]))?)?
        }
        Output::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&shape::list(&items))?
        )?,
        Output::Yaml => write!(out, "{}", serde_yaml::to_string(&shape::list(&items))?)?,
    }
    Ok(())
}

/// `fleetbus delete work`.
pub async fn delete(
    hub: &HubFlags,
    cluster: &str,
    name: &str,
    wait: Option<Duration>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    let r = WorkRef {
        cluster: cluster.to_owned(),
        name: name.to_owned(),
    };
    let _: ManifestWork = client.call(ApiEndpoint::WorkDelete, &r).await?;
    writeln!(
        out,
        "manifestwork {name} deletion requested on cluster {cluster}"
    )?;
    let Some(timeout) = wait else { return Ok(()) };
    let started = Instant::now();
    let mut shown = String::new();
    loop {
        let Some(w) = get_opt(&client, cluster, name).await? else {
            writeln!(out, "manifestwork {name} deleted from cluster {cluster}")?;
            return Ok(());
        };
        let status = w.status.unwrap_or_default();
        let line = match find(&status.conditions, "Deleting") {
            Some(c) => format!("cluster {cluster} is removing the resources: {}", c.message),
            None => format!("waiting for cluster {cluster} to remove the resources"),
        };
        if line != shown {
            eprintln!(
                "[{:>4.1}s] {cluster}/{name}: {line}",
                started.elapsed().as_secs_f32()
            );
            shown = line;
        }
        if started.elapsed() >= timeout {
            anyhow::bail!(
                "timed out after {} waiting for manifestwork {name} to be deleted: {shown}",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
