//! What operations see of routing as metrics: how far behind the source routing's
//! copies of the directory run (`crm.referrals.routing_copy.lag`), and how many
//! branches keep referrals waiting for someone to route them to
//! (`crm.referrals.unrouted_branches`), read from the process's Prometheus
//! figures. Its own test binary: the meter provider is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_domain::Role;
use crm_domain::sla::{BusinessCalendar, SlaPolicy};
use crm_proto::v1 as pb;
use crm_referrals::SlaJob;
use crm_testkit::Metrics;
use crm_testkit::{Backend, spawn_app, with_token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_copy_lag_and_unrouted_branches_are_metrics() {
    let app = spawn_app(Backend::Embedded).await;
    // Directory news reaches routing's copies: each copy's lag is measured.
    app.seed_branch("B-001", 2).await;
    // A referral at a branch nobody staffs waits; past the alert time the SLA
    // pass counts the branch.
    let teller = app.token("B-406-T-1", Role::Teller, "B-406");
    let waiting = app
        .referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: "metrics-1".into(),
                client_id: "C-40601".into(),
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
    assert_eq!(waiting.status, pb::ReferralStatus::New as i32);
    let job = SlaJob {
        db: app.db.clone(),
        sla: SlaPolicy::default(),
        calendar: BusinessCalendar::default(),
        expire_after: chrono::Duration::days(30),
        unrouted_alert_after: chrono::Duration::minutes(15),
    };
    job.run(chrono::Utc::now() + chrono::Duration::minutes(20))
        .await
        .unwrap();

    let metrics = Metrics(crm_telemetry::render_prometheus());
    let staff_copies = metrics.sum(
        "crm_referrals_routing_copy_lag_seconds_count",
        &[("copy", "staff")],
    );
    assert!(
        staff_copies >= 3.0,
        "a manager, a teller, two RMs: {staff_copies}\n{}",
        metrics.0
    );
    assert_eq!(
        metrics.sum("crm_referrals_unrouted_branches", &[]),
        1.0,
        "one branch, B-406, keeps a referral waiting"
    );
    app.stop().await;
}
