//! IngestEvents: each core-banking event checked on its own (a bad one rejected with
//! its reason, the good ones kept), taken once by `event_id` — a resend, even dated
//! in another month (another partition on PostgreSQL), is a duplicate with no second
//! effect — and events past the retention dropped by `crm jobs prune-events`. Over
//! PostgreSQL and the embedded default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use chrono::{Duration, Utc};
use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_proto::v1::bank_event::Kind;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};

fn money(minor_units: i64, currency: &str) -> Option<pb::Money> {
    Some(pb::Money {
        minor_units,
        currency: currency.into(),
    })
}

fn event(event_id: &str, days_ago: i64, kind: Option<Kind>) -> pb::BankEvent {
    pb::BankEvent {
        event_id: event_id.into(),
        client_id: "C-000001".into(),
        occurred_at: Some(crm_grpc::wire::timestamp(
            Utc::now() - Duration::days(days_ago),
        )),
        kind,
    }
}

fn transfer_out(amount: i64, currency: &str) -> Option<Kind> {
    Some(Kind::Transfer(pb::Transfer {
        amount: money(amount, currency),
        direction: pb::TransferDirection::Out as i32,
        counterparty_bank: "Other Bank".into(),
        own_bank: false,
        channel: "counter".into(),
        status: pb::TransferStatus::Pending as i32,
        branch_id: "B-001".into(),
        transfer_reference: String::new(),
    }))
}

fn good_events() -> Vec<pb::BankEvent> {
    vec![
        event(
            "ev-balance",
            1,
            Some(Kind::BalanceSnapshot(pb::BalanceSnapshot {
                balance: money(123_450_000, "CNY"),
                as_of_date: Some(crm_grpc::wire::date_to_proto(Utc::now().date_naive())),
            })),
        ),
        event("ev-transfer", 1, transfer_out(60_000_000, "CNY")),
        event(
            "ev-maturity",
            2,
            Some(Kind::ProductMaturity(pb::ProductMaturity {
                product_id: "TD-9".into(),
                product_name: "Time deposit 1Y".into(),
                amount: money(200_000_000, "CNY"),
                maturity_date: Some(crm_grpc::wire::date_to_proto(Utc::now().date_naive())),
            })),
        ),
        event(
            "ev-payroll",
            3,
            Some(Kind::PayrollCredit(pb::PayrollCredit {
                employer_id: "EMP-1".into(),
                amount: money(2_500_000, "CNY"),
            })),
        ),
    ]
}

async fn ingest(app: &TestApp, events: Vec<pb::BankEvent>) -> Vec<pb::IngestEventResult> {
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    app.events()
        .ingest_events(with_token(&system, pb::IngestEventsRequest { events }))
        .await
        .unwrap()
        .into_inner()
        .results
}

on_both_backends!(
    bad_events_are_rejected_each_with_its_reason_and_the_rest_kept,
    an_event_is_taken_once_whatever_month_it_is_resent_in,
    only_core_banking_ingests_and_a_batch_is_bounded,
    events_past_the_retention_are_dropped,
);

async fn bad_events_are_rejected_each_with_its_reason_and_the_rest_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut batch = good_events();
    let bad = vec![
        (
            event("bad-zero", 1, transfer_out(0, "CNY")),
            "more than zero",
        ),
        (
            event("bad-negative", 1, transfer_out(-5, "CNY")),
            "more than zero",
        ),
        (
            event("bad-currency", 1, transfer_out(100, "XYZ")),
            "ISO 4217",
        ),
        (event("bad-kind", 1, None), "kind is required"),
        (event("bad-future", -3, transfer_out(100, "CNY")), "future"),
        (event("", 1, transfer_out(100, "CNY")), "event_id"),
        (
            event(&"x".repeat(200), 1, transfer_out(100, "CNY")),
            "event_id",
        ),
        (
            pb::BankEvent {
                client_id: "not a client".into(),
                ..event("bad-client", 1, transfer_out(100, "CNY"))
            },
            "client_id",
        ),
        (
            event("bad-old", 365 * 30, transfer_out(100, "CNY")),
            "retention",
        ),
    ];
    batch.extend(bad.iter().map(|(event, _)| event.clone()));
    let results = ingest(&app, batch).await;
    assert_eq!(
        results.len(),
        4 + bad.len(),
        "one result per event, in order"
    );
    for result in &results[..4] {
        assert!(result.accepted && !result.duplicate, "{result:?}");
    }
    for (result, (_, why)) in results[4..].iter().zip(&bad) {
        assert!(!result.accepted, "{result:?}");
        assert!(result.reason.contains(why), "{why}: {result:?}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM bank_events").await, 4);
    app.stop().await;
}

async fn an_event_is_taken_once_whatever_month_it_is_resent_in(backend: Backend) {
    let app = spawn_app(backend).await;
    ingest(&app, good_events()).await;
    // The same batch again, after a timeout: no second effect, each says so.
    let again = ingest(&app, good_events()).await;
    assert!(again.iter().all(|r| r.accepted && r.duplicate), "{again:?}");
    // The transfer resent with a date two months back: another month, still the
    // same event.
    let moved = ingest(
        &app,
        vec![event("ev-transfer", 62, transfer_out(60_000_000, "CNY"))],
    )
    .await;
    assert!(moved[0].accepted && moved[0].duplicate, "{moved:?}");
    // The same id twice in one batch: kept once.
    let twice = ingest(
        &app,
        vec![
            event("ev-new", 1, transfer_out(100, "CNY")),
            event("ev-new", 40, transfer_out(100, "CNY")),
        ],
    )
    .await;
    assert!(!twice[0].duplicate && twice[1].duplicate, "{twice:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM bank_events").await, 5);
    assert_eq!(app.count("SELECT COUNT(*) FROM bank_event_ids").await, 5);
    app.stop().await;
}

async fn only_core_banking_ingests_and_a_batch_is_bounded(backend: Backend) {
    let app = spawn_app(backend).await;
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let refused = app
        .events()
        .ingest_events(with_token(
            &teller,
            pb::IngestEventsRequest {
                events: good_events(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    let too_many = (0..1_001)
        .map(|n| event(&format!("ev-{n}"), 1, transfer_out(100, "CNY")))
        .collect();
    let refused = app
        .events()
        .ingest_events(with_token(
            &system,
            pb::IngestEventsRequest { events: too_many },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(app.count("SELECT COUNT(*) FROM bank_events").await, 0);
    app.stop().await;
}

async fn events_past_the_retention_are_dropped(backend: Backend) {
    let app = spawn_app(backend).await;
    ingest(&app, good_events()).await;
    ingest(&app, vec![event("ev-old", 70, transfer_out(100, "CNY"))]).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM bank_events").await, 5);
    const PARTITIONS: &str = "SELECT COUNT(*) FROM pg_inherits i \
        JOIN pg_class p ON p.oid = i.inhparent \
        WHERE p.relname = 'bank_events' AND p.relnamespace = current_schema()::regnamespace";
    let partitions_before = if backend == Backend::Distributed {
        let partitions = app.count(PARTITIONS).await;
        assert!(partitions >= 2, "a partition per month: {partitions}");
        partitions
    } else {
        0
    };
    // Keep from the first of last month: the 70-day-old event's month goes.
    let kept_from = crm_events::ingest::retention_start(Utc::now(), 1);
    crm_events::partitions::prune(&app.db, kept_from)
        .await
        .unwrap();
    if backend == Backend::Distributed {
        assert_eq!(
            app.count(PARTITIONS).await,
            partitions_before - 1,
            "the old month's partition dropped whole"
        );
    }
    let left = app.count("SELECT COUNT(*) FROM bank_events").await;
    assert_eq!(left, 4, "the four recent events stay");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM bank_event_ids WHERE event_id = 'ev-old'")
            .await,
        0
    );
    // Twice is the same as once.
    crm_events::partitions::prune(&app.db, kept_from)
        .await
        .unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM bank_events").await, left);
    app.stop().await;
}
