//! A referral is never refused for want of routing data (issue 10, hole 12): with
//! nobody in the branch routing can give it to, it is stored NEW with the reason it
//! waits, routed as soon as the directory's news arrives (in the transaction that
//! applies it) or by the SLA pass, and a branch that keeps its referrals waiting
//! shows on the SLA report. Over PostgreSQL + RabbitMQ and the embedded default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use crm_domain::Role;
use crm_domain::sla::{BusinessCalendar, SlaPolicy};
use crm_proto::v1 as pb;
use crm_referrals::SlaJob;
use crm_referrals::store::routing_staff;
use crm_testkit::{TestApp, on_both_backends, spawn_app, with_token};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};

fn sla_job(app: &TestApp) -> SlaJob {
    SlaJob {
        db: app.db.clone(),
        sla: SlaPolicy::default(),
        calendar: BusinessCalendar::default(),
        expire_after: chrono::Duration::days(30),
        unrouted_alert_after: chrono::Duration::minutes(15),
    }
}

async fn refer(app: &TestApp, branch: &str, client_id: &str) -> pb::Referral {
    refer_with_key(app, branch, client_id, &uuid::Uuid::now_v7().to_string()).await
}

async fn refer_with_key(app: &TestApp, branch: &str, client_id: &str, key: &str) -> pb::Referral {
    let teller = app.token(&format!("{branch}-T-1"), Role::Teller, branch);
    app.referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: key.into(),
                client_id: client_id.into(),
                need: pb::Need::Loan as i32,
                priority: pb::Priority::High as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("a valid referral is always taken")
        .into_inner()
        .referral
        .unwrap()
}

/// Waits until the referral is held by someone; what it became.
async fn wait_until_routed(app: &TestApp, referral_id: &str) -> pb::Referral {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let referral = app.get_referral(referral_id).await;
        if referral.status == pb::ReferralStatus::Assigned as i32 {
            return referral;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still waiting after 10 s: {referral:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_backends!(
    a_referral_waits_for_a_branch_nobody_staffs_and_is_routed_when_someone_arrives,
    the_sla_pass_routes_a_waiting_referral_and_reports_the_branch,
    a_referral_right_after_a_branch_is_set_up_is_taken_and_routed,
);

async fn a_referral_waits_for_a_branch_nobody_staffs_and_is_routed_when_someone_arrives(
    backend: crm_testkit::Backend,
) {
    let app = spawn_app(backend).await;
    let waiting = refer_with_key(&app, "B-404", "C-40401", "counter-1").await;
    assert_eq!(waiting.status, pb::ReferralStatus::New as i32);
    assert_eq!(waiting.assigned_rm_id, "");
    assert!(
        waiting.routing_reason.starts_with("waiting for routing"),
        "{}",
        waiting.routing_reason
    );
    let decision = waiting.routing_decision.as_ref().unwrap();
    assert_eq!(decision.chosen_rm_id, "");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM work_items WHERE source_id = '{}'",
            waiting.referral_id
        ))
        .await,
        0,
        "nobody's queue holds it yet"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM referral_history WHERE referral_id = '{}' \
             AND action = 'created' AND to_status = 'new' AND reason LIKE 'waiting for routing%'",
            waiting.referral_id
        ))
        .await,
        1,
        "its history says why it waits"
    );
    // The same key again is the same referral, still waiting: nothing twice.
    let again = refer_with_key(&app, "B-404", "C-40401", "counter-1").await;
    assert_eq!(again.referral_id, waiting.referral_id);

    // An RM joins the branch: the directory's news routes it, with no job run.
    app.add_staff("B-404-RM-1", pb::StaffRole::Rm, "B-404")
        .await;
    let routed = wait_until_routed(&app, &waiting.referral_id).await;
    assert_eq!(routed.assigned_rm_id, "B-404-RM-1");
    assert_eq!(routed.routing_reason, "least-loaded RM in branch B-404");
    app.wait_for_count(
        &format!(
            "SELECT COUNT(*) FROM work_items WHERE source_id = '{}' AND rm_id = 'B-404-RM-1' \
             AND state = 'open'",
            waiting.referral_id
        ),
        1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM referral_history WHERE referral_id = '{}' \
             AND action = 'routed' AND actor_id = 'system:routing' AND from_status = 'new'",
            waiting.referral_id
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM routing_staff WHERE staff_id = 'B-404-RM-1' \
             AND open_referrals = 1"
        )
        .await,
        1,
        "it counts toward the RM's load"
    );
    // Its clock starts when someone could first see it.
    let due = routed.sla_due_at.unwrap();
    let assigned_after = routed.updated_at.unwrap();
    assert!(
        due.seconds > assigned_after.seconds,
        "{due:?} {assigned_after:?}"
    );
    app.stop().await;
}

async fn the_sla_pass_routes_a_waiting_referral_and_reports_the_branch(
    backend: crm_testkit::Backend,
) {
    let app = spawn_app(backend).await;
    let waiting = refer(&app, "B-405", "C-40501").await;
    assert_eq!(waiting.status, pb::ReferralStatus::New as i32);
    let job = sla_job(&app);

    // Still inside the alert time: nothing to report.
    let report = job.run(chrono::Utc::now()).await.unwrap();
    assert!(report.unrouted_branches.is_empty(), "{report:?}");
    // Past it, the branch is reported, with how many wait and since when.
    let later = chrono::Utc::now() + chrono::Duration::minutes(16);
    let report = job.run(later).await.unwrap();
    assert_eq!(report.routed_after_waiting, 0);
    assert_eq!(report.unrouted_branches.len(), 1, "{report:?}");
    assert_eq!(report.unrouted_branches[0].branch_id, "B-405");
    assert_eq!(report.unrouted_branches[0].waiting, 1);

    // Routing's copy learns of a manager without the consumer routing anything (a
    // change that arrived while routing could not run): the pass routes it.
    routing_staff::ActiveModel {
        staff_id: Set("B-405-M".into()),
        role: Set(Role::BranchManager),
        branch_id: Set("B-405".into()),
        active: Set(true),
        capacity: Set(10),
        out_of_office_until: Set(None),
        last_assigned_at: Set(None),
        open_referrals: Set(0),
        source_updated_at: Set(chrono::Utc::now()),
    }
    .insert(&app.db)
    .await
    .unwrap();
    let report = job.run(later).await.unwrap();
    assert_eq!(report.routed_after_waiting, 1, "{report:?}");
    assert!(report.unrouted_branches.is_empty(), "{report:?}");
    let routed = app.get_referral(&waiting.referral_id).await;
    assert_eq!(routed.assigned_rm_id, "B-405-M");
    assert!(routed.escalated, "the chain ended at the manager");
    app.stop().await;
}

/// The distributed-mode race the review measured: the branch and its people are set
/// up and the teller's first referral follows at once, before routing's copy has
/// heard of them. The referral is taken, and reaches an RM of the branch.
async fn a_referral_right_after_a_branch_is_set_up_is_taken_and_routed(
    backend: crm_testkit::Backend,
) {
    let app = spawn_app(backend).await;
    for branch in ["B-501", "B-502", "B-503"] {
        app.add_staff(&format!("{branch}-M"), pb::StaffRole::BranchManager, branch)
            .await;
        app.add_staff(&format!("{branch}-RM-1"), pb::StaffRole::Rm, branch)
            .await;
        let referral = refer(&app, branch, &format!("C-{}01", &branch[2..])).await;
        let routed = if referral.status == pb::ReferralStatus::New as i32 {
            wait_until_routed(&app, &referral.referral_id).await
        } else {
            referral
        };
        assert!(
            routed.assigned_rm_id.starts_with(branch),
            "{branch}: {routed:?}"
        );
    }
    app.stop().await;
}
