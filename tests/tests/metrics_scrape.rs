//! What a platform team scrapes: the Prometheus figures move when a referral goes
//! through, by method and status code, relay and consumer, open streams, the pool,
//! the outbox backlog; and no client, staff or referral id labels any of them.
//!
//! The meter provider is process-wide, so this test has a binary of its own and
//! reads figures as differences, before and after.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, Metrics, spawn_app_with_settings, with_token};

const METRICS_ON_ANY_PORT: &str = "127.0.0.1:0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_a_referral_shows_the_figures_moved() {
    let app = spawn_app_with_settings(Backend::Distributed, &[], |settings| {
        settings.metrics_addr = Some(METRICS_ON_ANY_PORT.parse().unwrap());
    })
    .await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let created_ok = |m: &Metrics| {
        m.sum(
            "rpc_server_call_duration_seconds_count",
            &[
                ("rpc_service", "crm.v1.ReferralService"),
                ("rpc_method", "CreateReferral"),
                ("rpc_grpc_status_code", "0"),
            ],
        )
    };
    let refused = |m: &Metrics| {
        m.sum(
            "rpc_server_call_duration_seconds_count",
            &[
                ("rpc_method", "CreateReferral"),
                ("rpc_grpc_status_code", "16"),
            ],
        )
    };
    let published = |m: &Metrics| {
        m.sum(
            "messaging_client_sent_messages_total",
            &[
                ("crm_outbox_source", "referrals"),
                ("messaging_system", "rabbitmq"),
            ],
        )
    };
    let consumed = |m: &Metrics| {
        m.sum(
            "messaging_client_consumed_messages_total",
            &[("crm_message_outcome", "processed")],
        )
    };
    let streams = |m: &Metrics| m.sum("crm_work_items_watch_streams", &[]);
    let before = app.metrics().await;

    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let mut stream = app
        .referrals()
        .watch_work_items(with_token(&rm, pb::WatchWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    app.referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: "metrics-1".into(),
                client_id: "C-000001".into(),
                need: pb::Need::WealthManagement as i32,
                priority: pb::Priority::High as i32,
                note: "asked about deposits".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    // A call without a token: UNAUTHENTICATED (16), counted under its code.
    let unauthenticated = app
        .referrals()
        .create_referral(pb::CreateReferralRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the work item reaches the RM")
        .unwrap()
        .unwrap();

    let after = app.metrics().await;
    assert_eq!(created_ok(&after) - created_ok(&before), 1.0, "{}", after.0);
    assert_eq!(refused(&after) - refused(&before), 1.0);
    assert!(
        after.sum(
            "rpc_server_call_duration_seconds_bucket",
            &[("rpc_method", "CreateReferral"), ("le", "+Inf")]
        ) >= 2.0,
        "latency is a histogram with buckets"
    );
    // The relay counts a publish once the broker confirmed it, and the live feed
    // can hand the item to the phone before the confirm reaches the relay.
    let published_before = published(&before);
    app.wait_for_metric("the relay's published messages", published, |now| {
        now > published_before
    })
    .await;
    // The other services take the referral's news a moment later.
    let consumed_before = consumed(&before);
    app.wait_for_metric("messages processed", consumed, |now| now > consumed_before)
        .await;
    assert!(
        app.metrics()
            .await
            .has("messaging_process_duration_seconds_bucket"),
        "handler latency"
    );
    assert_eq!(streams(&after) - streams(&before), 1.0, "one open stream");
    // Figures no caller's id ever labels.
    for id in ["C-000001", "B-001-RM-1", "metrics-1"] {
        assert!(!after.0.contains(id), "{id} is in the metrics");
    }

    // Gauges refreshed by the health loop: the pool, the database, the broker,
    // and the referrals outbox backlog (drained, so 0).
    app.wait_for_metric(
        "the outbox backlog gauge",
        |m| {
            if m.has("crm_outbox_pending") {
                m.sum("crm_outbox_pending", &[("crm_outbox_source", "referrals")])
            } else {
                -1.0
            }
        },
        |pending| pending == 0.0,
    )
    .await;
    let gauges = app.metrics().await;
    assert_eq!(gauges.sum("crm_database_up", &[]), 1.0);
    assert_eq!(gauges.sum("crm_broker_up", &[]), 1.0);
    assert!(gauges.has("db_client_connection_max"));
    assert!(gauges.sum("db_client_connection_count", &[]) >= 1.0);
    assert!(
        gauges.sum("db_client_connection_wait_time_seconds_count", &[]) >= 1.0,
        "the pool's wait is sampled"
    );
    assert!(gauges.has("crm_outbox_oldest_pending_age_seconds"));

    // A core-banking event taken from the feed moves the silent-feed figure.
    let payroll = r#"{"eventId": "metrics-pay-1", "clientId": "C-000001",
        "occurredAt": "2026-11-27T08:00:00Z",
        "payrollCredit": {"employerId": "EMP-ACME",
                          "amount": {"minorUnits": "2500000", "currency": "CNY"}}}"#;
    app.publish_to_feed(
        "corebank.events",
        "application/json",
        "metrics-m-1",
        payroll.as_bytes(),
    )
    .await;
    app.wait_for_metric(
        "the feed's last event time",
        |m| m.sum("crm_events_feed_last_event_timestamp_seconds", &[]),
        |at| at > 1.7e9,
    )
    .await;
    assert!(
        app.metrics().await.sum(
            "crm_events_feed_messages_total",
            &[("crm_message_outcome", "processed")]
        ) >= 1.0
    );

    drop(stream);
    app.wait_for_metric("open streams", streams, |open| open == streams(&before))
        .await;

    consumer_troubles_are_counted(&app).await;

    // A scheduled job's run, by job and outcome.
    let sla_runs = |m: &Metrics| {
        m.sum(
            "crm_job_run_duration_seconds_count",
            &[
                ("crm_job_name", "referral-sla"),
                ("crm_job_outcome", "succeeded"),
            ],
        )
    };
    let runs_before = sla_runs(&app.metrics().await);
    app.run_job("referral-sla", &[]).await.unwrap();
    app.wait_for_metric("the job's run", sla_runs, |runs| runs == runs_before + 1.0)
        .await;
    app.stop().await;
}

/// Fails as nobody classified once (redelivered), then takes the message.
struct FailsOnce(std::sync::atomic::AtomicBool);

#[async_trait::async_trait]
impl crm_bus::MessageHandler for FailsOnce {
    async fn handle(
        &self,
        _: &sea_orm::DatabaseTransaction,
        _: &crm_bus::Envelope,
    ) -> Result<(), crm_bus::HandlerError> {
        if self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err(crm_bus::HandlerError::Failed("unclassified".into()))
        }
    }
}

/// A message no consumer can read is counted dead-lettered; one that failed and
/// came back is counted as a redelivery.
async fn consumer_troubles_are_counted(app: &crm_testkit::TestApp) {
    use crm_domain::messages::COVERAGE_CHANGED;
    let consumed = |outcome: &'static str, redelivered: &'static str| {
        move |m: &Metrics| {
            m.sum(
                "messaging_client_consumed_messages_total",
                &[
                    ("crm_message_outcome", outcome),
                    ("crm_message_redelivered", redelivered),
                ],
            )
        }
    };
    let before = app.metrics().await;

    // The app's own consumers (referrals, events) refuse a coverage change that
    // is not one.
    let unreadable =
        crm_bus::Envelope::new(COVERAGE_CHANGED, COVERAGE_CHANGED, &"not a coverage change")
            .unwrap();
    app.operator_bus()
        .await
        .publish_confirmed(&[unreadable])
        .await
        .unwrap();
    let dead_before = consumed("dead_lettered", "false")(&before);
    app.wait_for_metric(
        "dead-lettered deliveries",
        consumed("dead_lettered", "false"),
        |dead| dead > dead_before,
    )
    .await;

    // A consumer of this test's own, on a bus and store of its own.
    let store = crm_testkit::messaging_store(Backend::Distributed).await;
    let bus = crm_testkit::bus(Backend::Distributed).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let consumer = tokio::spawn(crm_bus::run_consumer(
        bus.clone(),
        store.db.clone(),
        "referrals",
        std::sync::Arc::new(FailsOnce(Default::default())),
        crm_bus::Pace::one_at_a_time(8),
        shutdown.clone(),
    ));
    let news = crm_bus::Envelope::new(
        crm_domain::messages::PAIR_CHANGED,
        crm_domain::messages::PAIR_CHANGED,
        &"news",
    )
    .unwrap();
    bus.publish_confirmed(&[news]).await.unwrap();
    let redelivered_before = consumed("processed", "true")(&before);
    app.wait_for_metric(
        "a redelivered message processed",
        consumed("processed", "true"),
        |taken| taken > redelivered_before,
    )
    .await;
    assert!(
        consumed("failed", "false")(&app.metrics().await) > consumed("failed", "false")(&before),
        "the failed first delivery is counted"
    );
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    store.drop().await;
}
