//! The first flow end to end, as the teller referral API and the RM mobile backend
//! use it. Every test runs twice: over real PostgreSQL + RabbitMQ (each test its own
//! schema and queue prefix) and over the embedded default (SQLite + in-process).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::{Duration, Instant};

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, on_both_backends, spawn_app, with_token};
use tonic::Code;
use tonic_types::StatusExt;

fn referral(key: &str, client_id: &str) -> pb::CreateReferralRequest {
    pb::CreateReferralRequest {
        idempotency_key: key.into(),
        client_id: client_id.into(),
        need: pb::Need::WealthManagement as i32,
        priority: pb::Priority::High as i32,
        note: "asked about deposits".into(),
        ..Default::default()
    }
}

async fn a_tellers_referral_reaches_the_rms_stream_within_a_second(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 3).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let rm_token = app.token("B-001-RM-1", Role::Rm, "B-001");
    let mut stream = app
        .referrals()
        .watch_work_items(with_token(&rm_token, pb::WatchWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let started = Instant::now();
    let created = app
        .referrals()
        .create_referral(with_token(&teller, referral("k-1", "C-000001")))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap();
    assert_eq!(created.assigned_rm_id, "B-001-RM-1");
    assert_eq!(created.routing_reason, "primary RM of client");
    assert_eq!(created.status, pb::ReferralStatus::Assigned as i32);
    let decision = created.routing_decision.clone().unwrap();
    assert_eq!(decision.rule_version, "routing/v1");
    assert_eq!(decision.chosen_rm_id, "B-001-RM-1");

    let item = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .expect("the work item reaches the RM's stream within 1 s")
        .unwrap()
        .unwrap()
        .work_item
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(item.source_id, created.referral_id);
    assert_eq!(item.kind, pb::WorkItemKind::Referral as i32);
    assert_eq!(item.rm_id, "B-001-RM-1");

    // The RM works it: ack from the phone, then accept.
    let mut rm = app.referrals();
    let acked = rm
        .ack_work_item(with_token(
            &rm_token,
            pb::AckWorkItemRequest {
                work_item_id: item.work_item_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .work_item
        .unwrap();
    assert!(acked.acked_at.is_some());
    let accepted = rm
        .accept_referral(with_token(
            &rm_token,
            pb::AcceptReferralRequest {
                referral_id: created.referral_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap();
    assert_eq!(accepted.status, pb::ReferralStatus::Accepted as i32);
    let listed = rm
        .list_work_items(with_token(
            &rm_token,
            pb::ListWorkItemsRequest {
                states: vec![pb::WorkItemState::Open as i32],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.work_items.len(), 1);
    app.stop().await;
}

async fn without_a_primary_rm_the_tellers_pair_then_the_pool_then_the_manager_get_it(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 3).await;
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let mut referrals = app.referrals();
    // A walk-in: no client, so the teller's pair.
    let walk_in = referrals
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: "walk-in".into(),
                prospect: Some(pb::Prospect {
                    full_name: "Ms. Sun".into(),
                    phone: "13900001111".into(),
                }),
                need: pb::Need::Loan as i32,
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap();
    assert_eq!(walk_in.assigned_rm_id, "B-001-RM-2");
    assert_eq!(walk_in.routing_reason, "paired RM of teller B-001-T-1");
    assert_eq!(
        walk_in.prospect.unwrap().phone,
        "139****1111",
        "a teller sees the prospect's phone masked"
    );
    app.stop().await;
}

async fn the_same_idempotency_key_twice_makes_one_referral(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000002", "B-001", Some("B-001-RM-1"))
        .await;
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let mut referrals = app.referrals();
    let first = referrals
        .create_referral(with_token(&teller, referral("same-key", "C-000002")))
        .await
        .unwrap()
        .into_inner();
    let second = referrals
        .create_referral(with_token(&teller, referral("same-key", "C-000002")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.referral.unwrap().referral_id,
        second.referral.unwrap().referral_id
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM referrals").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM work_items").await, 1);
    app.stop().await;
}

async fn bad_input_names_every_bad_field_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let mut referrals = app.referrals();
    let cases: Vec<(pb::CreateReferralRequest, Vec<&str>)> = vec![
        (
            pb::CreateReferralRequest {
                need: 0,
                ..referral("a", "C-1")
            },
            vec!["need"],
        ),
        (referral("b", "c-lower case"), vec!["client_id"]),
        (
            pb::CreateReferralRequest {
                client_id: String::new(),
                ..referral("c", "")
            },
            vec!["client_id"],
        ),
        (
            pb::CreateReferralRequest {
                note: "x".repeat(10 * 1024),
                ..referral("d", "C-1")
            },
            vec!["note"],
        ),
        (
            pb::CreateReferralRequest {
                priority: 0,
                need: 0,
                ..referral("e", "C-1")
            },
            vec!["need", "priority"],
        ),
        (
            pb::CreateReferralRequest {
                client_id: "bad id".into(),
                need: 0,
                priority: 0,
                note: "x".repeat(10 * 1024),
                ..Default::default()
            },
            vec!["client_id", "need", "priority", "note"],
        ),
    ];
    for (request, fields) in cases {
        let status = referrals
            .create_referral(with_token(&teller, request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let bad_request = status
            .get_details_bad_request()
            .expect("google.rpc.BadRequest details");
        let named: Vec<&str> = bad_request
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(named, fields);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM referrals").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM work_items").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE source = 'referrals'")
            .await,
        0
    );
    app.stop().await;
}

async fn the_wrong_role_is_denied_and_a_missing_or_expired_token_is_unauthenticated(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    let mut referrals = app.referrals();
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let status = referrals
        .create_referral(with_token(&rm, referral("x", "C-000001")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let admin = app.token("ADM-1", Role::CampaignAdmin, "B-001");
    let status = referrals
        .create_referral(with_token(&admin, referral("y", "C-000001")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let status = app
        .directory()
        .upsert_branch(with_token(
            &teller,
            pb::UpsertBranchRequest {
                branch: Some(pb::Branch {
                    branch_id: "B-009".into(),
                    name: "x".into(),
                    city: "y".into(),
                    time_zone: String::new(),
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let status = referrals
        .create_referral(tonic::Request::new(referral("z", "C-000001")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let expired = app.expired_token("B-001-T-1", Role::Teller, "B-001");
    let status = referrals
        .create_referral(with_token(&expired, referral("z", "C-000001")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = referrals
        .create_referral(with_token("not-a-jwt", referral("z", "C-000001")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(app.count("SELECT COUNT(*) FROM referrals").await, 0);
    app.stop().await;
}

async fn an_rm_reads_clients_in_coverage_and_a_teller_sees_pii_masked(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000003", "B-001", Some("B-001-RM-1"))
        .await;
    let mut clients = app.clients();
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let full = clients
        .get_client(with_token(
            &rm,
            pb::GetClientRequest {
                client_id: "C-000003".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    assert_eq!(full.phone, "13812345678");
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let masked = clients
        .get_client(with_token(
            &teller,
            pb::GetClientRequest {
                client_id: "C-000003".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    assert_eq!(masked.phone, "138****5678");
    assert_eq!(masked.national_id, "1101**********1234");
    let other_rm = app.token("B-001-RM-2", Role::Rm, "B-001");
    let status = clients
        .get_client(with_token(
            &other_rm,
            pb::GetClientRequest {
                client_id: "C-000003".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    app.stop().await;
}

async fn older_directory_news_does_not_roll_routing_back(backend: Backend) {
    use crm_bus::MessageHandler;
    use crm_domain::messages::{STAFF_CHANGED, StaffChanged};
    use sea_orm::TransactionTrait;

    let app = spawn_app(backend).await;
    let news = |capacity: i32, minutes_ago: i64| {
        let message = StaffChanged {
            staff_id: "B-001-RM-9".into(),
            role: Role::Rm,
            branch_id: "B-001".into(),
            active: true,
            capacity,
            out_of_office_until: None,
            updated_at: chrono::Utc::now() - chrono::Duration::minutes(minutes_ago),
        };
        crm_bus::Envelope::new(STAFF_CHANGED, STAFF_CHANGED, &message).unwrap()
    };
    for (capacity, minutes_ago) in [(5, 1), (3, 10), (7, 0)] {
        let transaction = app.db.begin().await.unwrap();
        crm_referrals::Projections::default()
            .handle(&transaction, &news(capacity, minutes_ago))
            .await
            .unwrap();
        transaction.commit().await.unwrap();
    }
    // The copy took 5, ignored the older 3, then took the newest 7.
    assert_eq!(
        app.count(
            "SELECT CAST(capacity AS BIGINT) FROM routing_staff WHERE staff_id = 'B-001-RM-9'"
        )
        .await,
        7
    );
    app.stop().await;
}

on_both_backends!(
    a_tellers_referral_reaches_the_rms_stream_within_a_second,
    without_a_primary_rm_the_tellers_pair_then_the_pool_then_the_manager_get_it,
    the_same_idempotency_key_twice_makes_one_referral,
    bad_input_names_every_bad_field_and_writes_nothing,
    the_wrong_role_is_denied_and_a_missing_or_expired_token_is_unauthenticated,
    an_rm_reads_clients_in_coverage_and_a_teller_sees_pii_masked,
    older_directory_news_does_not_roll_routing_back,
);
