//! Test helpers: the whole suite on port 0 over a fresh PostgreSQL schema and a
//! unique queue prefix on the real RabbitMQ (or over SQLite and the in-process
//! transport), tokens for any role, and a small seeded bank.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support

use std::time::Duration;

use crm_auth::JwtKeys;
use crm_domain::{BranchId, Role, StaffId};
use crm_proto::v1::{
    self as pb, campaign_service_client::CampaignServiceClient,
    client_service_client::ClientServiceClient, directory_service_client::DirectoryServiceClient,
    event_service_client::EventServiceClient, referral_service_client::ReferralServiceClient,
    report_service_client::ReportServiceClient,
};
use crm_store::Db;
use sea_orm::{ConnectionTrait, Statement};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const TEST_JWT_SECRET: &str = "crm-test-secret-0123456789abcdef";

/// Which storage and transport a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Real PostgreSQL and RabbitMQ on 127.0.0.1.
    Distributed,
    /// SQLite and the in-process transport.
    Embedded,
}

pub fn postgres_url() -> String {
    std::env::var("CRM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn amqp_url() -> String {
    std::env::var("CRM_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A unique lowercase name for a schema or queue prefix.
pub fn unique_name(kind: &str) -> String {
    format!("t_{kind}_{}", uuid::Uuid::now_v7().simple())
}

pub struct TestApp {
    pub backend: Backend,
    pub addr: std::net::SocketAddr,
    pub channel: Channel,
    pub db: Db,
    pub queue_prefix: String,
    /// Where `/metrics` answers, when the settings asked for it.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The app's personal-data keys (the re-seal jobs take them).
    pub vault: std::sync::Arc<crm_store::Vault>,
    keys: JwtKeys,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), crm_runtime::AppError>>,
    schema: Option<String>,
    sqlite_folder: Option<std::path::PathBuf>,
}

/// Every service of the suite in one process on `backend`, with a fresh schema (or
/// SQLite file) and queue prefix.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with_sections(backend, &[]).await
}

/// [`spawn_app`] with some services' settings given as flags
/// (`["--campaign-approval-threshold", "3"]`); the rest at their defaults.
pub async fn spawn_app_with_sections(backend: Backend, section_args: &[&str]) -> TestApp {
    spawn_app_with_settings(backend, section_args, |_| {}).await
}

/// [`spawn_app_with_sections`] with the process settings changed by `tweak`
/// (a metrics address, a database URL through a [`CutProxy`]…).
pub async fn spawn_app_with_settings(
    backend: Backend,
    section_args: &[&str],
    tweak: impl FnOnce(&mut crm_runtime::Settings),
) -> TestApp {
    crm_telemetry::init_for_tests();
    let (database_url, schema, sqlite_folder, amqp) = match backend {
        Backend::Distributed => (
            postgres_url(),
            Some(unique_name("db")),
            None,
            Some(amqp_url()),
        ),
        Backend::Embedded => {
            let folder = std::env::temp_dir().join(unique_name("sqlite"));
            std::fs::create_dir_all(&folder).unwrap();
            let url = format!("sqlite://{}?mode=rwc", folder.join("crm.db").display());
            (url, None, Some(folder), None)
        }
    };
    let queue_prefix = format!("{}.", unique_name("q"));
    let settings = crm_runtime::Settings::for_local_app(
        database_url,
        schema.clone(),
        amqp,
        queue_prefix,
        TEST_JWT_SECRET.to_owned(),
    )
    .unwrap();
    let mut settings = settings;
    tweak(&mut settings);
    let sections = crm_runtime::ModuleSettings::parse_from(crm::MODULES, section_args).unwrap();
    let mut app = spawn_process_with_sections(backend, settings, sections).await;
    app.schema = schema;
    app.sqlite_folder = sqlite_folder;
    app
}

/// A process of the suite with exactly these settings (e.g. one service on its own
/// schema, connecting as its own database role, for the distributed mode). The
/// caller owns the schema: [`TestApp::stop`] leaves it in place.
pub async fn spawn_process(backend: Backend, settings: crm_runtime::Settings) -> TestApp {
    let sections = crm_runtime::ModuleSettings::defaults(crm::MODULES).unwrap();
    spawn_process_with_sections(backend, settings, sections).await
}

async fn spawn_process_with_sections(
    backend: Backend,
    settings: crm_runtime::Settings,
    sections: crm_runtime::ModuleSettings,
) -> TestApp {
    crm_telemetry::init_for_tests();
    let shutdown = CancellationToken::new();
    let queue_prefix = settings.queue_prefix.clone();
    let app = crm_runtime::App::build(&settings, &sections, crm::MODULES, shutdown.clone())
        .await
        .expect("the app starts (are PostgreSQL and RabbitMQ running? `make services`)");
    let addr = app.local_addr().unwrap();
    let db = app.infra().db.clone();
    let metrics_addr = app.infra().metrics_addr;
    let vault = app.infra().vault.clone();
    // The test calls as the services call each other: over TLS (with the
    // process's own certificate under mutual TLS) when the server is TLS.
    let client_tls = app.infra().grpc_client_tls.clone();
    let server = tokio::spawn(app.run());
    let scheme = if client_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}")).unwrap();
    if let Some(tls) = client_tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let channel = endpoint.connect().await.unwrap();
    TestApp {
        backend,
        addr,
        channel,
        db,
        queue_prefix,
        metrics_addr,
        vault,
        keys: JwtKeys::hs256(&secrecy::SecretString::from(TEST_JWT_SECRET)).unwrap(),
        shutdown,
        server,
        schema: None,
        sqlite_folder: None,
    }
}

impl TestApp {
    pub fn token(&self, sub: &str, role: Role, branch: &str) -> String {
        self.keys
            .mint(
                &StaffId::parse(sub).unwrap(),
                role,
                &BranchId::parse(branch).unwrap(),
                chrono::Duration::minutes(30),
            )
            .unwrap()
    }

    pub fn expired_token(&self, sub: &str, role: Role, branch: &str) -> String {
        self.keys
            .mint(
                &StaffId::parse(sub).unwrap(),
                role,
                &BranchId::parse(branch).unwrap(),
                chrono::Duration::minutes(-10),
            )
            .unwrap()
    }

    pub fn directory(&self) -> DirectoryServiceClient<Channel> {
        DirectoryServiceClient::new(self.channel.clone())
    }

    /// Another process of the suite over this app's database schema and queues,
    /// running only `services`: a second replica (distributed mode only).
    pub async fn spawn_replica(&self, services: &[&str]) -> TestApp {
        assert_eq!(
            self.backend,
            Backend::Distributed,
            "replicas share PostgreSQL"
        );
        let mut settings = crm_runtime::Settings::for_local_app(
            postgres_url(),
            self.schema.clone(),
            Some(amqp_url()),
            self.queue_prefix.clone(),
            TEST_JWT_SECRET.to_owned(),
        )
        .unwrap();
        settings.services = services
            .iter()
            .map(|service| (*service).to_owned())
            .collect();
        spawn_process(Backend::Distributed, settings).await
    }

    pub fn events(&self) -> EventServiceClient<Channel> {
        EventServiceClient::new(self.channel.clone())
    }

    /// Publishes one message to the app's `feed` exchange as an outside system does:
    /// a plain AMQP client, persistent, with a publisher confirm. Distributed only.
    pub async fn publish_to_feed(
        &self,
        feed: &str,
        content_type: &str,
        message_id: &str,
        body: &[u8],
    ) {
        self.publish_raw(feed, content_type, message_id, body, &[])
            .await;
    }

    /// Publishes one message with `headers` to the app's exchange `exchange` (its
    /// name without the app's prefix), confirmed. Distributed only.
    pub async fn publish_raw(
        &self,
        exchange: &str,
        content_type: &str,
        message_id: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        let connection =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                .await
                .unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut table = lapin::types::FieldTable::default();
        for (name, value) in headers {
            table.insert(
                (*name).into(),
                lapin::types::AMQPValue::LongString(value.as_bytes().to_vec().into()),
            );
        }
        let properties = lapin::BasicProperties::default()
            .with_content_type(content_type.into())
            .with_message_id(message_id.into())
            .with_delivery_mode(2)
            .with_headers(table);
        let confirmation = channel
            .basic_publish(
                format!("{}{exchange}", self.queue_prefix).as_str().into(),
                "corebank.test".into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirmation.is_ack(), "{confirmation:?}");
        let _ = connection.close(200, "published".into()).await;
    }

    /// The app's bus as an operator's tool opens it (`crm dead-letters`).
    pub async fn operator_bus(&self) -> crm_bus::Bus {
        let config = crm_bus::BusConfig {
            amqp_url: (self.backend == Backend::Distributed).then(|| amqp_url().into()),
            amqp_ca_pem: None,
            prefix: self.queue_prefix.clone(),
            ephemeral: true,
            queues: crm_runtime::suite_queues(crm::MODULES),
        };
        crm_bus::Bus::start(&config, CancellationToken::new())
            .await
            .unwrap()
    }

    pub fn clients(&self) -> ClientServiceClient<Channel> {
        ClientServiceClient::new(self.channel.clone())
    }

    /// Runs `crm jobs <name> <args…>` against this app's database, under its
    /// lease and recorded, as the command does.
    pub async fn run_job(
        &self,
        name: &str,
        args: &[&str],
    ) -> Result<String, crm_runtime::ModuleError> {
        crm::run_job(
            self.db.clone(),
            name,
            args,
            crm_runtime::ModuleSettings::defaults(crm::MODULES).unwrap(),
            crm_domain::sla::BusinessCalendar::default(),
            Some(self.vault.clone()),
        )
        .await
    }

    pub fn campaigns(&self) -> CampaignServiceClient<Channel> {
        CampaignServiceClient::new(self.channel.clone())
    }

    pub fn reports(&self) -> ReportServiceClient<Channel> {
        ReportServiceClient::new(self.channel.clone())
    }

    pub fn referrals(&self) -> ReferralServiceClient<Channel> {
        ReferralServiceClient::new(self.channel.clone())
    }

    /// Counts rows with a plain SQL query (tests check what was, or wasn't, written).
    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }

    /// Waits until `sql` counts at least `want` rows (projections fill asynchronously).
    pub async fn wait_for_count(&self, sql: &str, want: i64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let have = self.count(sql).await;
            if have >= want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {timeout:?} for {want} rows of `{sql}`, have {have}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Seeds `branch`: manager `<branch>-M`, RMs `<branch>-RM-1..=rms`, teller
    /// `<branch>-T-1` paired with RM-2, and waits until routing has seen them.
    pub async fn seed_branch(&self, branch: &str, rms: u32) {
        let system = self.token("SYS-TEST", Role::System, branch);
        self.upsert_branch(branch, "").await;
        let mut directory = self.directory();
        let mut staff = vec![
            (format!("{branch}-M"), pb::StaffRole::BranchManager),
            (format!("{branch}-T-1"), pb::StaffRole::Teller),
        ];
        staff.extend((1..=rms).map(|n| (format!("{branch}-RM-{n}"), pb::StaffRole::Rm)));
        for (staff_id, role) in &staff {
            directory
                .upsert_staff(with_token(
                    &system,
                    pb::UpsertStaffRequest {
                        staff: Some(pb::Staff {
                            staff_id: staff_id.clone(),
                            name: format!("Staff {staff_id}"),
                            role: *role as i32,
                            branch_id: branch.into(),
                            active: true,
                            capacity: 1000,
                            out_of_office_until: None,
                        }),
                    },
                ))
                .await
                .unwrap();
        }
        if rms >= 2 {
            directory
                .pair_teller(with_token(
                    &system,
                    pb::PairTellerRequest {
                        teller_id: format!("{branch}-T-1"),
                        rm_id: format!("{branch}-RM-2"),
                        valid_from: None,
                        valid_until: None,
                    },
                ))
                .await
                .unwrap();
        }
        let expected = i64::try_from(staff.len()).unwrap() - 1; // tellers aren't routed to
        self.wait_for_count(
            &format!("SELECT COUNT(*) FROM routing_staff WHERE branch_id = '{branch}' AND role IN ('rm','branch_manager')"),
            expected,
            Duration::from_secs(10),
        )
        .await;
        if rms >= 2 {
            self.wait_for_count(
                &format!("SELECT COUNT(*) FROM routing_pairs WHERE teller_id = '{branch}-T-1'"),
                1,
                Duration::from_secs(10),
            )
            .await;
        }
    }

    /// Adds a teller to `branch` with no paired RM (their walk-ins go to the pool);
    /// returns their token.
    pub async fn seed_unpaired_teller(&self, teller_id: &str, branch: &str) -> String {
        let system = self.token("SYS-TEST", Role::System, branch);
        self.directory()
            .upsert_staff(with_token(
                &system,
                pb::UpsertStaffRequest {
                    staff: Some(pb::Staff {
                        staff_id: teller_id.into(),
                        name: format!("Teller {teller_id}"),
                        role: pb::StaffRole::Teller as i32,
                        branch_id: branch.into(),
                        active: true,
                        ..Default::default()
                    }),
                },
            ))
            .await
            .unwrap();
        self.token(teller_id, Role::Teller, branch)
    }

    /// A client of `branch` covered by `primary_rm`, known to routing on return.
    pub async fn seed_client(&self, client_id: &str, branch: &str, primary_rm: Option<&str>) {
        let system = self.token("SYS-TEST", Role::System, branch);
        let mut clients = self.clients();
        clients
            .upsert_client(with_token(
                &system,
                pb::UpsertClientRequest {
                    client: Some(pb::Client {
                        client_id: client_id.into(),
                        full_name: format!("Client {client_id}"),
                        national_id: "110101198001011234".into(),
                        phone: "13812345678".into(),
                        home_branch_id: branch.into(),
                        kind: pb::ClientKind::Individual as i32,
                        ..Default::default()
                    }),
                },
            ))
            .await
            .unwrap();
        if let Some(rm) = primary_rm {
            clients
                .assign_coverage(with_token(
                    &system,
                    pb::AssignCoverageRequest {
                        client_id: client_id.into(),
                        primary_rm_id: rm.into(),
                        reason: "test".into(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
            self.wait_for_count(
                &format!("SELECT COUNT(*) FROM routing_clients WHERE client_id = '{client_id}' AND primary_rm_id = '{rm}'"),
                1,
                Duration::from_secs(10),
            )
            .await;
        }
    }

    /// UpsertBranch, as the system; an empty time zone is the bank's default.
    pub async fn upsert_branch(&self, branch: &str, time_zone: &str) {
        let system = self.token("SYS-TEST", Role::System, "HQ-001");
        self.directory()
            .upsert_branch(with_token(
                &system,
                pb::UpsertBranchRequest {
                    branch: Some(pb::Branch {
                        branch_id: branch.into(),
                        name: format!("Branch {branch}"),
                        city: "Shanghai".into(),
                        time_zone: time_zone.into(),
                    }),
                },
            ))
            .await
            .unwrap();
    }

    /// Sets up `branch` (if new) with one active person of `role` in it, and
    /// returns at once: routing's copy hears of them when the news arrives.
    /// The app's Prometheus figures now (the settings must have set
    /// `metrics_addr`).
    pub async fn metrics(&self) -> Metrics {
        let addr = self.metrics_addr.expect("the app serves metrics");
        scrape(&format!("http://{addr}/metrics")).await
    }

    /// Waits until `read` of a fresh scrape satisfies `done` (gauges are read
    /// every 2 s, consumers work a moment after the call).
    pub async fn wait_for_metric(
        &self,
        what: &str,
        read: impl Fn(&Metrics) -> f64,
        done: impl Fn(f64) -> bool,
    ) {
        self.wait_for_metric_within(what, read, done, Duration::from_secs(10))
            .await;
    }

    /// [`Self::wait_for_metric`] for figures refreshed less often (the outbox
    /// backlog is counted every fifth health check, about every 10 s).
    pub async fn wait_for_metric_within(
        &self,
        what: &str,
        read: impl Fn(&Metrics) -> f64,
        done: impl Fn(f64) -> bool,
        limit: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let last = read(&self.metrics().await);
            if done(last) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{what} stayed at {last}:\n{}", self.metrics().await.0);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn add_staff(&self, staff_id: &str, role: pb::StaffRole, branch: &str) {
        self.upsert_branch(branch, "").await;
        let system = self.token("SYS-TEST", Role::System, branch);
        self.directory()
            .upsert_staff(with_token(
                &system,
                pb::UpsertStaffRequest {
                    staff: Some(pb::Staff {
                        staff_id: staff_id.into(),
                        name: format!("Staff {staff_id}"),
                        role: role as i32,
                        branch_id: branch.into(),
                        active: true,
                        capacity: 10,
                        out_of_office_until: None,
                    }),
                },
            ))
            .await
            .unwrap();
    }

    /// GetReferral, as the system (which may read every referral whole).
    pub async fn get_referral(&self, referral_id: &str) -> pb::Referral {
        let system = self.token("SYS-CORE", Role::System, "HQ-001");
        self.referrals()
            .get_referral(with_token(
                &system,
                pb::GetReferralRequest {
                    referral_id: referral_id.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .referral
            .unwrap()
    }

    /// Gives `branch` a time zone and waits until routing's copy has it.
    pub async fn set_branch_time_zone(&self, branch: &str, time_zone: &str) {
        self.upsert_branch(branch, time_zone).await;
        self.wait_for_count(
            &format!(
                "SELECT COUNT(*) FROM routing_branches WHERE branch_id = '{branch}' AND time_zone = '{time_zone}'"
            ),
            1,
            Duration::from_secs(10),
        )
        .await;
    }

    /// AcceptReferral as the holder of `token`.
    pub async fn accept(
        &self,
        token: &str,
        referral_id: &str,
    ) -> Result<pb::Referral, tonic::Status> {
        Ok(self
            .referrals()
            .accept_referral(with_token(
                token,
                pb::AcceptReferralRequest {
                    referral_id: referral_id.into(),
                },
            ))
            .await?
            .into_inner()
            .referral
            .unwrap())
    }

    /// Shuts the app down (draining relays and consumers) and drops its schema.
    pub async fn stop(self) {
        let _ = self.stop_within(Duration::from_secs(15)).await;
    }

    /// [`TestApp::stop`], telling whether the server finished its graceful
    /// shutdown within `limit`.
    pub async fn stop_within(self, limit: Duration) -> Result<(), tokio::time::error::Elapsed> {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(limit, self.server).await.map(drop);
        self.db.clone().close().await.ok();
        if let Some(schema) = &self.schema {
            crm_store::db::drop_schema(&postgres_url(), schema)
                .await
                .ok();
        }
        if let Some(folder) = &self.sqlite_folder {
            std::fs::remove_dir_all(folder).ok();
        }
        stopped
    }
}

/// A request carrying `Bearer <token>`, sent as part of the caller's trace
/// `trace_id` (a `traceparent` as an upstream service would send it).
pub fn with_trace<T>(token: &str, trace_id: &str, message: T) -> tonic::Request<T> {
    let mut request = with_token(token, message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    request
}

/// A request carrying `Bearer <token>`.
pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Test logging and the rustls provider, once per process.
pub fn install_for_tests() {
    crm_telemetry::init_for_tests();
    crm_runtime::install_crypto_provider();
}

/// Runs each `async fn name(backend: Backend)` listed as two tests, one per
/// backend: `name::on_postgres_and_rabbitmq` and `name::on_the_embedded_default`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres_and_rabbitmq() {
                    super::$name($crate::Backend::Distributed).await
                }

                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_the_embedded_default() {
                    super::$name($crate::Backend::Embedded).await
                }
            }
        )+
    };
}

/// A database with only the messaging tables (outbox, inbox): for tests of the
/// bus and the relay below any service. PostgreSQL gets its own schema, SQLite its
/// own file.
pub struct MessagingStore {
    pub db: Db,
    schema: Option<String>,
}

pub async fn messaging_store(backend: Backend) -> MessagingStore {
    install_for_tests();
    let (url, schema) = match backend {
        Backend::Distributed => (postgres_url(), Some(unique_name("bus"))),
        Backend::Embedded => {
            let folder = std::env::temp_dir().join(unique_name("sqlite"));
            std::fs::create_dir_all(&folder).unwrap();
            (
                format!("sqlite://{}?mode=rwc", folder.join("crm.db").display()),
                None,
            )
        }
    };
    let db = crm_store::connect(&url, schema.as_deref()).await.unwrap();
    crm_runtime::migrate(&db, &[]).await.unwrap();
    MessagingStore { db, schema }
}

impl MessagingStore {
    /// Drops the schema (PostgreSQL).
    pub async fn drop(self) {
        self.db.clone().close().await.ok();
        if let Some(schema) = self.schema {
            crm_store::db::drop_schema(&postgres_url(), &schema)
                .await
                .unwrap();
        }
    }
}

/// The suite's topology on RabbitMQ (distributed) or in process (embedded), under
/// a fresh prefix.
pub async fn bus(backend: Backend) -> crm_bus::Bus {
    install_for_tests();
    let config = crm_bus::BusConfig {
        amqp_url: (backend == Backend::Distributed).then(|| amqp_url().into()),
        amqp_ca_pem: None,
        prefix: format!("{}.", unique_name("bus")),
        ephemeral: true,
        queues: crm_runtime::suite_queues(crm::MODULES),
    };
    crm_bus::Bus::start(&config, CancellationToken::new())
        .await
        .unwrap()
}

/// Consumes and acknowledges everything in `service`'s queue until the returned
/// token is cancelled: a stand-in for the service's consumer, for tests of the
/// relay (on the in-process bus a publish settles only once a consumer took it).
pub fn drain_queue(bus: &crm_bus::Bus, db: &Db, service: &'static str) -> CancellationToken {
    struct Accept;
    #[async_trait::async_trait]
    impl crm_bus::MessageHandler for Accept {
        async fn handle(
            &self,
            _: &sea_orm::DatabaseTransaction,
            _: &crm_bus::Envelope,
        ) -> Result<(), crm_bus::HandlerError> {
            Ok(())
        }
    }
    let stop = CancellationToken::new();
    tokio::spawn(crm_bus::run_consumer(
        bus.clone(),
        db.clone(),
        service,
        std::sync::Arc::new(Accept),
        crm_bus::Pace::batched(32, 32),
        stop.clone(),
    ));
    stop
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that a test can cut: every
/// connection through it is closed and new ones are refused until restored. It
/// cuts only the connections of the test that owns it, unlike stopping the
/// database or the broker for everyone.
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::Mutex<CancellationToken>>,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: CancellationToken,
}

impl CutProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> CutProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let refusing = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let (cut_for_task, refusing_for_task, stop_for_task) =
            (cut.clone(), refusing.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop_for_task.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                if refusing_for_task.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let severed = cut_for_task.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        () = severed.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        CutProxy {
            addr,
            cut,
            refusing,
            stop,
        }
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.refusing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut cut = self.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.refusing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The current Prometheus figures of `url` (`http://127.0.0.1:port/metrics`).
pub async fn scrape(url: &str) -> Metrics {
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    Metrics(response.text().await.unwrap())
}

/// Prometheus text exposition, read back by a test.
pub use crm_telemetry::exposition::Exposition as Metrics;

/// A certificate authority a test makes, and the PEM files it issues, in a
/// folder of the test's own (removed when dropped).
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub folder: std::path::PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "CRM test bank CA");
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let folder = std::env::temp_dir().join(unique_name("tls"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("ca.pem"), issuer.pem()).unwrap();
        TestCa { issuer, folder }
    }

    pub fn ca_path(&self) -> std::path::PathBuf {
        self.folder.join("ca.pem")
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA:
    /// the paths of its certificate and key files, `<file>.pem` and `<file>.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, file);
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            self.folder.join(format!("{file}.pem")),
            self.folder.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, certificate.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.folder).ok();
    }
}
