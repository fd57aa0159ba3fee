//! The distributed mode as deployed: each service its own process of the suite on
//! its own PostgreSQL schema, connecting as its own database role that has rights
//! on that schema only. A teller's referral still reaches the RM, which proves the
//! services need nothing of each other's tables; a cross-schema SELECT by either
//! role fails, which proves they cannot read them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::collections::BTreeSet;
use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, spawn_process, unique_name, with_token};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

/// One service's database role and schema, made for this test and dropped after.
struct ServiceDatabase {
    role: String,
    schema: String,
}

impl ServiceDatabase {
    async fn create(admin: &DatabaseConnection, service: &str) -> Self {
        let role = unique_name(&format!("role_{service}"));
        let schema = unique_name(service);
        for sql in [
            format!("CREATE ROLE {role} LOGIN"),
            format!("CREATE SCHEMA {schema} AUTHORIZATION {role}"),
        ] {
            admin.execute_unprepared(&sql).await.unwrap();
        }
        Self { role, schema }
    }

    /// The test database's URL with this service's role as the user (trust auth on
    /// 127.0.0.1, as on the development machines and CI).
    fn url(&self) -> String {
        let admin_url = crm_testkit::postgres_url();
        let (scheme, rest) = admin_url.split_once("://").unwrap();
        let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{}@{host_and_db}", self.role)
    }

    async fn drop(self, admin: &DatabaseConnection) {
        for sql in [
            format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
            format!("DROP ROLE IF EXISTS {}", self.role),
        ] {
            admin.execute_unprepared(&sql).await.unwrap();
        }
    }

    async fn tables(&self, admin: &DatabaseConnection) -> BTreeSet<String> {
        admin
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                [self.schema.clone().into()],
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).unwrap())
            .collect()
    }
}

/// One service of the suite in its own process-like app: its own role, schema and
/// database pool, the queue prefix shared with the other services.
async fn spawn_service(service: &str, database: &ServiceDatabase, queue_prefix: &str) -> TestApp {
    let mut settings = crm_runtime::Settings::for_local_app(
        database.url(),
        Some(database.schema.clone()),
        Some(crm_testkit::amqp_url()),
        queue_prefix.to_owned(),
        crm_testkit::TEST_JWT_SECRET.to_owned(),
    )
    .unwrap();
    settings.services = vec![service.to_owned()];
    spawn_process(Backend::Distributed, settings).await
}

async fn seed_bank(clients: &TestApp, referrals: &TestApp) {
    let system = clients.token("SYS-TEST", Role::System, "B-001");
    let mut directory = clients.directory();
    directory
        .upsert_branch(with_token(
            &system,
            pb::UpsertBranchRequest {
                branch: Some(pb::Branch {
                    branch_id: "B-001".into(),
                    name: "Branch B-001".into(),
                    city: "Shanghai".into(),
                    time_zone: String::new(),
                }),
            },
        ))
        .await
        .unwrap();
    for (staff_id, role) in [
        ("B-001-M", pb::StaffRole::BranchManager),
        ("B-001-RM-1", pb::StaffRole::Rm),
        ("B-001-RM-2", pb::StaffRole::Rm),
        ("B-001-T-1", pb::StaffRole::Teller),
    ] {
        directory
            .upsert_staff(with_token(
                &system,
                pb::UpsertStaffRequest {
                    staff: Some(pb::Staff {
                        staff_id: staff_id.into(),
                        name: format!("Staff {staff_id}"),
                        role: role as i32,
                        branch_id: "B-001".into(),
                        active: true,
                        capacity: 100,
                        out_of_office_until: None,
                    }),
                },
            ))
            .await
            .unwrap();
    }
    let mut book = clients.clients();
    book.upsert_client(with_token(
        &system,
        pb::UpsertClientRequest {
            client: Some(pb::Client {
                client_id: "C-000001".into(),
                full_name: "Client One".into(),
                national_id: "110101198001011234".into(),
                phone: "13812345678".into(),
                home_branch_id: "B-001".into(),
                kind: pb::ClientKind::Individual as i32,
                ..Default::default()
            }),
        },
    ))
    .await
    .unwrap();
    book.assign_coverage(with_token(
        &system,
        pb::AssignCoverageRequest {
            client_id: "C-000001".into(),
            primary_rm_id: "B-001-RM-2".into(),
            reason: "test".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    // The referrals service hears of all of it through RabbitMQ, never by reading
    // the clients service's tables.
    let wait = Duration::from_secs(15);
    referrals
        .wait_for_count(
            "SELECT COUNT(*) FROM routing_staff WHERE branch_id = 'B-001' AND role IN ('rm','branch_manager')",
            3,
            wait,
        )
        .await;
    referrals
        .wait_for_count(
            "SELECT COUNT(*) FROM routing_clients WHERE client_id = 'C-000001' AND primary_rm_id = 'B-001-RM-2'",
            1,
            wait,
        )
        .await;
}

async fn cross_schema_select(url: &str, table: &str) -> Result<(), sea_orm::DbErr> {
    let connection = Database::connect(url).await?;
    let result = connection
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT COUNT(*) FROM {table}"),
        ))
        .await
        .map(drop);
    connection.close().await.ok();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_runs_on_its_own_schema_as_its_own_role_and_the_referral_flow_crosses_them() {
    crm_testkit::install_for_tests();
    let admin = Database::connect(crm_testkit::postgres_url())
        .await
        .expect("PostgreSQL on 127.0.0.1 (`make services`)");
    let clients_db = ServiceDatabase::create(&admin, "clients").await;
    let referrals_db = ServiceDatabase::create(&admin, "referrals").await;
    let queue_prefix = format!("{}.", unique_name("q"));
    let clients = spawn_service("clients", &clients_db, &queue_prefix).await;
    let referrals = spawn_service("referrals", &referrals_db, &queue_prefix).await;

    seed_bank(&clients, &referrals).await;
    let teller = referrals.token("B-001-T-1", Role::Teller, "B-001");
    let created = referrals
        .referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: "k-1".into(),
                client_id: "C-000001".into(),
                need: pb::Need::WealthManagement as i32,
                priority: pb::Priority::High as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap();
    assert_eq!(created.assigned_rm_id, "B-001-RM-2");
    assert_eq!(created.routing_reason, "primary RM of client");
    let rm = referrals.token("B-001-RM-2", Role::Rm, "B-001");
    let queue = referrals
        .referrals()
        .list_work_items(with_token(&rm, pb::ListWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queue.work_items.len(), 1);
    assert_eq!(queue.work_items[0].source_id, created.referral_id);
    // Served by the service that owns it, not by the other.
    let wrong_door = clients
        .referrals()
        .get_referral(with_token(
            &rm,
            pb::GetReferralRequest {
                referral_id: created.referral_id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong_door.code(), tonic::Code::Unimplemented);

    // Each schema holds its own service's tables, the messaging tables and its
    // jobs' runs and leases only.
    let shared: BTreeSet<String> = [
        "outbox",
        "inbox",
        "job_runs",
        "job_leases",
        "seaql_migrations",
    ]
    .map(str::to_owned)
    .into();
    let clients_tables = clients_db.tables(&admin).await;
    let referrals_tables = referrals_db.tables(&admin).await;
    assert!(clients_tables.contains("clients") && clients_tables.contains("staff"));
    assert!(referrals_tables.contains("referrals") && referrals_tables.contains("work_items"));
    let in_both: BTreeSet<_> = clients_tables
        .intersection(&referrals_tables)
        .cloned()
        .collect();
    assert_eq!(
        in_both, shared,
        "only the messaging and job tables are in both schemas"
    );

    // And neither role can read the other's.
    let denied = cross_schema_select(
        &referrals_db.url(),
        &format!("{}.clients", clients_db.schema),
    )
    .await
    .expect_err("the referrals role reads the clients service's table");
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    let denied = cross_schema_select(
        &clients_db.url(),
        &format!("{}.referrals", referrals_db.schema),
    )
    .await
    .expect_err("the clients role reads the referrals service's table");
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    // The control: each role reads its own.
    cross_schema_select(&clients_db.url(), &format!("{}.clients", clients_db.schema))
        .await
        .unwrap();

    clients.stop().await;
    referrals.stop().await;
    clients_db.drop(&admin).await;
    referrals_db.drop(&admin).await;
}

/// One service's process on a database every service was migrated into (a file of
/// the embedded default, a schema an older `crm migrate` filled): the others'
/// migrations are simply not its own, and it starts.
#[tokio::test]
async fn a_process_mounting_one_service_starts_on_a_database_that_holds_them_all() {
    crm_testkit::install_for_tests();
    let folder = std::env::temp_dir().join(unique_name("sqlite"));
    std::fs::create_dir_all(&folder).unwrap();
    let url = format!("sqlite://{}?mode=rwc", folder.join("crm.db").display());
    let db = crm_store::connect(&url, None).await.unwrap();
    crm_runtime::migrate(&db, crm::MODULES).await.unwrap();
    let referrals_only = crm_runtime::select(crm::MODULES, &["referrals".to_owned()]).unwrap();
    crm_runtime::migrate(&db, &referrals_only).await.unwrap();
    db.close().await.unwrap();
    std::fs::remove_dir_all(&folder).ok();
}

/// Without RabbitMQ the services talk over an in-process bus: a process running
/// only some of them would silently lose every message to or from the others.
#[tokio::test]
async fn one_service_alone_without_a_broker_refuses_to_start() {
    crm_testkit::install_for_tests();
    let folder = std::env::temp_dir().join(unique_name("sqlite"));
    std::fs::create_dir_all(&folder).unwrap();
    let url = format!("sqlite://{}?mode=rwc", folder.join("crm.db").display());
    let mut settings = crm_runtime::Settings::for_local_app(
        url,
        None,
        None,
        String::new(),
        crm_testkit::TEST_JWT_SECRET.to_owned(),
    )
    .unwrap();
    settings.services = vec!["referrals".to_owned()];
    let sections = crm_runtime::ModuleSettings::defaults(crm::MODULES).unwrap();
    let refused = crm_runtime::App::build(
        &settings,
        &sections,
        crm::MODULES,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .err()
    .expect("a lone service without CRM_AMQP_URL must not start");
    assert!(refused.to_string().contains("CRM_AMQP_URL"), "{refused}");
    assert!(
        !folder.join("crm.db").exists(),
        "refused before anything was opened"
    );
    std::fs::remove_dir_all(&folder).ok();
}
