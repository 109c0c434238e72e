//! fleetbus from any NATS client: the Python examples (`examples/python`, nats-py and protobuf
//! classes compiled from `schema/proto`, no fleetbus code) run against a real fleet. They are
//! the contract's tests from outside: discovery answers as the permissions say, every read
//! endpoint answers with the types the service advertises, bad input is refused at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::Duration;

use fleetbus_schema::{ApiEndpoint, ClusterName, Identity, UserName};
use fleetbus_tests::Fleet;
use serde_json::Value;

const RUN: Duration = Duration::from_secs(60);

fn user(name: &str) -> Identity {
    Identity::User(UserName::new(name).unwrap())
}

/// The discovery lines of one identity, by subject.
async fn discover(fleet: &Fleet, who: &Identity) -> Vec<Value> {
    let run = fleet
        .run_example(who, "discover.py", &[], RUN)
        .await
        .unwrap();
    assert!(run.ok, "{who}: {}", run.stderr);
    run.json_lines().unwrap()
}

fn verdicts(lines: &[Value]) -> Vec<(String, bool)> {
    lines
        .iter()
        .map(|l| (l["subject"].as_str().unwrap().to_owned(), l["ok"] == true))
        .collect()
}

#[tokio::test]
async fn discovery_answers_each_identity_as_its_permissions_say() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let spoke_tls = fleet.accepted_spoke("c1").await?;

    let admin = discover(&fleet, &user("admin")).await;
    let id = admin[0]["answers"][0]["id"].as_str().unwrap().to_owned();
    let all = |verb: &str| {
        [
            format!("$SRV.{verb}"),
            format!("$SRV.{verb}.fleetbus-hub"),
            format!("$SRV.{verb}.fleetbus-hub.{id}"),
        ]
    };
    let mut want: Vec<(String, bool)> = Vec::new();
    for verb in ["PING", "INFO", "STATS"] {
        want.extend(all(verb).into_iter().map(|s| (s, true)));
    }
    assert_eq!(verdicts(&admin), want, "{admin:#?}");
    for line in &admin {
        assert!(line["seconds"].as_f64().unwrap() < 2.0, "{line}");
        assert_eq!(line["answers"].as_array().unwrap().len(), 1, "{line}");
    }
    let info = admin.iter().find(|l| l["verb"] == "INFO").unwrap();
    assert_eq!(info["unknown_types"], serde_json::json!([]));
    let service = &info["answers"][0];
    let prefix = fleet.nats.subjects.prefix();
    assert_eq!(
        service["metadata"]["clusters.list"],
        "fleetbus.v1.ListClustersRequest -> fleetbus.v1.ClusterList"
    );
    assert_eq!(service["metadata"]["fleetbus.subject_prefix"], prefix);
    let endpoints = service["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), ApiEndpoint::ALL.len() + 2);
    let list = endpoints
        .iter()
        .find(|e| e["subject"] == format!("{prefix}.api.*.clusters.list"))
        .unwrap();
    assert_eq!(
        list["metadata"]["request"],
        "fleetbus.v1.ListClustersRequest"
    );
    assert_eq!(list["metadata"]["reply"], "fleetbus.v1.ClusterList");
    assert_eq!(list["metadata"]["read_only"], "true");
    let stats = admin.iter().find(|l| l["verb"] == "STATS").unwrap();
    assert!(stats["answers"][0]["endpoints"].as_array().unwrap().len() > 10);

    // A user and an auditor: PING and INFO, and STATS refused by nats-server at once.
    for who in [user("bob"), Identity::Auditor(UserName::new("audit")?)] {
        let lines = discover(&fleet, &who).await;
        let mut want: Vec<(String, bool)> = Vec::new();
        for (verb, allowed) in [("PING", true), ("INFO", true), ("STATS", false)] {
            want.extend(all(verb).into_iter().map(|s| (s, allowed)));
        }
        assert_eq!(verdicts(&lines), want, "{who}: {lines:#?}");
        for line in lines.iter().filter(|l| l["ok"] == false) {
            let refused = line["refused"].as_str().unwrap().to_lowercase();
            assert!(
                refused.contains("permissions violation for publish"),
                "{line}"
            );
            assert!(
                line["seconds"].as_f64().unwrap() < 2.0,
                "not at once: {line}"
            );
        }
    }

    // A spoke: nothing at all.
    let spoke = Identity::Spoke(ClusterName::new("c1")?);
    let run = {
        let child = fleet
            .example(&spoke, &spoke_tls, "discover.py", &[])?
            .spawn()?;
        fleetbus_tests::python::wait(child, RUN).await?
    };
    assert!(run.ok, "{}", run.stderr);
    let lines = run.json_lines()?;
    assert_eq!(
        verdicts(&lines),
        [
            "$SRV.PING",
            "$SRV.PING.fleetbus-hub",
            "$SRV.INFO",
            "$SRV.INFO.fleetbus-hub",
            "$SRV.STATS",
            "$SRV.STATS.fleetbus-hub"
        ]
        .map(|s| (s.to_owned(), false))
        .to_vec(),
        "{lines:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_documented_error_at_once_and_the_hub_carries_on() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let run = fleet
        .run_example(&user("bob"), "bad_input.py", &[], RUN)
        .await?;
    assert!(run.ok, "{}", run.stderr);
    let lines = run.json_lines()?;
    let case = |name: &str| lines.iter().find(|l| l["case"] == name).unwrap().clone();
    for line in &lines {
        assert!(
            line["seconds"].as_f64().unwrap() < 2.0,
            "not at once: {line}"
        );
    }
    let malformed = case("malformed-protobuf");
    assert_eq!(
        (malformed["error"].as_str(), malformed["code"].as_i64()),
        (Some("ServiceError"), Some(400))
    );
    assert!(
        malformed["message"]
            .as_str()
            .unwrap()
            .contains("undecodable ListClustersRequest"),
        "{malformed}"
    );
    assert_eq!(case("unknown-endpoint")["error"], "NoResponders");
    let wrong = case("wrong-inbox-prefix");
    assert_eq!(wrong["error"], "Refused", "{wrong}");
    assert!(
        wrong["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("permissions violation for subscription"),
        "{wrong}"
    );
    let oversized = case("oversized-payload");
    assert_eq!(oversized["error"], "FleetError", "{oversized}");
    assert!(
        oversized["message"]
            .as_str()
            .unwrap()
            .contains("max_payload"),
        "{oversized}"
    );
    let garbage = case("large-garbage");
    assert_eq!(garbage["code"], 400, "{garbage}");
    assert_eq!(case("hub-still-answers")["ok"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_endpoint_answers_a_python_client() -> anyhow::Result<()> {
    let (fleet, _kube, _spoke) = fleetbus_tests::works::one_cluster("cluster1").await?;
    fleetbus_tests::works::create_work(
        &fleet,
        "cm",
        "cluster1",
        &fleetbus_tests::works::config_map("from-python", "x"),
        &["--wait"],
    )
    .await?;
    fleet
        .cli(&["create", "msa", "dep", "--cluster", "cluster1"])
        .await?;
    fleet.reported_token("dep", "cluster1").await?;
    fleet
        .cli(&["grant", "bob", "--cluster", "cluster1", "--msa", "dep"])
        .await?;
    let names = ["--cluster", "cluster1", "--msa", "dep", "--work", "cm"];

    // The admin: every read endpoint the service advertises, each answering its reply type.
    let run = fleet
        .run_example(&user("admin"), "read_endpoints.py", &names, RUN)
        .await?;
    assert!(run.ok, "{}", run.stderr);
    let lines = run.json_lines()?;
    let mut called: Vec<String> = lines
        .iter()
        .map(|l| l["endpoint"].as_str().unwrap().to_owned())
        .collect();
    called.sort();
    let mut reads: Vec<String> = ApiEndpoint::ALL
        .iter()
        .filter(|e| e.read_only())
        .map(|e| format!("{}.{}", e.tokens().0, e.tokens().1))
        .collect();
    reads.sort();
    assert_eq!(called, reads);
    let body = |endpoint: &str| {
        let line = lines.iter().find(|l| l["endpoint"] == endpoint).unwrap();
        assert_eq!(line["ok"], true, "{line}");
        line["body"].clone()
    };
    assert_eq!(body("identity.get")["admin"], true);
    assert_eq!(body("clusters.list")["items"][0]["name"], "cluster1");
    assert_eq!(body("msa.list")["items"][0]["name"], "dep");
    assert!(body("token.get")["token"].as_str().unwrap().len() > 20);
    assert_eq!(body("grants.list")["items"][0]["user"], "bob");
    let kinds: Vec<Value> = body("credentials.list")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].clone())
        .collect();
    assert!(kinds.contains(&"spoke-certificate".into()) && kinds.contains(&"msa-token".into()));
    assert_eq!(body("work.get")["name"], "cm");
    assert_eq!(body("work.list")["items"][0]["name"], "cm");

    // A granted user: what users may read, and the hub's 403 for the rest, at once.
    let run = fleet
        .run_example(&user("bob"), "read_endpoints.py", &names, RUN)
        .await?;
    assert!(run.ok, "{}", run.stderr);
    for line in run.json_lines()? {
        let endpoint = line["endpoint"].as_str().unwrap();
        let open = ["identity.get", "clusters.list", "token.get"].contains(&endpoint);
        assert_eq!(line["ok"], open, "{line}");
        if !open {
            assert_eq!(line["code"], 403, "{line}");
            assert_eq!(line["error"], "user bob is not a hub admin");
        }
    }

    // The focused examples: clusters page by page, and a work's status.
    let run = fleet
        .run_example(&user("bob"), "list_clusters.py", &["--page-size", "1"], RUN)
        .await?;
    assert!(run.ok, "{}", run.stderr);
    let clusters = run.json_lines()?;
    assert_eq!(clusters.len(), 1);
    assert_eq!(
        (&clusters[0]["name"], &clusters[0]["available"]),
        (&Value::from("cluster1"), &Value::from("True"))
    );
    let run = fleet
        .run_example(
            &user("admin"),
            "work_status.py",
            &["--cluster", "cluster1", "cm"],
            RUN,
        )
        .await?;
    assert!(run.ok, "{}", run.stderr);
    let status = &run.json_lines()?[0];
    assert_eq!(status["conditions"]["Applied"], "True", "{status}");
    assert_eq!(status["observed_generation"], 1);
    Ok(())
}

/// docs/nats-clients.md is the contract as client authors read it: every endpoint with its
/// subject and types, and every API call's audit type, must be in it as the code has them.
#[test]
fn the_client_guide_names_every_endpoint_and_event_type() {
    use fleetbus_schema::{AuditorEndpoint, Subjects};
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/nats-clients.md"
    ))
    .unwrap();
    let s = Subjects::default();
    let short = |t: String| t.trim_start_matches("fleetbus.v1.").to_owned();
    let mut rows = Vec::new();
    for e in ApiEndpoint::ALL {
        let (resource, verb) = e.tokens();
        let (request, reply) = e.message_types();
        rows.push(format!(
            "| `{resource}.{verb}` | `{}` | `{}` → `{}` |",
            s.api(&UserName::new("alice").unwrap(), e),
            short(request),
            short(reply)
        ));
        let (kind, action) = e.audit_type();
        rows.push(format!(
            "| `io.fleetbus.{kind}.{action}` | `{resource}.{verb}` |"
        ));
    }
    for e in AuditorEndpoint::ALL {
        let (resource, verb) = e.tokens();
        let (request, reply) = e.message_types();
        rows.push(format!(
            "| `{resource}.{verb}` | `{}` | `{}` → `{}` |",
            s.auditor_api(&UserName::new("audit").unwrap(), e),
            short(request),
            short(reply)
        ));
        rows.push(format!(
            "| `io.fleetbus.durable.{verb}` | `auditor:<name>` |"
        ));
    }
    for row in rows {
        assert!(doc.contains(&row), "docs/nats-clients.md lacks {row}");
    }
}
