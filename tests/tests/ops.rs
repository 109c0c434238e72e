//! Operations endpoints on real processes: Prometheus text that parses, health and readiness.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::Duration;

use fleetbus_nats::server::free_port;
use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::{Fleet, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    let status = text.split_whitespace().nth(1).unwrap_or("0").parse()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Every sample line is `name{labels} value` with a float value; every metric has HELP and TYPE.
fn assert_prometheus(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            typed.insert(parts.next().unwrap().to_owned());
            assert!(matches!(parts.next(), Some("counter" | "gauge")), "{line}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(typed.contains(name), "no TYPE for {line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
        }
    }
}

#[tokio::test]
async fn hub_and_spoke_serve_metrics_health_and_readiness() -> anyhow::Result<()> {
    let hub_port = free_port()?;
    let fleet =
        Fleet::start_with(|c| c.metrics_addr = Some(([127, 0, 0, 1], hub_port).into())).await?;
    let spoke_port = free_port()?;
    let mut config = fleet.spoke_config("c1", None)?;
    config.metrics_addr = Some(([127, 0, 0, 1], spoke_port).into());
    let _spoke = fleet.start_spoke(config);
    eventually("c1 registered", Duration::from_secs(20), || async {
        fleet.cluster("c1").await.ok()?.map(|_| ())
    })
    .await?;
    assert_eq!(
        get(spoke_port, "/readyz").await?.0,
        503,
        "not ready before it is accepted"
    );
    fleet.cli(&["accept", "c1"]).await?;
    fleet
        .wait_available("c1", ConditionStatus::False, Duration::from_secs(20))
        .await?;

    for port in [hub_port, spoke_port] {
        assert_eq!(get(port, "/healthz").await?, (200, "ok\n".to_owned()));
        eventually("ready", Duration::from_secs(10), || async {
            (get(port, "/readyz").await.ok()?.0 == 200).then_some(())
        })
        .await?;
    }
    let (status, hub) = get(hub_port, "/metrics").await?;
    assert_eq!(status, 200);
    assert_prometheus(&hub);
    assert!(
        hub.contains(
            "fleetbus_hub_api_requests_total{endpoint=\"clusters-accept\",code=\"200\"} 1"
        ),
        "{hub}"
    );
    eventually("connected spokes gauge", Duration::from_secs(5), || async {
        get(hub_port, "/metrics")
            .await
            .ok()?
            .1
            .contains("fleetbus_hub_connected_spokes 1")
            .then_some(())
    })
    .await?;
    let (_, spoke) = get(spoke_port, "/metrics").await?;
    assert_prometheus(&spoke);
    assert!(spoke.contains("fleetbus_spoke_connected 1"), "{spoke}");
    assert_eq!(get(hub_port, "/nope").await?.0, 404);
    Ok(())
}

#[tokio::test]
async fn the_credential_inventory_flags_what_expires_soon() -> anyhow::Result<()> {
    let fleet = Fleet::start_with(|c| c.spoke_cert_validity = Duration::from_secs(10)).await?;
    // Accepted, then stopped: nobody renews its certificate.
    fleet.accepted_spoke("c1").await?;
    let dir = fleet.nats.pki.root().display().to_string();
    let table = fleet.cli(&["get", "credentials", "--dir", &dir]).await?;
    assert!(table.starts_with("KIND "), "{table}");
    for (kind, name) in [
        ("spoke-certificate", "spoke:c1"),
        ("user-certificate", "user:admin"),
        ("hub-certificate", "hub"),
        ("ca", "ca"),
    ] {
        let row = table
            .lines()
            .any(|l| l.split_whitespace().take(2).eq([kind, name]));
        assert!(row, "{kind} {name} missing in\n{table}");
    }
    let flagged = eventually("spoke:c1 flagged", Duration::from_secs(15), || async {
        let table = fleet.cli(&["get", "credentials"]).await.ok()?;
        table
            .lines()
            .find(|l| l.contains("spoke:c1") && l.ends_with("renew soon"))
            .map(str::to_owned)
    })
    .await?;
    assert!(flagged.contains("c1"));
    let denied = fleet
        .cli_as("bob", &["get", "credentials"])
        .await
        .unwrap_err();
    assert_eq!(denied.to_string(), "user bob is not a hub admin");
    Ok(())
}
