//! Latency summaries and the benchmark's table.

use std::time::Duration;

/// One row of the results table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Scenario.
    pub scenario: String,
    /// Clusters involved.
    pub n: usize,
    /// Latencies, if the scenario measures any.
    pub latencies: Option<Summary>,
    /// Hub CPU seconds during the scenario.
    pub hub_cpu_s: f64,
    /// nats-server CPU seconds during the scenario.
    pub nats_cpu_s: f64,
    /// CPU seconds of the benchmark process (the simulated spokes) during the scenario.
    pub spokes_cpu_s: f64,
    /// Hub peak resident memory so far (MiB).
    pub hub_peak_mib: f64,
    /// nats-server resident memory at the end (MiB).
    pub nats_mib: f64,
    /// Anything else worth a line.
    pub note: String,
}

/// p50, p95, p99 and max of a set of latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Maximum.
    pub max: Duration,
}

/// Summarises `latencies` (nearest-rank percentiles); `None` when empty.
pub fn summarize(mut latencies: Vec<Duration>) -> Option<Summary> {
    if latencies.is_empty() {
        return None;
    }
    latencies.sort();
    let at = |q: f64| {
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1]
    };
    Some(Summary {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: latencies[latencies.len() - 1],
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The table, one line per row, columns padded.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "N",
        "p50",
        "p95",
        "p99",
        "max",
        "hub CPU s",
        "nats CPU s",
        "spokes CPU s",
        "hub peak RSS",
        "nats RSS",
        "note",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let l = r.latencies;
            let lat = |f: fn(&Summary) -> Duration| l.as_ref().map_or("-".to_owned(), |s| ms(f(s)));
            vec![
                r.scenario.clone(),
                r.n.to_string(),
                lat(|s| s.p50),
                lat(|s| s.p95),
                lat(|s| s.p99),
                lat(|s| s.max),
                format!("{:.1}", r.hub_cpu_s),
                format!("{:.1}", r.nats_cpu_s),
                format!("{:.1}", r.spokes_cpu_s),
                format!("{:.0} MiB", r.hub_peak_mib),
                format!("{:.0} MiB", r.nats_mib),
                r.note.clone(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: Vec<String>| {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let l: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summarize(l).unwrap();
        assert_eq!(
            (s.p50, s.p95, s.p99, s.max),
            (
                Duration::from_millis(50),
                Duration::from_millis(95),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
        assert_eq!(summarize(Vec::new()), None);
        let one = summarize(vec![Duration::from_millis(7)]).unwrap();
        assert_eq!(one.p50, one.max);
    }

    #[test]
    fn the_table_is_markdown() {
        let t = table(&[Row {
            scenario: "steady".into(),
            n: 10,
            ..Default::default()
        }]);
        assert!(t.starts_with("| scenario |"));
        assert!(t.lines().nth(2).unwrap().contains("| steady   | 10 | -"));
    }
}
