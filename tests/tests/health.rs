//! Health that means something: NOT_SERVING until migrations ran and while the
//! database is away; SERVING (degraded, says `crm_broker_up`) while the broker is,
//! because the outbox keeps taking writes.
//!
//! The gauges are process-wide: these tests have a binary of their own, and only
//! the broker test's app ever records the broker down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::net::SocketAddr;
use std::time::Duration;

use crm_proto::v1 as pb;
use crm_testkit::{
    Backend, CutProxy, TEST_JWT_SECRET, postgres_url, spawn_app_with_settings, unique_name,
};
use sea_orm::{ConnectionTrait, TransactionTrait};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const METRICS_ON_ANY_PORT: &str = "127.0.0.1:0";
/// The backlog gauges are refreshed every fifth health check (2 s apart).
const BACKLOG_COUNTED_WITHIN: Duration = Duration::from_secs(30);
const UNSENT: &str = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL";

async fn health_of(addr: SocketAddr) -> Option<ServingStatus> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .ok()?;
    let answer = HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    Some(answer.into_inner().status())
}

async fn wait_for_health(addr: SocketAddr, want: ServingStatus, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = health_of(addr).await;
        if status == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health stayed {status:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A replica starting while another holds the schema's migration lock (a rolling
/// upgrade, the release's migration Job) answers health NOT_SERVING until its
/// migrations ran, then SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_until_migrations_ran() {
    crm_testkit::install_for_tests();
    let schema = unique_name("db");
    // Another process migrating: the lock on this schema, held.
    let other = crm_store::connect(&postgres_url(), Some(&schema))
        .await
        .unwrap();
    let migrating = other.begin().await.unwrap();
    migrating
        .execute_unprepared(crm_runtime::MIGRATION_LOCK_SQL)
        .await
        .unwrap();

    // Below the ephemeral range: an outgoing connection can't take it first.
    let port = crm_chaos::cluster::free_port().unwrap();
    let mut settings = crm_runtime::Settings::for_local_app(
        postgres_url(),
        Some(schema.clone()),
        Some(crm_testkit::amqp_url()),
        format!("{}.", unique_name("q")),
        TEST_JWT_SECRET.to_owned(),
    )
    .unwrap();
    settings.listen_addr = port;
    let sections = crm_runtime::ModuleSettings::defaults(crm::MODULES).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let starting = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let app = crm_runtime::App::build(&settings, &sections, crm::MODULES, shutdown)
                .await
                .unwrap();
            app.run().await
        }
    });
    wait_for_health(port, ServingStatus::NotServing, Duration::from_secs(10)).await;
    // Still waiting for the lock a moment later: not serving yet, no tables.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(health_of(port).await, Some(ServingStatus::NotServing));
    let tables = other
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = '{schema}'"
            ),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(tables, 0, "nothing migrated while the lock is held");
    // A teller's call meanwhile: UNAVAILABLE, which the teller app retries, not
    // UNIMPLEMENTED, which it takes as never going to work.
    let channel = tonic::transport::Channel::from_shared(format!("http://{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = pb::referral_service_client::ReferralServiceClient::new(channel)
        .create_referral(pb::CreateReferralRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    migrating.commit().await.unwrap();
    wait_for_health(port, ServingStatus::Serving, Duration::from_secs(30)).await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), starting).await;
    other.close().await.ok();
    crm_store::db::drop_schema(&postgres_url(), &schema)
        .await
        .ok();
}

/// The database away: NOT_SERVING, and SERVING again once it is back. The broker
/// away: still SERVING (writes go on into the outbox), `crm_broker_up` 0, and 1
/// again after. Each cut through a proxy of this test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_database_but_not_the_broker() {
    let database = CutProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let broker = CutProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let (database_addr, broker_addr) = (database.addr, broker.addr);
    let app = spawn_app_with_settings(Backend::Distributed, &[], move |settings| {
        settings.metrics_addr = Some(METRICS_ON_ANY_PORT.parse().unwrap());
        settings.database_url =
            Some(postgres_url().replace("127.0.0.1:5432", &database_addr.to_string()));
        settings.amqp_url =
            Some(crm_testkit::amqp_url().replace("127.0.0.1:5672", &broker_addr.to_string()));
    })
    .await;
    wait_for_health(app.addr, ServingStatus::Serving, Duration::from_secs(10)).await;

    database.cut();
    wait_for_health(app.addr, ServingStatus::NotServing, Duration::from_secs(15)).await;
    app.wait_for_metric(
        "crm_database_up",
        |m| m.sum("crm_database_up", &[]),
        |up| up == 0.0,
    )
    .await;
    database.restore();
    wait_for_health(app.addr, ServingStatus::Serving, Duration::from_secs(30)).await;

    broker.cut();
    app.wait_for_metric(
        "crm_broker_up",
        |m| m.sum("crm_broker_up", &[]),
        |up| up == 0.0,
    )
    .await;
    assert_eq!(
        health_of(app.addr).await,
        Some(ServingStatus::Serving),
        "a broker outage keeps the replica in rotation"
    );
    // Writes go on: a person is saved while the broker is away, the message
    // waiting in the outbox; it goes out once the broker is back.
    let failed_publishes = |m: &crm_testkit::Metrics| -> f64 {
        m.sum_by("messaging_client_sent_messages_total", "error_type")
            .into_iter()
            .filter(|(error, _)| !error.is_empty())
            .map(|(_, publishes)| publishes)
            .sum()
    };
    let failed_before = failed_publishes(&app.metrics().await);
    app.add_staff("B-001-RM-1", pb::StaffRole::Rm, "B-001")
        .await;
    assert!(
        app.count(UNSENT).await >= 1,
        "the message waits in the outbox"
    );
    // What the operator sees meanwhile: the relay's publishes failing, the
    // directory's backlog and the age of its oldest row.
    app.wait_for_metric("failed publishes", failed_publishes, |failed| {
        failed > failed_before
    })
    .await;
    let clients_outbox = [("crm_outbox_source", "clients")];
    app.wait_for_metric_within(
        "the outbox backlog",
        |m| m.sum("crm_outbox_pending", &clients_outbox),
        |pending| pending >= 1.0,
        BACKLOG_COUNTED_WITHIN,
    )
    .await;
    app.wait_for_metric_within(
        "the age of the oldest unsent row",
        |m| m.sum("crm_outbox_oldest_pending_age_seconds", &clients_outbox),
        |age| age > 0.0,
        BACKLOG_COUNTED_WITHIN,
    )
    .await;
    broker.restore();
    app.wait_for_metric(
        "crm_broker_up",
        |m| m.sum("crm_broker_up", &[]),
        |up| up == 1.0,
    )
    .await;
    assert_eq!(health_of(app.addr).await, Some(ServingStatus::Serving));
    app.wait_for_count(UNSENT, 0, Duration::from_secs(60)).await;
    app.wait_for_metric_within(
        "the outbox backlog drained",
        |m| m.sum("crm_outbox_pending", &clients_outbox),
        |pending| pending == 0.0,
        BACKLOG_COUNTED_WITHIN,
    )
    .await;
    app.stop().await;
}

/// Every pooled connection busy is not the database away: the replica stays
/// SERVING: one that left rotation would only pile its load on the others,
/// which would then leave too. `db.client.connection.wait_time` shows the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pool_keeps_the_replica_in_rotation() {
    let app = crm_testkit::spawn_app(Backend::Distributed).await;
    wait_for_health(app.addr, ServingStatus::Serving, Duration::from_secs(10)).await;
    let pool = app.db.get_postgres_connection_pool();
    let mut held = Vec::new();
    while held.len() < pool.options().get_max_connections() as usize {
        held.push(pool.acquire().await.unwrap());
    }
    // Several checks (2 s apart, each waiting up to 2 s for a pooled connection)
    // with none to spare.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        health_of(app.addr).await,
        Some(ServingStatus::Serving),
        "a busy pool keeps the replica in rotation"
    );
    drop(held);
    app.stop().await;
}
