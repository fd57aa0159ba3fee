//! No container engine runs on the development machines, so the compose file is
//! checked here: it parses, and it runs every service of the suite (`crm::MODULES`)
//! in its own container, on its own schema as its own database role.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::collections::BTreeSet;

fn workspace_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn compose_runs_every_service_of_the_suite_with_its_dependencies_and_health_checks() {
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
    let init_sql = workspace_file("deploy/postgres-init.sql");
    for module in crm::MODULES {
        let name = module.name();
        let binary = format!("crm-{name}");
        let service = &compose["services"][binary.as_str()];
        assert!(!service.is_null(), "compose lacks a container for {name}");
        let command: Vec<_> = service["command"]
            .as_sequence()
            .expect("command")
            .iter()
            .filter_map(|part| part.as_str())
            .collect();
        assert_eq!(command, ["crm", "serve"], "{binary} runs `crm serve`");
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
        assert_eq!(
            env["CRM_SERVICES"].as_str(),
            Some(name),
            "{binary} mounts {name}"
        );
        assert_eq!(env["CRM_DATABASE_SCHEMA"].as_str(), Some(name));
        let role = format!("crm_{name}");
        assert!(
            env["CRM_DATABASE_URL"]
                .as_str()
                .is_some_and(|url| url.starts_with(&format!("postgres://{role}:"))),
            "{binary} connects as its own role {role}"
        );
        assert!(
            init_sql.contains(&format!("CREATE SCHEMA {name} AUTHORIZATION {role};")),
            "postgres-init.sql gives {role} its schema"
        );
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

/// Every scheduled `crm jobs` command has a CronJob that runs it on the schedule
/// the job declares, against its own service's schema, one run at a time, in the
/// bank's time zone; maintenance commands have none.
#[test]
fn every_scheduled_job_has_a_cronjob_and_every_cronjob_names_a_job() {
    let folder =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/base/cronjobs");
    let mut manifests = BTreeSet::new();
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml")
            || path.ends_with("kustomization.yaml")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let cronjob: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let file = path.display().to_string();
        assert_eq!(cronjob["kind"].as_str(), Some("CronJob"), "{file}");
        let spec = &cronjob["spec"];
        assert_eq!(spec["concurrencyPolicy"].as_str(), Some("Forbid"), "{file}");
        assert!(
            spec["timeZone"]
                .as_str()
                .is_some_and(|zone| !zone.is_empty()),
            "{file}"
        );
        for limit in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
            assert!(spec[limit].as_u64().is_some(), "{file} sets {limit}");
        }
        let container = &spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        let command: Vec<&str> = container["command"]
            .as_sequence()
            .expect("command")
            .iter()
            .filter_map(|part| part.as_str())
            .collect();
        let ["crm", "jobs", name] = command[..] else {
            panic!("{file} runs {command:?}, not `crm jobs NAME`");
        };
        let (module, job) = crm::MODULES
            .iter()
            .flat_map(|module| {
                module
                    .jobs()
                    .into_iter()
                    .map(move |job| (module.name(), job))
            })
            .find(|(_, job)| job.name == name)
            .unwrap_or_else(|| panic!("{file}: no `crm jobs {name}`"));
        let schedule = job.schedule.unwrap_or_else(|| {
            panic!("{file}: `{name}` is a maintenance command, never scheduled")
        });
        assert_eq!(spec["schedule"].as_str(), Some(schedule), "{file}");
        let schema = container["env"]
            .as_sequence()
            .expect("env")
            .iter()
            .find(|var| var["name"].as_str() == Some("CRM_DATABASE_SCHEMA"))
            .and_then(|var| var["value"].as_str());
        assert_eq!(
            schema,
            Some(module),
            "{file} runs against {module}'s schema"
        );
        manifests.insert(name.to_owned());
    }
    let scheduled: BTreeSet<String> = crm::jobs()
        .into_iter()
        .filter(|job| job.schedule.is_some())
        .map(|job| job.name.to_owned())
        .collect();
    assert_eq!(manifests, scheduled, "one CronJob per scheduled job");
}
