//! deploy/k8s, checked offline as `make test` can: the base and each overlay
//! rendered as kustomize would (resources, patches, images, replicas, namespace:
//! what these manifests use), every resource validated against the Kubernetes
//! schemas by `kubernetes-validate --strict` (the Makefile installs it), and what a
//! platform team relies on checked by name: a Deployment per service of the suite
//! running the real binary, probes, disruption budgets, non-root read-only pods,
//! Secrets referenced and never held, the data clusters at three.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

fn k8s(folder: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/k8s")
        .join(folder)
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap())
        .filter(|document| !document.is_null())
        .collect()
}

use serde::Deserialize as _;

/// A strategic merge as kustomize does it for these patches: maps merge, `null`
/// deletes, lists of named items (containers, env, volumes) merge by name, other
/// values are replaced.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Mapping(base), Value::Mapping(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    base.remove(key);
                } else if let Some(existing) = base.get_mut(key) {
                    merge(existing, value);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (Value::Sequence(base), Value::Sequence(patch))
            if patch.iter().all(|item| item["name"].is_string()) =>
        {
            for item in patch {
                match base.iter_mut().find(|known| known["name"] == item["name"]) {
                    Some(known) => merge(known, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

fn kind_and_name(document: &Value) -> (String, String) {
    (
        document["kind"].as_str().unwrap_or_default().to_owned(),
        document["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Every `image:` under `value`, to be rewritten by the overlay's `images`.
fn rewrite_images(value: &mut Value, name: &str, replacement: &str) {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map.iter_mut() {
                let is_image = key.as_str() == Some("image");
                match child {
                    Value::String(image)
                        if is_image
                            && (image == name || image.starts_with(&format!("{name}:"))) =>
                    {
                        *image = replacement.to_owned();
                    }
                    _ => rewrite_images(child, name, replacement),
                }
            }
        }
        Value::Sequence(items) => items
            .iter_mut()
            .for_each(|item| rewrite_images(item, name, replacement)),
        _ => {}
    }
}

/// The resources of the kustomization in `folder`, as `kustomize build` gives them.
fn render(folder: &Path) -> Vec<Value> {
    let kustomization = &documents(&folder.join("kustomization.yaml"))[0];
    let mut rendered = Vec::new();
    for resource in kustomization["resources"].as_sequence().unwrap() {
        let path = folder.join(resource.as_str().unwrap());
        if path.is_dir() {
            rendered.extend(render(&path));
        } else {
            rendered.extend(documents(&path));
        }
    }
    for patch in kustomization["patches"].as_sequence().into_iter().flatten() {
        let path = folder.join(patch["path"].as_str().unwrap());
        for change in documents(&path) {
            let target = kind_and_name(&change);
            let found = rendered
                .iter_mut()
                .find(|document| kind_and_name(document) == target)
                .unwrap_or_else(|| {
                    panic!("{}: patches {target:?}, which is not there", path.display())
                });
            merge(found, &change);
        }
    }
    for replicas in kustomization["replicas"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let name = replicas["name"].as_str().unwrap();
        let found = rendered
            .iter_mut()
            .find(|document| document["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("replicas for {name}, which is not there"));
        found["spec"]["replicas"] = replicas["count"].clone();
    }
    for image in kustomization["images"].as_sequence().into_iter().flatten() {
        let name = image["name"].as_str().unwrap();
        let replacement = format!(
            "{}:{}",
            image["newName"].as_str().unwrap_or(name),
            image["newTag"].as_str().unwrap_or("latest")
        );
        rendered
            .iter_mut()
            .for_each(|document| rewrite_images(document, name, &replacement));
    }
    for pairs in kustomization["labels"].as_sequence().into_iter().flatten() {
        for document in &mut rendered {
            let metadata = document["metadata"].as_mapping_mut().unwrap();
            let labels = metadata
                .entry("labels".into())
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            merge(labels, &pairs["pairs"]);
        }
    }
    if let Some(namespace) = kustomization["namespace"].as_str() {
        for document in &mut rendered {
            document["metadata"]["namespace"] = Value::from(namespace);
        }
    }
    rendered
}

/// Kinds the operators define: the Kubernetes schemas don't know them.
const OPERATOR_KINDS: [&str; 5] = [
    "RabbitmqCluster",
    "Cluster",
    "ScheduledBackup",
    "PrometheusRule",
    "PodMonitor",
];

fn validator() -> PathBuf {
    std::env::var_os("CRM_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/tools/venv/bin/kubernetes-validate")
        })
}

#[test]
fn every_manifest_renders_and_validates_against_the_kubernetes_schemas() {
    let validator = validator();
    assert!(
        validator.exists(),
        "{} is missing: `make tools` installs it (make test does)",
        validator.display()
    );
    for variant in ["base", "overlays/dev", "overlays/production"] {
        let rendered = render(&k8s(variant));
        let folder = std::env::temp_dir().join(crm_testkit::unique_name("k8s"));
        std::fs::create_dir_all(&folder).unwrap();
        let mut files = Vec::new();
        for (index, document) in rendered.iter().enumerate() {
            let (kind, name) = kind_and_name(document);
            assert!(
                !kind.is_empty() && !name.is_empty(),
                "{variant}: {document:?}"
            );
            assert_ne!(
                kind, "Secret",
                "{variant}: a Secret's values are never in the manifests"
            );
            let file = folder.join(format!("{index:03}-{kind}-{name}.yaml"));
            std::fs::write(&file, serde_yaml_ng::to_string(document).unwrap()).unwrap();
            files.push(file);
        }
        let output = std::process::Command::new(&validator)
            .arg("--strict")
            .args(&files)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        std::fs::remove_dir_all(&folder).ok();
        assert!(output.status.success(), "{variant}:\n{said}");
        for line in said.lines().filter(|line| line.starts_with("WARN")) {
            assert!(
                OPERATOR_KINDS
                    .iter()
                    .any(|kind| line.contains(&format!("kind {kind} "))),
                "{variant}: {line}"
            );
        }
        let validated = said.lines().filter(|line| line.starts_with("INFO")).count();
        assert!(
            validated >= 20,
            "{variant}: only {validated} resources validated:\n{said}"
        );
    }
}

fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|var| var["name"].as_str() == Some(name))
}

fn of_kind<'a>(rendered: &'a [Value], kind: &str) -> Vec<&'a Value> {
    rendered
        .iter()
        .filter(|document| document["kind"].as_str() == Some(kind))
        .collect()
}

#[test]
fn every_service_has_a_hardened_deployment_of_the_real_binary() {
    let rendered = render(&k8s("base"));
    let binary = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/crm/Cargo.toml"),
    )
    .unwrap();
    assert!(binary.contains("[[bin]]\nname = \"crm\""), "the crm binary");
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile"))
            .unwrap();
    assert!(dockerfile.contains("cargo build --release --locked -p crm"));
    assert!(
        dockerfile.contains("USER 65532"),
        "the image runs as a non-root user"
    );

    let deployments = of_kind(&rendered, "Deployment");
    let mut services_run = Vec::new();
    for deployment in &deployments {
        let (_, name) = kind_and_name(deployment);
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let command: Vec<&str> = container["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(command, ["crm", "serve"], "{name}");
        let service = env_of(container, "CRM_SERVICES").unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            crm::MODULES.iter().any(|module| module.name() == service),
            "{name} runs {service}, which is no service of the suite"
        );
        assert_eq!(name, format!("crm-{service}"));
        assert!(
            deployment["spec"]["replicas"].as_u64().unwrap() >= 2,
            "{name}"
        );
        assert!(
            !container["readinessProbe"]["grpc"].is_null(),
            "{name}: gRPC readiness"
        );
        assert!(!container["livenessProbe"].is_null(), "{name}: liveness");
        assert!(container["resources"]["requests"].is_mapping(), "{name}");
        assert!(
            container["resources"]["limits"]["memory"].is_string(),
            "{name}"
        );
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"],
            Value::from(true),
            "{name}"
        );
        assert_eq!(
            container["securityContext"]["readOnlyRootFilesystem"],
            Value::from(true),
            "{name}"
        );
        // Secrets only by reference.
        for secret in ["CRM_DATABASE_URL", "CRM_AMQP_URL", "CRM_PII_KEY"] {
            let var = env_of(container, secret).unwrap_or_else(|| panic!("{name} lacks {secret}"));
            assert!(
                var["value"].is_null(),
                "{name}: {secret} has a value in the manifest"
            );
            assert!(
                var["valueFrom"]["secretKeyRef"].is_mapping(),
                "{name}: {secret}"
            );
        }
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        for kind in ["Service", "PodDisruptionBudget"] {
            let found = of_kind(&rendered, kind).into_iter().any(|other| {
                other["metadata"]["name"].as_str() == Some(&name)
                    && (other["spec"]["selector"] == *selector
                        || other["spec"]["selector"]["matchLabels"] == *selector)
            });
            assert!(found, "{name} has no {kind} selecting its pods");
        }
        services_run.push(service);
    }
    services_run.sort();
    let mut suite: Vec<String> = crm::MODULES.iter().map(|m| m.name().to_owned()).collect();
    suite.sort();
    assert_eq!(services_run, suite, "a Deployment per service of the suite");

    // Migrations once per release: a Job running `crm migrate` for every service.
    let migrate = of_kind(&rendered, "Job")
        .into_iter()
        .find(|job| job["metadata"]["name"].as_str() == Some("crm-migrate"))
        .expect("the migrations Job");
    let migrated: Vec<&str> = migrate["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|container| {
            assert_eq!(container["command"], Value::from(vec!["crm", "migrate"]));
            env_of(container, "CRM_SERVICES").unwrap()["value"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(migrated.len(), crm::MODULES.len());

    // The data clusters at three, in the base and so in production.
    for variant in ["base", "overlays/production"] {
        let rendered = render(&k8s(variant));
        let rabbit = &of_kind(&rendered, "RabbitmqCluster")[0];
        assert_eq!(rabbit["spec"]["replicas"].as_u64(), Some(3), "{variant}");
        let postgres = &of_kind(&rendered, "Cluster")[0];
        assert_eq!(postgres["spec"]["instances"].as_u64(), Some(3), "{variant}");
        assert!(!of_kind(&rendered, "NetworkPolicy").is_empty(), "{variant}");
        assert!(
            !of_kind(&rendered, "PrometheusRule").is_empty(),
            "{variant}"
        );
    }
}

#[test]
fn production_runs_tls_three_referrals_replicas_and_backups() {
    let rendered = render(&k8s("overlays/production"));
    for deployment in of_kind(&rendered, "Deployment") {
        let (_, name) = kind_and_name(deployment);
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        for setting in [
            "CRM_TLS_CERT",
            "CRM_TLS_KEY",
            "CRM_TLS_CLIENT_CA",
            "CRM_DATABASE_URL",
        ] {
            assert!(
                env_of(container, setting).is_some(),
                "{name} lacks {setting}"
            );
        }
        assert!(
            container["image"].as_str().unwrap().ends_with(":1.0.0"),
            "{name}: the release's image"
        );
        assert_eq!(deployment["metadata"]["namespace"].as_str(), Some("rm-crm"));
        // Kubelet's gRPC probe can't speak TLS: the probe is grpc_health_probe.
        assert!(container["readinessProbe"]["grpc"].is_null(), "{name}");
        assert!(container["readinessProbe"]["exec"].is_mapping(), "{name}");
        if name == "crm-referrals" {
            assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(3));
        }
    }
    assert_eq!(of_kind(&rendered, "ScheduledBackup").len(), 1);
    let postgres = &of_kind(&rendered, "Cluster")[0];
    assert!(postgres["spec"]["backup"]["barmanObjectStore"].is_mapping());
}
