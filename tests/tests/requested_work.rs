//! Work any service asks the RM queue for (`work_items.requested`): made once per
//! source key, given to the RM asked for or routed by the chain (primary RM →
//! least-loaded RM of the home branch by open items → manager), pushed on the RM's
//! stream, kept unassigned (never dropped) when nobody can take it yet, and its
//! completion reported back. Over PostgreSQL + RabbitMQ and the embedded default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use crm_domain::Role;
use crm_domain::messages::{RequestedWorkItem, WORK_ITEMS_REQUESTED, WorkItemsRequested};
use crm_domain::referral::{Priority, WorkItemKind};
use crm_domain::sla::{BusinessCalendar, SlaPolicy};
use crm_proto::v1 as pb;
use crm_referrals::SlaJob;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use sea_orm::TransactionTrait;
use tokio_stream::StreamExt;

fn asked(source_key: &str, client_id: &str, rm_id: Option<&str>) -> RequestedWorkItem {
    RequestedWorkItem {
        source_key: source_key.into(),
        kind: WorkItemKind::Alert,
        client_id: client_id.into(),
        title: format!("Alert {source_key}"),
        detail: "large transfer out".into(),
        priority: Priority::Urgent,
        due_at: None,
        rm_id: rm_id.map(str::to_owned),
        home_branch_id: None,
    }
}

/// Sends a request as the events service does: through its outbox.
async fn request(app: &TestApp, items: Vec<RequestedWorkItem>) {
    let message = WorkItemsRequested {
        requested_by: "events".into(),
        items,
    };
    let transaction = app.db.begin().await.unwrap();
    crm_bus::outbox::enqueue_event(
        &transaction,
        "events",
        WORK_ITEMS_REQUESTED,
        WORK_ITEMS_REQUESTED,
        &message,
    )
    .await
    .unwrap();
    transaction.commit().await.unwrap();
}

async fn holder(app: &TestApp, source_key: &str) -> String {
    let sql = format!("SELECT rm_id FROM work_items WHERE source_id = 'events:{source_key}'");
    let row = sea_orm::ConnectionTrait::query_one_raw(
        &app.db,
        sea_orm::Statement::from_string(app.db.get_database_backend(), sql),
    )
    .await
    .unwrap()
    .unwrap();
    row.try_get_by_index::<String>(0).unwrap()
}

fn count_of(keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("'events:{k}'")).collect();
    format!(
        "SELECT COUNT(*) FROM work_items WHERE source_id IN ({})",
        keys.join(", ")
    )
}

on_both_backends!(
    requested_items_are_made_once_routed_streamed_and_reported_back,
    a_campaign_sized_request_is_made_whole,
);

/// Thousands of items in one message (a campaign's launch): past the 65,535
/// parameters one PostgreSQL statement takes, made in one transaction all the same.
async fn a_campaign_sized_request_is_made_whole(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let items: Vec<RequestedWorkItem> = (0..2_500)
        .map(|n| RequestedWorkItem {
            kind: WorkItemKind::CampaignTask,
            ..asked(&format!("task:{n}"), "C-000001", None)
        })
        .collect();
    request(&app, items).await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE kind = 'campaign_task' AND rm_id = 'B-001-RM-1'",
        2_500,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE message_type = 'work_items.assigned'")
            .await,
        1,
        "one message back for the batch"
    );
    app.stop().await;
}

async fn requested_items_are_made_once_routed_streamed_and_reported_back(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    app.seed_client("C-000002", "B-001", None).await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM routing_clients WHERE client_id = 'C-000002'",
        1,
        Duration::from_secs(10),
    )
    .await;
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    let mut stream = app
        .referrals()
        .watch_work_items(with_token(&rm1, pb::WatchWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner();

    request(
        &app,
        vec![
            asked("alert:1", "C-000001", None),
            asked("alert:2", "C-000002", None),
            asked("alert:3", "C-000002", Some("B-001-RM-1")),
            // Nobody routing knows of: no coverage, no branch given.
            asked("alert:4", "C-000009", None),
        ],
    )
    .await;
    let all = ["alert:1", "alert:2", "alert:3", "alert:4"];
    app.wait_for_count(&count_of(&all), 4, Duration::from_secs(10))
        .await;
    assert_eq!(holder(&app, "alert:1").await, "B-001-RM-1", "primary RM");
    assert_eq!(
        holder(&app, "alert:2").await,
        "B-001-RM-2",
        "least-loaded of the home branch, counting the item just given to RM-1"
    );
    assert_eq!(
        holder(&app, "alert:3").await,
        "B-001-RM-1",
        "asked for by name"
    );
    assert_eq!(holder(&app, "alert:4").await, "", "kept, for nobody yet");
    // In no one's queue: an RM can't act on it (an empty holder is not theirs).
    let waiting_id = {
        let sql =
            "SELECT work_item_id FROM work_items WHERE source_id = 'events:alert:4'".to_owned();
        let row = sea_orm::ConnectionTrait::query_one_raw(
            &app.db,
            sea_orm::Statement::from_string(app.db.get_database_backend(), sql),
        )
        .await
        .unwrap()
        .unwrap();
        row.try_get_by_index::<String>(0).unwrap()
    };
    let refused = app
        .referrals()
        .complete_work_item(with_token(
            &rm1,
            pb::CompleteWorkItemRequest {
                work_item_id: waiting_id,
                outcome: "done".into(),
                note: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    // RM-1's phone gets its two.
    let mut on_phone = Vec::new();
    while on_phone.len() < 2 {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the items reach the RM's stream")
            .unwrap()
            .unwrap()
            .work_item
            .unwrap();
        on_phone.push(item.source_id);
    }
    on_phone.sort();
    assert_eq!(on_phone, vec!["events:alert:1", "events:alert:3"]);

    // Asked again (a resend, a relaunch): nothing twice; the new one is made.
    request(
        &app,
        vec![
            asked("alert:1", "C-000001", None),
            asked("alert:5", "C-000001", None),
        ],
    )
    .await;
    app.wait_for_count(&count_of(&["alert:5"]), 1, Duration::from_secs(10))
        .await;
    assert_eq!(app.count(&count_of(&["alert:1"])).await, 1);

    // Completed by its RM: the asking service hears of it.
    let item_id = {
        let sql =
            "SELECT work_item_id FROM work_items WHERE source_id = 'events:alert:1'".to_owned();
        let row = sea_orm::ConnectionTrait::query_one_raw(
            &app.db,
            sea_orm::Statement::from_string(app.db.get_database_backend(), sql),
        )
        .await
        .unwrap()
        .unwrap();
        row.try_get_by_index::<String>(0).unwrap()
    };
    app.referrals()
        .complete_work_item(with_token(
            &rm1,
            pb::CompleteWorkItemRequest {
                work_item_id: item_id,
                outcome: "funds kept".into(),
                note: "called, client stays".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM outbox WHERE message_type = 'work_item.completed' \
             AND payload LIKE '%\"source_key\":\"alert:1\"%' \
             AND payload LIKE '%funds kept: called, client stays%'"
        )
        .await,
        1
    );

    // The client book announces the unknown client: the SLA pass routes its item.
    app.seed_client("C-000009", "B-001", None).await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM routing_clients WHERE client_id = 'C-000009'",
        1,
        Duration::from_secs(10),
    )
    .await;
    let job = SlaJob {
        db: app.db.clone(),
        sla: SlaPolicy::default(),
        calendar: BusinessCalendar::default(),
        expire_after: chrono::Duration::days(30),
        unrouted_alert_after: chrono::Duration::minutes(15),
    };
    let report = job.run(chrono::Utc::now()).await.unwrap();
    assert_eq!(report.work_items_routed_after_waiting, 1, "{report:?}");
    assert_eq!(report.unassigned_work_items, 0);
    assert!(holder(&app, "alert:4").await.starts_with("B-001-RM-"));
    app.stop().await;
}
