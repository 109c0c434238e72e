//! docker-compose.yml cannot run here (no Docker engine), so its structure is checked instead:
//! the services and volumes it needs, every fleetbus command line parsed by the binaries' own
//! flag parsers, and the nats-server config it mounts started for real with a hub behind it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use fleetbus_nats::PkiDir;
use fleetbus_nats::init::InitOptions;
use fleetbus_nats::server::{find_binary, free_port, wait_listening};
use fleetbus_schema::Subjects;
use serde_yaml::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn compose() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap())
        .unwrap()
}

/// The fleetbus invocations in a service's command (a list, or `sh -c` with a script).
fn invocations(service: &Value) -> Vec<Vec<String>> {
    let Some(command) = service.get("command").and_then(Value::as_sequence) else {
        return Vec::new();
    };
    let words: Vec<String> = command
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect();
    let words = if words.first().map(String::as_str) == Some("sh") {
        shell_words::split(&words[2]).unwrap()
    } else {
        words
    };
    let mut found = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for word in words {
        let (word, ends) = match word.strip_suffix(';') {
            Some(w) => (w.to_owned(), true),
            None => (word, false),
        };
        if word.starts_with("fleetbus") && current.is_none() {
            current = Some(vec![word]);
        } else if let Some(c) = current.as_mut() {
            c.push(word);
        }
        if ends && let Some(c) = current.take() {
            found.push(c);
        }
    }
    found.extend(current);
    found
}

#[test]
fn compose_has_the_services_and_the_binaries_accept_its_flags() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    for want in ["pki", "nats", "hub", "k3s-1", "k3s-2", "spoke-1", "spoke-2"] {
        assert!(names.contains(&want), "service {want} missing: {names:?}");
    }
    let declared: Vec<&str> = compose["volumes"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    let mut checked = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        for volume in service
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if let Some(file) = source.strip_prefix("./") {
                assert!(repo().join(file).is_file(), "{name} mounts missing {file}");
            } else {
                assert!(
                    declared.contains(&source),
                    "{name} uses undeclared volume {source}"
                );
            }
        }
        for argv in invocations(service) {
            let parsed = match argv[0].as_str() {
                "fleetbus-hub" => fleetbus_hub::Args::try_parse_from(&argv).err(),
                "fleetbus-spoke" => fleetbus_spoke::Args::try_parse_from(&argv).err(),
                "fleetbus" => fleetbus_cli::cli::Cli::try_parse_from(&argv).err(),
                other => panic!("{name}: unknown binary {other}"),
            };
            assert!(parsed.is_none(), "{name}: {argv:?}: {}", parsed.unwrap());
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "pki's certs init, the hub and two spokes");
    let spoke = invocations(&services["spoke-1"]).pop().unwrap();
    let config = fleetbus_spoke::Args::try_parse_from(&spoke)
        .unwrap()
        .resolve()
        .unwrap();
    assert_eq!(config.cluster.as_str(), "cluster1");
    assert_eq!(
        config.bootstrap.cert,
        PathBuf::from("/bootstrap/bootstrap.crt")
    );
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_mounted_nats_config_runs_a_fleet() -> anyhow::Result<()> {
    fleetbus_nats::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let pki = PkiDir::new(dir.path().join("pki"));
    pki.init(&InitOptions::default())?;
    std::fs::copy(
        repo().join("nats/nats-server.conf"),
        dir.path().join("nats-server.conf"),
    )?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("nats.log"))?;
    let _server = Server(
        Command::new(find_binary()?)
            .current_dir(dir.path())
            .args([
                "-c",
                "nats-server.conf",
                "-p",
                &port.to_string(),
                "-m",
                &free_port()?.to_string(),
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?,
    );
    wait_listening("127.0.0.1", port, Duration::from_secs(15))?;
    let url = format!("tls://127.0.0.1:{port}");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let hub = tokio::spawn(fleetbus_hub::run(
        fleetbus_hub::Config::new(url.clone(), pki.clone(), Subjects::default()),
        shutdown.clone(),
    ));
    let (cert, key) = pki.user("admin");
    let flags = fleetbus_cli::cli::HubFlags {
        nats_url: url,
        ca: pki.ca_cert(),
        cert,
        key,
        subject_prefix: "fleet".into(),
        timeout: Duration::from_secs(5),
        request_id: None,
        verbose: false,
    };
    let whoami = fleetbus_tests::eventually(
        "the hub behind the compose nats config",
        Duration::from_secs(20),
        || async {
            let client = fleetbus_cli::hub_client::HubClient::connect(&flags)
                .await
                .ok()?;
            let me: fleetbus_schema::v1::WhoAmIReply = client
                .call(
                    fleetbus_schema::ApiEndpoint::WhoAmI,
                    &fleetbus_schema::v1::WhoAmIRequest {},
                )
                .await
                .ok()?;
            Some(me)
        },
    )
    .await?;
    assert_eq!(
        (whoami.identity.as_str(), whoami.admin),
        ("user:admin", true)
    );
    shutdown.cancel();
    hub.await??;
    Ok(())
}

#[test]
fn the_cluster_configs_are_valid_for_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let pki = PkiDir::new(dir.path().join("pki"));
    let names: Vec<String> = (1..=3).map(|i| format!("nats-{i}")).collect();
    pki.init(&InitOptions {
        server_names: names,
        ..InitOptions::default()
    })
    .unwrap();
    for i in 1..=3 {
        let file = format!("nats-{i}.conf");
        std::fs::copy(
            repo().join("nats/cluster").join(&file),
            dir.path().join(&file),
        )
        .unwrap();
        let out = Command::new(find_binary().unwrap())
            .current_dir(dir.path())
            .args(["-c", &file, "-t"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{file}: {text}");
    }
}
