//! A stored row whose status, role or tier no value of its type has fails once and
//! loudly — logged, answered INTERNAL — instead of passing as UNSPECIFIED or
//! quietly dropping a routing candidate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use sea_orm::ConnectionTrait;

async fn corrupt(app: &TestApp, sql: &str) {
    let changed = app
        .db
        .execute_unprepared(sql)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1, "{sql}");
}

async fn create_referral(
    app: &TestApp,
    key: &str,
    client_id: &str,
) -> Result<pb::Referral, tonic::Status> {
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    Ok(app
        .referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: key.into(),
                client_id: client_id.into(),
                need: pb::Need::WealthManagement as i32,
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .referral
        .unwrap())
}

async fn a_referral_with_an_unknown_status_is_an_internal_error(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let created = create_referral(&app, "k-1", "C-000001").await.unwrap();
    corrupt(
        &app,
        &format!(
            "UPDATE referrals SET status = 'archived' WHERE referral_id = '{}'",
            created.referral_id
        ),
    )
    .await;
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let error = app
        .referrals()
        .get_referral(with_token(
            &teller,
            pb::GetReferralRequest {
                referral_id: created.referral_id,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Internal, "{error:?}");
    assert_eq!(
        error.message(),
        "internal error",
        "the cause stays in the log"
    );
    app.stop().await;
}

async fn a_routing_candidate_with_an_unknown_role_stops_routing_instead_of_being_skipped(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    corrupt(
        &app,
        "UPDATE routing_staff SET role = 'superuser' WHERE staff_id = 'B-001-RM-1'",
    )
    .await;
    let error = create_referral(&app, "k-1", "C-000001").await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Internal, "{error:?}");
    app.stop().await;
}

async fn a_client_with_an_unknown_tier_is_an_internal_error(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    corrupt(
        &app,
        "UPDATE clients SET tier = 'platinum' WHERE client_id = 'C-000001'",
    )
    .await;
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let error = app
        .clients()
        .get_client(with_token(
            &rm,
            pb::GetClientRequest {
                client_id: "C-000001".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Internal, "{error:?}");
    app.stop().await;
}

on_both_backends!(
    a_referral_with_an_unknown_status_is_an_internal_error,
    a_routing_candidate_with_an_unknown_role_stops_routing_instead_of_being_skipped,
    a_client_with_an_unknown_tier_is_an_internal_error,
);
