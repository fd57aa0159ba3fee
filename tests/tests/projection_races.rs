//! Routing's copies of the directory never go backwards, even when two replicas
//! apply an older and a newer message at the same moment: the "only if newer"
//! condition is part of the write, not a read before it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_bus::{Envelope, MessageHandler};
use crm_domain::Role;
use crm_domain::messages::{STAFF_CHANGED, StaffChanged};
use crm_testkit::{Backend, spawn_app};
use sea_orm::TransactionTrait;

fn staff_changed(capacity: i32, updated_at: DateTime<Utc>) -> Envelope {
    let message = StaffChanged {
        staff_id: "B-001-RM-1".into(),
        role: Role::Rm,
        branch_id: "B-001".into(),
        active: true,
        capacity,
        out_of_office_until: None,
        updated_at,
    };
    Envelope::new(STAFF_CHANGED, STAFF_CHANGED, &message).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_message_applied_beside_a_newer_one_never_wins() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 2).await;
    let now = Utc::now() + chrono::Duration::hours(1);
    let newer = staff_changed(7, now + chrono::Duration::minutes(2));
    let older = staff_changed(3, now + chrono::Duration::minutes(1));

    // Replica A applies the newer news and holds its transaction open…
    let replica_a = app.db.begin().await.unwrap();
    crm_referrals::Projections::default()
        .handle(&replica_a, &newer)
        .await
        .unwrap();
    // …while replica B applies the older news, reading the row as it was.
    let db = app.db.clone();
    let replica_b = tokio::spawn(async move {
        let transaction = db.begin().await.unwrap();
        crm_referrals::Projections::default()
            .handle(&transaction, &older)
            .await
            .unwrap();
        transaction.commit().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    replica_a.commit().await.unwrap();
    replica_b.await.unwrap();

    let capacity = app
        .count("SELECT CAST(capacity AS BIGINT) FROM routing_staff WHERE staff_id = 'B-001-RM-1'")
        .await;
    assert_eq!(capacity, 7, "the newer news stands");
    app.stop().await;
}
