//! Directory writes are authorised against what is stored as well as what is
//! asked: a branch manager cannot move, deactivate or re-role another branch's
//! staff by naming their own branch in the request, nor pair their teller with
//! another branch's RM. Every directory write, allowed or refused, is on the trail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use tonic::Code;

async fn upsert_staff(
    app: &TestApp,
    token: &str,
    staff_id: &str,
    branch_id: &str,
    active: bool,
) -> Result<pb::Staff, tonic::Status> {
    Ok(app
        .directory()
        .upsert_staff(with_token(
            token,
            pb::UpsertStaffRequest {
                staff: Some(pb::Staff {
                    staff_id: staff_id.into(),
                    name: format!("Staff {staff_id}"),
                    role: pb::StaffRole::Rm as i32,
                    branch_id: branch_id.into(),
                    active,
                    capacity: 10,
                    out_of_office_until: None,
                }),
            },
        ))
        .await?
        .into_inner()
        .staff
        .unwrap())
}

async fn stored_staff(app: &TestApp, staff_id: &str) -> (String, bool) {
    let system = app.token("SYS-TEST", Role::System, "HQ-001");
    let staff = app
        .directory()
        .get_staff(with_token(
            &system,
            pb::GetStaffRequest {
                staff_id: staff_id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .staff
        .unwrap();
    (staff.branch_id, staff.active)
}

async fn trail_of_actor(app: &TestApp, actor_id: &str) -> Vec<(String, String)> {
    let system = app.token("SYS-TEST", Role::System, "HQ-001");
    app.clients()
        .list_audit_events(with_token(
            &system,
            pb::ListAuditEventsRequest {
                actor_id: actor_id.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events
        .into_iter()
        .map(|line| (line.action, line.decision))
        .collect()
}

async fn a_branch_manager_cannot_take_over_another_branchs_staff(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_branch("B-002", 2).await;
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");

    // Moving B-002's RM into B-001 and deactivating them, by naming B-001.
    let error = upsert_staff(&app, &manager, "B-002-RM-1", "B-001", false)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    assert_eq!(
        stored_staff(&app, "B-002-RM-1").await,
        ("B-002".to_owned(), true),
        "nothing was written"
    );
    // Their own staff they may change.
    let changed = upsert_staff(&app, &manager, "B-001-RM-1", "B-001", false)
        .await
        .unwrap();
    assert!(!changed.active);
    // Both are on the trail, as the manager's.
    let trail = trail_of_actor(&app, "B-001-M").await;
    assert!(
        trail.contains(&("directory.upsert_staff".to_owned(), "denied".to_owned())),
        "{trail:?}"
    );
    assert!(
        trail.contains(&("directory.upsert_staff".to_owned(), "allowed".to_owned())),
        "{trail:?}"
    );
    app.stop().await;
}

async fn a_branch_manager_cannot_pair_their_teller_with_another_branchs_rm(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_branch("B-002", 2).await;
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    let error = app
        .directory()
        .pair_teller(with_token(
            &manager,
            pb::PairTellerRequest {
                teller_id: "B-001-T-1".into(),
                rm_id: "B-002-RM-1".into(),
                valid_from: None,
                valid_until: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    app.stop().await;
}

on_both_backends!(
    a_branch_manager_cannot_take_over_another_branchs_staff,
    a_branch_manager_cannot_pair_their_teller_with_another_branchs_rm,
);
