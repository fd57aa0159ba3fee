//! No container engine runs on the development machines, so the compose file is
//! checked here: it parses, and its services match the binaries the workspace builds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::collections::BTreeSet;

fn workspace_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `[[bin]]` names of the per-service crates.
fn service_binaries() -> BTreeSet<String> {
    ["clients", "referrals", "events", "campaigns"]
        .iter()
        .flat_map(|service| {
            let manifest: String = workspace_file(&format!("services/{service}/Cargo.toml"));
            manifest
                .split("[[bin]]")
                .skip(1)
                .filter_map(|section| {
                    section.lines().find_map(|line| {
                        line.trim()
                            .strip_prefix("name = ")
                            .map(|n| n.trim_matches('"').to_owned())
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn compose_runs_every_service_binary_with_its_dependencies_and_health_checks() {
    let mut compose: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&workspace_file("deploy/compose.yaml")).unwrap();
    // Services share settings through YAML anchors and merge keys, as compose does.
    compose.apply_merge().unwrap();
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    for infrastructure in ["postgres", "rabbitmq", "otel-collector", "jaeger"] {
        assert!(
            names.contains(infrastructure),
            "compose lacks {infrastructure}"
        );
    }
    let binaries = service_binaries();
    assert_eq!(binaries.len(), 4, "one binary per service: {binaries:?}");
    for binary in &binaries {
        let service = &compose["services"][binary.as_str()];
        assert!(
            !service.is_null(),
            "compose lacks a service for binary {binary}"
        );
        assert_eq!(
            service["command"][0].as_str(),
            Some(binary.as_str()),
            "{binary} runs its own binary"
        );
        assert!(
            !service["healthcheck"].is_null(),
            "{binary} has a health check"
        );
        let env = &service["environment"];
        for key in [
            "CRM_DATABASE_URL",
            "CRM_AMQP_URL",
            "CRM_JWT_SECRET",
            "CRM_PII_KEY",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "CRM_DATABASE_SCHEMA",
        ] {
            assert!(!env[key].is_null(), "{binary} sets {key}");
        }
        let depends = service["depends_on"].as_mapping().expect("depends_on");
        for dependency in ["postgres", "rabbitmq"] {
            assert!(
                depends.keys().any(|k| k.as_str() == Some(dependency)),
                "{binary} waits for {dependency}"
            );
        }
    }
    for infrastructure in ["postgres", "rabbitmq"] {
        assert!(
            !compose["services"][infrastructure]["healthcheck"].is_null(),
            "{infrastructure} has a health check"
        );
    }
}
