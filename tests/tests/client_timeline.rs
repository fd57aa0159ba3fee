//! GetClientTimeline: one client's core-banking events, the alerts asked of their
//! RM, their referrals and interactions, newest first, paged with signed tokens;
//! scoped by the suite's one access rule (as GetClient) on the events service's own
//! copy of the client, every read and refusal on the audit trail. Over PostgreSQL
//! + RabbitMQ and the embedded default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};

fn event(event_id: &str, hours_ago: i64, kind: pb::bank_event::Kind) -> pb::BankEvent {
    pb::BankEvent {
        event_id: event_id.into(),
        client_id: "C-000001".into(),
        occurred_at: Some(crm_grpc::wire::timestamp(
            Utc::now() - chrono::Duration::hours(hours_ago),
        )),
        kind: Some(kind),
    }
}

fn cny(yuan: i64) -> Option<pb::Money> {
    Some(pb::Money {
        minor_units: yuan * 100,
        currency: "CNY".into(),
    })
}

async fn timeline(
    app: &TestApp,
    token: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::GetClientTimelineResponse, tonic::Status> {
    app.events()
        .get_client_timeline(with_token(
            token,
            pb::GetClientTimelineRequest {
                client_id: "C-000001".into(),
                page_size,
                page_token: page_token.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// A client with three events, an alert, a referral and an interaction.
async fn client_with_history(app: &TestApp) {
    app.seed_branch("B-001", 2).await;
    app.seed_branch("B-002", 1).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM event_clients WHERE client_id = 'C-000001'",
        1,
        Duration::from_secs(10),
    )
    .await;
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    let events = vec![
        event(
            "tl-salary",
            3,
            pb::bank_event::Kind::PayrollCredit(pb::PayrollCredit {
                employer_id: "EMP-ACME".into(),
                amount: cny(25_000),
            }),
        ),
        event(
            "tl-balance",
            2,
            pb::bank_event::Kind::BalanceSnapshot(pb::BalanceSnapshot {
                balance: cny(300_000),
                as_of_date: Some(crm_grpc::wire::date_to_proto(
                    (Utc::now() - chrono::Duration::hours(2)).date_naive(),
                )),
            }),
        ),
        event(
            "tl-transfer",
            1,
            pb::bank_event::Kind::Transfer(pb::Transfer {
                amount: cny(800_000),
                direction: pb::TransferDirection::Out as i32,
                counterparty_bank: "Other Bank".into(),
                status: pb::TransferStatus::Pending as i32,
                ..Default::default()
            }),
        ),
    ];
    let results = app
        .events()
        .ingest_events(with_token(&system, pb::IngestEventsRequest { events }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(results.iter().all(|r| r.accepted), "{results:?}");
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    app.referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: "tl-referral".into(),
                client_id: "C-000001".into(),
                need: pb::Need::WealthManagement as i32,
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    app.clients()
        .log_interaction(with_token(
            &rm,
            pb::LogInteractionRequest {
                client_id: "C-000001".into(),
                channel: pb::InteractionChannel::Phone as i32,
                summary: "Called about the transfer".into(),
                outcome: "kept".into(),
                occurred_at: None,
            },
        ))
        .await
        .unwrap();
    // The alert, the referral and the interaction reach the events service.
    for kind in ["alert", "referral", "interaction"] {
        app.wait_for_count(
            &format!(
                "SELECT COUNT(*) FROM timeline_entries WHERE client_id = 'C-000001' \
                 AND entry_kind = '{kind}'"
            ),
            1,
            Duration::from_secs(10),
        )
        .await;
    }
}

on_both_backends!(
    the_timeline_pages_newest_first_through_every_source,
    the_timeline_is_scoped_like_get_client_and_audited,
);

async fn the_timeline_pages_newest_first_through_every_source(backend: Backend) {
    let app = spawn_app(backend).await;
    client_with_history(&app).await;
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let mut entries = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = timeline(&app, &rm, 2, &page_token).await.unwrap();
        assert!(page.entries.len() <= 2);
        entries.extend(page.entries);
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
        assert!(pages < 20, "paging never ends");
    }
    let kinds: HashSet<&str> = entries.iter().map(|e| e.entry_kind.as_str()).collect();
    for kind in ["event", "alert", "referral", "interaction"] {
        assert!(kinds.contains(kind), "no {kind} in {entries:#?}");
    }
    let events: Vec<&str> = entries
        .iter()
        .filter(|e| e.entry_kind == "event")
        .map(|e| e.entry_id.as_str())
        .collect();
    // Newest first: the transfer (1 h ago), the balance, the salary.
    assert_eq!(events, ["tl-transfer", "tl-balance", "tl-salary"]);
    let times: Vec<_> = entries
        .iter()
        .map(|e| crm_grpc::wire::datetime(e.occurred_at.as_ref().unwrap()).unwrap())
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "{entries:#?}"
    );
    // Every line once across the pages.
    let lines: HashSet<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e.entry_kind.as_str(), e.entry_id.as_str(), e.title.as_str()))
        .collect();
    assert_eq!(lines.len(), entries.len(), "{entries:#?}");
    let transfer = entries
        .iter()
        .find(|e| e.entry_id == "tl-transfer")
        .unwrap();
    assert_eq!(transfer.title, "Transfer out 800000.00 CNY to Other Bank");
    // One page of all of it says the same.
    let whole = timeline(&app, &rm, 100, "").await.unwrap();
    assert_eq!(whole.entries, entries);
    assert!(whole.next_page_token.is_empty());

    // A token is the caller's and this timeline's only; bad input writes nothing.
    let first = timeline(&app, &rm, 2, "").await.unwrap();
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    let stolen = timeline(&app, &manager, 2, &first.next_page_token)
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), tonic::Code::InvalidArgument);
    for (page_size, client_id) in [(-1, "C-000001"), (10, "not a client id")] {
        let refused = app
            .events()
            .get_client_timeline(with_token(
                &rm,
                pb::GetClientTimelineRequest {
                    client_id: client_id.into(),
                    page_size,
                    page_token: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
    app.stop().await;
}

async fn the_timeline_is_scoped_like_get_client_and_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    client_with_history(&app).await;
    let allowed = [
        ("B-001-RM-1", Role::Rm, "B-001"),
        ("B-001-M", Role::BranchManager, "B-001"),
        ("B-001-T-1", Role::Teller, "B-001"),
        ("SYS-CORE", Role::System, "HQ-001"),
    ];
    for (staff, role, branch) in allowed {
        let token = app.token(staff, role, branch);
        let page = timeline(&app, &token, 50, "").await;
        assert!(page.is_ok(), "{staff}: {page:?}");
        assert!(!page.unwrap().entries.is_empty());
    }
    let refused = [
        ("B-002-RM-1", Role::Rm, "B-002"),
        ("B-001-RM-2", Role::Rm, "B-001"),
        ("B-002-M", Role::BranchManager, "B-002"),
        ("B-002-T-1", Role::Teller, "B-002"),
        ("ADMIN-1", Role::CampaignAdmin, "HQ-001"),
    ];
    for (staff, role, branch) in refused {
        let token = app.token(staff, role, branch);
        let status = timeline(&app, &token, 50, "").await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{staff}");
    }
    // An unknown client: refused like a foreign one, except to who sees everyone.
    let stranger = |token: String| {
        let mut events = app.events();
        async move {
            events
                .get_client_timeline(with_token(
                    &token,
                    pb::GetClientTimelineRequest {
                        client_id: "C-999999".into(),
                        page_size: 10,
                        page_token: String::new(),
                    },
                ))
                .await
                .unwrap_err()
                .code()
        }
    };
    assert_eq!(
        stranger(app.token("B-001-RM-1", Role::Rm, "B-001")).await,
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        stranger(app.token("SYS-CORE", Role::System, "HQ-001")).await,
        tonic::Code::NotFound
    );
    // On the client book's one trail: the reads and the refusals, by whom.
    app.wait_for_count(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'timeline.read' \
         AND client_id = 'C-000001' AND decision = 'allowed' AND service = 'events'",
        4,
        Duration::from_secs(10),
    )
    .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'timeline.read' \
         AND decision = 'denied' AND actor_id IN ('B-002-RM-1', 'B-001-RM-2', 'B-002-M', \
         'B-002-T-1', 'ADMIN-1') AND client_branch_id = 'B-001'",
        5,
        Duration::from_secs(10),
    )
    .await;
    app.stop().await;
}
