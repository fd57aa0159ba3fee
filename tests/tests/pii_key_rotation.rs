//! Rotating CRM_PII_KEY: the suite restarts with a new key and the old one among
//! CRM_PII_PREVIOUS_KEYS. New data is sealed under the new key; what the old key
//! sealed still opens; phone search, duplicate detection and walk-in linking still
//! find rows sealed under the old key; `crm jobs reseal-client-pii` and
//! `reseal-referral-pii` seal the old rows again, after which the old key can go.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_store::Vault;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_process, unique_name, with_token};
use secrecy::SecretString;

/// One store the app is restarted over, with the keys of each start.
struct Store {
    backend: Backend,
    database_url: String,
    schema: Option<String>,
    folder: Option<std::path::PathBuf>,
    queue_prefix: String,
}

impl Store {
    fn new(backend: Backend) -> Store {
        let queue_prefix = format!("{}.", unique_name("q"));
        match backend {
            Backend::Distributed => Store {
                backend,
                database_url: crm_testkit::postgres_url(),
                schema: Some(unique_name("db")),
                folder: None,
                queue_prefix,
            },
            Backend::Embedded => {
                let folder = std::env::temp_dir().join(unique_name("sqlite"));
                std::fs::create_dir_all(&folder).unwrap();
                Store {
                    backend,
                    database_url: format!("sqlite://{}?mode=rwc", folder.join("crm.db").display()),
                    schema: None,
                    folder: Some(folder),
                    queue_prefix,
                }
            }
        }
    }

    async fn start(&self, key: &SecretString, previous: &[SecretString]) -> TestApp {
        let mut settings = crm_runtime::Settings::for_local_app(
            self.database_url.clone(),
            self.schema.clone(),
            (self.backend == Backend::Distributed).then(crm_testkit::amqp_url),
            self.queue_prefix.clone(),
            crm_testkit::TEST_JWT_SECRET.to_owned(),
        )
        .unwrap();
        settings.pii_key = Some(key.clone());
        settings.pii_previous_keys = previous.to_vec();
        spawn_process(self.backend, settings).await
    }

    async fn remove(self) {
        if let Some(schema) = &self.schema {
            crm_store::db::drop_schema(&crm_testkit::postgres_url(), schema)
                .await
                .ok();
        }
        if let Some(folder) = &self.folder {
            std::fs::remove_dir_all(folder).ok();
        }
    }
}

const CLIENT_PHONE: &str = "13812345678";
const WALK_IN_PHONE: &str = "13900001111";

fn walk_in(key: &str) -> pb::CreateReferralRequest {
    pb::CreateReferralRequest {
        idempotency_key: key.into(),
        prospect: Some(pb::Prospect {
            full_name: "Walk-in Wang".into(),
            phone: WALK_IN_PHONE.into(),
        }),
        need: pb::Need::WealthManagement as i32,
        priority: pb::Priority::Normal as i32,
        ..Default::default()
    }
}

async fn phone_of(app: &TestApp, client_id: &str) -> String {
    let system = app.token("SYS-TEST", Role::System, "B-001");
    app.clients()
        .get_client(with_token(
            &system,
            pb::GetClientRequest {
                client_id: client_id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap()
        .phone
}

async fn found_by_phone(app: &TestApp, phone: &str) -> Vec<String> {
    let system = app.token("SYS-TEST", Role::System, "B-001");
    app.clients()
        .search_clients(with_token(
            &system,
            pb::SearchClientsRequest {
                phone: phone.into(),
                page_size: 10,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .clients
        .into_iter()
        .map(|client| client.client_id)
        .collect()
}

/// The key id a sealed column names (`v2:<id>:…`).
async fn key_of(app: &TestApp, sql: &str) -> String {
    use sea_orm::ConnectionTrait;
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            sql,
        ))
        .await
        .unwrap()
        .unwrap();
    let sealed: String = row.try_get_by_index(0).unwrap();
    sealed.split(':').take(2).collect::<Vec<_>>().join(":")
}

on_both_backends!(a_rotated_key_keeps_every_row_readable_and_findable);

async fn a_rotated_key_keeps_every_row_readable_and_findable(backend: Backend) {
    let store = Store::new(backend);
    let old_key = Vault::generate_key().unwrap();
    let new_key = Vault::generate_key().unwrap();

    // Before: a client and a walk-in's referral, sealed under the old key.
    let app = store.start(&old_key, &[]).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let first = app
        .referrals()
        .create_referral(with_token(&teller, walk_in("walk-in-1")))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap();
    let old_client_key = key_of(
        &app,
        "SELECT phone FROM clients WHERE client_id = 'C-000001'",
    )
    .await;
    app.stop().await;

    // Rotated: the new key seals, the old one is among the previous keys.
    let app = store.start(&new_key, std::slice::from_ref(&old_key)).await;
    assert!(
        phone_of(&app, "C-000001").await.ends_with("5678"),
        "what the old key sealed opens"
    );
    assert_eq!(
        found_by_phone(&app, CLIENT_PHONE).await,
        ["C-000001"],
        "phone search finds a client hashed under the old key"
    );
    let again = app
        .referrals()
        .create_referral(with_token(&teller, walk_in("walk-in-2")))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap();
    assert_eq!(
        again.duplicate_of, first.referral_id,
        "the walk-in's open referral from before the rotation is the duplicate"
    );
    // The walk-in becomes a client: their referral from before the rotation is
    // linked to them.
    let system = app.token("SYS-TEST", Role::System, "B-001");
    app.clients()
        .upsert_client(with_token(
            &system,
            pb::UpsertClientRequest {
                client: Some(pb::Client {
                    client_id: "C-000002".into(),
                    full_name: "Walk-in Wang".into(),
                    national_id: "110101198001015678".into(),
                    phone: WALK_IN_PHONE.into(),
                    home_branch_id: "B-001".into(),
                    kind: pb::ClientKind::Individual as i32,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap();
    app.wait_for_count(
        &format!(
            "SELECT COUNT(*) FROM referrals WHERE referral_id = '{}' AND client_id = 'C-000002'",
            first.referral_id
        ),
        1,
        Duration::from_secs(10),
    )
    .await;
    let new_client_key = key_of(
        &app,
        "SELECT phone FROM clients WHERE client_id = 'C-000002'",
    )
    .await;
    assert_ne!(
        new_client_key, old_client_key,
        "new data is sealed under the new key"
    );

    // Sealed again under the new key; a second run has nothing left to do.
    let clients = app.run_job("reseal-client-pii", &[]).await.unwrap();
    assert!(clients.contains("1 of 2 clients"), "{clients}");
    let referrals = app.run_job("reseal-referral-pii", &[]).await.unwrap();
    assert!(referrals.contains("1 of 1 walk-in"), "{referrals}");
    let clients = app.run_job("reseal-client-pii", &[]).await.unwrap();
    assert!(clients.contains("0 of 2 clients"), "{clients}");
    assert_eq!(
        key_of(
            &app,
            "SELECT phone FROM clients WHERE client_id = 'C-000001'"
        )
        .await,
        new_client_key
    );
    app.stop().await;

    // The old key gone: everything still opens and is found.
    let app = store.start(&new_key, &[]).await;
    assert!(phone_of(&app, "C-000001").await.ends_with("5678"));
    assert_eq!(found_by_phone(&app, CLIENT_PHONE).await, ["C-000001"]);
    assert_eq!(found_by_phone(&app, WALK_IN_PHONE).await, ["C-000002"]);
    let referral = app.get_referral(&first.referral_id).await;
    assert_eq!(referral.client_id, "C-000002");
    app.stop().await;
    store.remove().await;
}
