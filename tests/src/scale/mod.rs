//! The fleet-scale benchmark (`fleetbus-bench fleet`): N simulated spokes in this process, each
//! with its own identity from the real join/accept path, its own NATS connection, real
//! heartbeats and the real work loop applying to an in-memory cluster; a few real spokes on a
//! real kube-apiserver; the hub as its own process so its CPU and memory can be measured.
//! Scenarios: join + accept, steady state, one work per cluster (create, update, delete), and
//! losing 10 % of the spokes. Work latencies are taken from the hub's own audit events (emitted
//! when a spoke's report reaches the hub) against the wall-clock time each request was sent.

mod hub_process;
pub mod procfs;
pub mod stats;
mod steps;
mod workset;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fleetbus_cli::hub_client::HubClient;
use fleetbus_schema::Identity;
use fleetbus_spoke::sim::Probe;
use fleetbus_spoke::work::memory::MemoryCluster;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::fleet::{Fleet, Running};
use crate::nats_env::NatsEnv;
use hub_process::HubProcess;
use stats::{Row, summarize};
use steps::{
    Step, accept_all, collect, probe_api, refuse_impostors, send_all, time_until, wait_available,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Simulated spokes.
    pub spokes: usize,
    /// Spokes on a real kube-apiserver (one apiserver shared by all of them).
    pub real_spokes: usize,
    /// How long to measure the steady state.
    pub steady: Duration,
    /// Hub API calls in flight when creating, updating or deleting works.
    pub concurrency: usize,
    /// How long any one scenario may take.
    pub timeout: Duration,
    /// Spokes started per second (0: all at once). Real fleets do not boot in the same
    /// millisecond, and on one 2-core machine the TLS handshakes of thousands of simultaneous
    /// connections (both ends on this machine) would measure the CPU, not fleetbus.
    pub ramp_per_second: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            spokes: 1000,
            real_spokes: 2,
            steady: Duration::from_secs(60),
            concurrency: 64,
            timeout: Duration::from_secs(600),
            ramp_per_second: 500,
        }
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    /// One row per scenario.
    pub rows: Vec<Row>,
    /// Slowest hub API answer (`whoami`, every 250 ms) during the run, and failed calls.
    pub api_max: Duration,
    /// Hub API calls that failed during the run.
    pub api_failures: usize,
    /// Writes the in-memory clusters recorded.
    pub simulated_writes: u64,
}

struct Agent {
    config: fleetbus_spoke::Config,
    probe: Arc<Probe>,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    started: Instant,
}

fn start_agent(config: fleetbus_spoke::Config, writes: &Arc<AtomicU64>) -> Agent {
    let probe = Arc::new(Probe::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(fleetbus_spoke::sim::run(
        config.clone(),
        MemoryCluster::counting(writes.clone()),
        probe.clone(),
        stop.clone(),
    ));
    Agent {
        config,
        probe,
        stop,
        task,
        started: Instant::now(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// CPU seconds used so far by the hub, nats-server and this process (the simulated spokes).
#[derive(Debug, Clone, Copy)]
struct Cpu {
    hub: f64,
    nats: f64,
    spokes: f64,
}

/// Hub, nats-server and this process's resources for a row.
struct Meter {
    hub: u32,
    nats: u32,
}

impl Meter {
    fn row(&self, scenario: &str, n: usize, before: Cpu, latencies: Vec<Duration>) -> Row {
        let now = self.cpu();
        Row {
            scenario: scenario.into(),
            n,
            latencies: summarize(latencies),
            hub_cpu_s: now.hub - before.hub,
            nats_cpu_s: now.nats - before.nats,
            spokes_cpu_s: now.spokes - before.spokes,
            hub_peak_mib: procfs::rss_mib(self.hub).1,
            nats_mib: procfs::rss_mib(self.nats).0,
            note: String::new(),
        }
    }

    fn cpu(&self) -> Cpu {
        Cpu {
            hub: procfs::cpu_seconds(self.hub),
            nats: procfs::cpu_seconds(self.nats),
            spokes: procfs::cpu_seconds(std::process::id()),
        }
    }
}

/// Runs every scenario, printing progress to stderr and each row to `out` as it completes.
pub async fn run(options: &Options, out: &mut impl Write) -> anyhow::Result<Report> {
    let fleet = Fleet {
        nats: NatsEnv::start()?,
        hub: None,
    };
    let hub = HubProcess::start(&fleet)?;
    fleet.wait_for_hub().await?;
    let meter = Meter {
        hub: hub.pid(),
        nats: fleet.nats.server.pid().unwrap_or(0),
    };
    let admin = Arc::new(HubClient::connect(&fleet.flags_for("admin")?).await?);
    let observer = fleet.nats.connect_as(&Identity::Hub).await?;
    let events = observer
        .subscribe(format!("{}.audit.work.>", fleet.nats.subjects.prefix()))
        .await?;
    let mut rollouts = observer
        .subscribe(fleet.nats.subjects.audit_filter(Some("workset"), None))
        .await?;
    let probing = CancellationToken::new();
    let prober = tokio::spawn(probe_api(admin.clone(), probing.clone()));
    let mut rows = Vec::new();
    let mut emit = |row: Row, out: &mut dyn Write| -> anyhow::Result<()> {
        writeln!(
            out,
            "{}",
            stats::table(std::slice::from_ref(&row))
                .lines()
                .nth(2)
                .unwrap_or_default()
        )?;
        rows.push(row);
        Ok(())
    };
    writeln!(
        out,
        "{}",
        stats::table(&[])
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n")
    )?;

    // Join + accept (the real spokes' apiserver first, so that its start is not counted).
    let kube = if options.real_spokes > 0 {
        Some(fleet.kube("real").await?)
    } else {
        None
    };
    let writes = Arc::new(AtomicU64::new(0));
    let cpu = meter.cpu();
    let total = options.spokes + options.real_spokes;
    let accepting = tokio::spawn(accept_all(admin.clone(), total, options.timeout));
    let mut agents = Vec::with_capacity(options.spokes);
    let ramp_started = Instant::now();
    for i in 0..options.spokes {
        if options.ramp_per_second > 0 {
            let due = Duration::from_secs_f64(i as f64 / options.ramp_per_second as f64);
            tokio::time::sleep(due.saturating_sub(ramp_started.elapsed())).await;
        }
        let mut config = fleet.spoke_config(&format!("sim-{i:05}"), None)?;
        config.join_interval = Duration::from_secs(1);
        agents.push(start_agent(config, &writes));
    }
    let mut real: Vec<Running> = Vec::new();
    for i in 0..options.real_spokes {
        let name = format!("real-{i}");
        let mut config = fleet.spoke_config(&name, kube.as_ref())?;
        config.work_namespace = format!("fleetbus-agent-{name}");
        real.push(fleet.start_spoke(config));
    }
    accepting.await??;
    let deadline = Instant::now() + options.timeout;
    while agents.iter().any(|a| a.probe.connected.get().is_none()) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "spokes did not all connect within {:?}",
            options.timeout
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let joined: Vec<Duration> = agents
        .iter()
        .filter_map(|a| a.probe.connected.get().map(|t| t.duration_since(a.started)))
        .collect();
    wait_available(&admin, |_| true, total, options.timeout).await?;
    let mut row = meter.row(
        "join + accept (start → connected as the cluster)",
        total,
        cpu,
        joined,
    );
    row.note = format!("all {total} Available on the hub");
    emit(row, out)?;

    // Steady state.
    let cpu = meter.cpu();
    let started = Instant::now();
    tokio::time::sleep(options.steady).await;
    let mut row = meter.row("steady state (heartbeats)", total, cpu, Vec::new());
    let cores = row.hub_cpu_s / started.elapsed().as_secs_f64();
    row.note = format!(
        "{:.3} hub cores over {:?}; {:.3} cores and {:.0} MiB per 1,000 spokes",
        cores,
        options.steady,
        cores * 1000.0 / total as f64,
        procfs::rss_mib(meter.hub).0 * 1000.0 / total as f64
    );
    let steady_rss = procfs::rss_mib(meter.hub).0;
    emit(row, out)?;

    // One work per cluster: create, update, delete.
    let names: Vec<String> = agents
        .iter()
        .map(|a| a.config.cluster.to_string())
        .chain((0..options.real_spokes).map(|i| format!("real-{i}")))
        .collect();
    let mut events = events;
    for (scenario, step) in [
        ("work fan-out: create → Applied on the hub", Step::Create),
        ("work update: new generation → Applied", Step::Update),
        ("work delete: delete → resources gone", Step::Delete),
    ] {
        let cpu = meter.cpu();
        let first = now_ms();
        let sent = send_all(&admin, &names, step, options.concurrency).await?;
        let (latencies, last) = collect(&mut events, &sent, step, options.timeout).await?;
        let mut row = meter.row(scenario, names.len(), cpu, latencies);
        row.note = format!(
            "all {} done {} ms after the first request",
            names.len(),
            last - first
        );
        emit(row, out)?;
    }

    // One ManifestWorkReplicaSet over a placement of every cluster: All, then Progressive.
    let cpu = meter.cpu();
    let decided = workset::place_all(&admin, "bench", names.len(), options.timeout).await?;
    emit(
        meter.row(
            "placement over every cluster: create → decided",
            names.len(),
            cpu,
            vec![decided],
        ),
        out,
    )?;
    for (scenario, set, strategy) in [
        (
            "work set All: create → Applied on every cluster",
            "bench-all",
            fleetbus_schema::v1::RolloutStrategy::default(),
        ),
        (
            "work set Progressive 10%: create → Applied",
            "bench-wave",
            workset::progressive("10%"),
        ),
    ] {
        let cpu = meter.cpu();
        let sent = workset::create_set(&admin, set, "bench", strategy).await?;
        let (latencies, last) =
            workset::reports(&mut events, &names, sent, Step::Create, options.timeout).await?;
        let waves = workset::waves(&mut rollouts, set).await;
        let mut row = meter.row(scenario, names.len(), cpu, latencies);
        row.note = workset::describe_waves(&waves, sent, last);
        emit(row, out)?;
        let cpu = meter.cpu();
        let sent = workset::delete_set(&admin, set).await?;
        let (latencies, last) =
            workset::reports(&mut events, &names, sent, Step::Delete, options.timeout).await?;
        let mut row = meter.row(
            "work set delete → resources gone everywhere",
            names.len(),
            cpu,
            latencies,
        );
        row.note = format!(
            "all {} done {} ms after the request",
            names.len(),
            last - sent
        );
        emit(row, out)?;
    }

    // Lose 10 % of the simulated spokes at once, then bring them back.
    let cpu = meter.cpu();
    let lost: Vec<usize> = (0..agents.len()).step_by(10).collect();
    let lost_names: Vec<String> = lost
        .iter()
        .map(|&i| agents[i].config.cluster.to_string())
        .collect();
    let t0 = Instant::now();
    for &i in &lost {
        agents[i].stop.cancel();
    }
    let unknown = time_until(&admin, &lost_names, false, t0, options.timeout).await?;
    emit(
        meter.row("10 % of spokes lost → Unknown", lost.len(), cpu, unknown),
        out,
    )?;
    let cpu = meter.cpu();
    for &i in &lost {
        let _ = (&mut agents[i].task).await;
        agents[i] = start_agent(agents[i].config.clone(), &writes);
    }
    let t1 = Instant::now();
    let back = time_until(&admin, &lost_names, true, t1, options.timeout).await?;
    let mut row = meter.row("lost spokes return → Available", lost.len(), cpu, back);
    row.note = format!(
        "hub RSS {:.0} MiB after all scenarios (steady state: {steady_rss:.0} MiB)",
        procfs::rss_mib(meter.hub).0
    );
    emit(row, out)?;

    // Impostors: spokes with fresh keys claiming names already taken are refused for good.
    let cpu = meter.cpu();
    let impostors = (agents.len() / 100).max(5).min(agents.len());
    let refused = refuse_impostors(&fleet, &agents[..impostors], options.timeout).await?;
    let mut row = meter.row(
        "duplicate names (new key, taken name)",
        impostors,
        cpu,
        refused.0,
    );
    row.note = refused.1;
    emit(row, out)?;

    probing.cancel();
    let (api_max, api_failures) = prober.await?;
    for agent in &agents {
        agent.stop.cancel();
    }
    for agent in agents {
        let _ = agent.task.await;
    }
    for spoke in real {
        let _ = spoke.stop().await;
    }
    drop(hub);
    Ok(Report {
        rows,
        api_max,
        api_failures,
        simulated_writes: writes.load(Ordering::Relaxed),
    })
}
