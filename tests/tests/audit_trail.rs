//! One audit trail for the suite: a read of client data in a service other than
//! the client book travels through that service's outbox and lands in the trail
//! ListAuditEvents shows, naming the service — once, however often it is sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use crm_audit::{Actor, AuditLine, ClientRef, Entry};
use crm_auth::Principal;
use crm_domain::messages::AUDIT_RECORDED;
use crm_domain::{BranchId, Role, StaffId};
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use sea_orm::TransactionTrait;

/// The events service's RM reading client C-000001's timeline.
fn timeline_reader() -> Actor {
    Actor {
        principal: Principal {
            staff_id: StaffId::parse("B-001-RM-1").unwrap(),
            role: Role::Rm,
            branch_id: BranchId::parse("B-001").unwrap(),
        },
        request_id: "req-timeline-1".into(),
    }
}

const CLIENT: ClientRef<'static> = ClientRef {
    client_id: "C-000001",
    home_branch_id: "B-001",
};

async fn trail_from(app: &TestApp, service: &str) -> Vec<pb::AuditEvent> {
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    app.clients()
        .list_audit_events(with_token(
            &manager,
            pb::ListAuditEventsRequest {
                client_id: "C-000001".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events
        .into_iter()
        .filter(|line| line.service == service)
        .collect()
}

async fn wait_for_trail_from(app: &TestApp, service: &str, lines: usize) -> Vec<pb::AuditEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let trail = trail_from(app, service).await;
        if trail.len() >= lines || tokio::time::Instant::now() > deadline {
            return trail;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn another_services_read_lands_on_the_one_trail(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let transaction = app.db.begin().await.unwrap();
    crm_audit::record_via_outbox(
        &transaction,
        "events",
        &timeline_reader(),
        [Entry::allowed("timeline.read", CLIENT)],
    )
    .await
    .unwrap();
    transaction.commit().await.unwrap();

    let trail = wait_for_trail_from(&app, "events", 1).await;
    assert_eq!(trail.len(), 1, "the line reached the trail: {trail:?}");
    let line = &trail[0];
    assert_eq!(
        (
            line.action.as_str(),
            line.actor_id.as_str(),
            line.actor_role.as_str(),
            line.decision.as_str(),
            line.request_id.as_str()
        ),
        (
            "timeline.read",
            "B-001-RM-1",
            "rm",
            "allowed",
            "req-timeline-1"
        )
    );
    // The client book's own lines say so.
    assert!(!trail_from(&app, "clients").await.is_empty());
    app.stop().await;
}

async fn a_line_sent_twice_is_stored_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let line = AuditLine::new(
        "events",
        &timeline_reader(),
        Entry::allowed("timeline.read", CLIENT),
        Vec::new(),
    );
    // Two messages (two message ids, as a resend after a lost confirm would
    // not have, but a replay by hand might) carrying the same line.
    for _ in 0..2 {
        let transaction = app.db.begin().await.unwrap();
        crm_bus::outbox::enqueue_event(
            &transaction,
            "events",
            AUDIT_RECORDED,
            AUDIT_RECORDED,
            &line,
        )
        .await
        .unwrap();
        transaction.commit().await.unwrap();
    }
    app.wait_for_count(
        "SELECT COUNT(*) FROM outbox WHERE source = 'events' AND sent_at IS NOT NULL",
        2,
        Duration::from_secs(15),
    )
    .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM inbox WHERE consumer = 'clients-consumer' AND message_id IN \
         (SELECT message_id FROM outbox WHERE source = 'events')",
        2,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(trail_from(&app, "events").await.len(), 1);
    app.stop().await;
}

async fn a_line_claiming_to_be_the_client_books_own_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let forged = AuditLine::new(
        "clients",
        &timeline_reader(),
        Entry::allowed("client.read", CLIENT),
        Vec::new(),
    );
    let honest = AuditLine::new(
        "events",
        &timeline_reader(),
        Entry::allowed("timeline.read", CLIENT),
        Vec::new(),
    );
    for line in [&forged, &honest] {
        let transaction = app.db.begin().await.unwrap();
        crm_bus::outbox::enqueue_event(
            &transaction,
            "events",
            AUDIT_RECORDED,
            AUDIT_RECORDED,
            line,
        )
        .await
        .unwrap();
        transaction.commit().await.unwrap();
    }
    assert_eq!(wait_for_trail_from(&app, "events", 1).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored = app
        .count(&format!(
            "SELECT COUNT(*) FROM audit_events WHERE audit_event_id = '{}'",
            forged.audit_event_id
        ))
        .await;
    assert_eq!(
        stored, 0,
        "a forged line of the client book's own is not stored"
    );
    app.stop().await;
}

on_both_backends!(
    another_services_read_lands_on_the_one_trail,
    a_line_sent_twice_is_stored_once,
    a_line_claiming_to_be_the_client_books_own_is_refused,
);
