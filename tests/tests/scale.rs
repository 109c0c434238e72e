//! The fleet-scale benchmark end to end with 100 simulated spokes and one real one, so it
//! cannot rot. No timing is asserted: only that every scenario completes and counts what it
//! should (`fleetbus-bench fleet` runs it at scale and prints the figures).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::Duration;

use fleetbus_tests::scale::{Options, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_benchmark_runs_end_to_end() -> anyhow::Result<()> {
    let options = Options {
        spokes: 100,
        real_spokes: 1,
        steady: Duration::from_secs(2),
        concurrency: 16,
        timeout: Duration::from_secs(120),
        ramp_per_second: 0,
    };
    let mut out = Vec::new();
    let report = run(&options, &mut out).await?;
    let printed = String::from_utf8(out)?;
    let scenarios: Vec<(&str, usize)> = report
        .rows
        .iter()
        .map(|r| (r.scenario.as_str(), r.n))
        .collect();
    assert_eq!(
        scenarios,
        [
            ("join + accept (start → connected as the cluster)", 101),
            ("steady state (heartbeats)", 101),
            ("work fan-out: create → Applied on the hub", 101),
            ("work update: new generation → Applied", 101),
            ("work delete: delete → resources gone", 101),
            ("placement over every cluster: create → decided", 101),
            ("work set All: create → Applied on every cluster", 101),
            ("work set delete → resources gone everywhere", 101),
            ("work set Progressive 10%: create → Applied", 101),
            ("work set delete → resources gone everywhere", 101),
            ("10 % of spokes lost → Unknown", 10),
            ("lost spokes return → Available", 10),
            ("duplicate names (new key, taken name)", 5),
        ]
    );
    for row in &report.rows {
        assert!(printed.contains(&row.scenario), "{printed}");
        assert!(row.hub_peak_mib > 0.0, "hub memory is measured");
    }
    let measured = |i: usize| report.rows[i].latencies.is_some();
    assert!((0..report.rows.len()).filter(|i| *i != 1).all(measured));
    assert!(
        report.rows[12]
            .note
            .contains("the hub rejected the join request"),
        "{}",
        report.rows[12].note
    );
    // At most 10 % of 101 clusters (11) in flight: at least 10 waves.
    let note = &report.rows[8].note;
    let waves: usize = note.split(' ').next().unwrap().parse().unwrap();
    assert!(waves >= 10, "{note}");
    // 100 creates and 100 updates of one object each, then one per work set, in memory.
    assert_eq!(report.simulated_writes, 400);
    assert_eq!(report.api_failures, 0);
    Ok(())
}
