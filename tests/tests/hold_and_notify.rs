//! Hold-and-notify: a counter at another branch holds a large transfer to another
//! bank; the client's RM gets an URGENT alert on their phone, completes it with a
//! note, and the counter's waiting call returns that note. A retry with the same key
//! raises nothing new; a call nobody answers in time returns unacknowledged. Over
//! PostgreSQL + RabbitMQ and the embedded default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use sea_orm::ConnectionTrait;
use tokio_stream::StreamExt;

fn hold(key: &str, wait_seconds: i32) -> pb::NotifyLargeOutflowRequest {
    pb::NotifyLargeOutflowRequest {
        idempotency_key: key.into(),
        client_id: "C-000001".into(),
        amount: Some(pb::Money {
            minor_units: 80_000_000,
            currency: "CNY".into(),
        }),
        counterparty_bank: "Other Bank".into(),
        branch_id: String::new(),
        wait_seconds,
        transfer_reference: String::new(),
    }
}

async fn notify(
    app: &TestApp,
    token: &str,
    request: pb::NotifyLargeOutflowRequest,
) -> Result<pb::NotifyLargeOutflowResponse, tonic::Status> {
    app.events()
        .notify_large_outflow(with_token(token, request))
        .await
        .map(tonic::Response::into_inner)
}

on_both_backends!(
    the_rm_answers_a_counter_at_another_branch_before_the_money_leaves,
    large_transfers_on_the_feed_are_work_for_the_rm,
    a_private_clients_banker_is_told_too,
    a_client_not_yet_heard_of_is_asked_of_the_client_book,
);

/// A client the events service (and the RM queue) have not heard of yet, as when
/// the book's announcement lags: the events service asks the client book over
/// gRPC where they bank, so the alert still reaches an RM of that branch.
async fn a_client_not_yet_heard_of_is_asked_of_the_client_book(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    for copy in ["event_clients", "routing_clients"] {
        app.wait_for_count(
            &format!("SELECT COUNT(*) FROM {copy} WHERE client_id = 'C-000001'"),
            1,
            Duration::from_secs(10),
        )
        .await;
    }
    // Both copies lag: as if the book's news had not arrived yet.
    for copy in ["event_clients", "routing_clients"] {
        app.db
            .execute_unprepared(&format!("DELETE FROM {copy} WHERE client_id = 'C-000001'"))
            .await
            .unwrap();
    }
    let teller = app.token("B-002-T-1", Role::Teller, "B-002");
    notify(&app, &teller, hold("counter-1", 0)).await.unwrap();
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE client_id = 'C-000001' AND kind = 'alert' \
         AND rm_id LIKE 'B-001-RM-%'",
        1,
        Duration::from_secs(10),
    )
    .await;
    // The question is on the book's trail, in the events service's name.
    app.wait_for_count(
        "SELECT COUNT(*) FROM audit_events WHERE actor_id = 'SYS-EVENTS' \
         AND action = 'client.read' AND client_id = 'C-000001'",
        1,
        Duration::from_secs(10),
    )
    .await;
    app.stop().await;
}

/// A private-banking client's large transfer out: the RM is asked to answer, and
/// the private banker is told too.
async fn a_private_clients_banker_is_told_too(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.add_staff("PB-001", pb::StaffRole::Rm, "B-001").await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    let mut clients = app.clients();
    clients
        .assign_coverage(with_token(
            &system,
            pb::AssignCoverageRequest {
                client_id: "C-000001".into(),
                primary_rm_id: "B-001-RM-1".into(),
                private_banker_id: "PB-001".into(),
                reason: "private banking".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    // 12,000,000 CNY a day: PRIVATE.
    let mut client = clients
        .get_client(with_token(
            &system,
            pb::GetClientRequest {
                client_id: "C-000001".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    client.aum_daily_avg = Some(pb::Money {
        minor_units: 1_200_000_000,
        currency: "CNY".into(),
    });
    clients
        .upsert_client(with_token(
            &system,
            pb::UpsertClientRequest {
                client: Some(client),
            },
        ))
        .await
        .unwrap();
    app.wait_for_count(
        "SELECT COUNT(*) FROM event_client_tiers WHERE client_id = 'C-000001' \
         AND tier = 'private'",
        1,
        Duration::from_secs(10),
    )
    .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM event_clients WHERE client_id = 'C-000001' \
         AND private_banker_id = 'PB-001'",
        1,
        Duration::from_secs(10),
    )
    .await;
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let held = notify(&app, &teller, hold("counter-1", 0)).await.unwrap();
    assert!(!held.acknowledged);
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE rm_id = 'B-001-RM-1' AND kind = 'alert' \
         AND priority = 'urgent'",
        1,
        Duration::from_secs(10),
    )
    .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE rm_id = 'PB-001' AND kind = 'alert' \
         AND title LIKE 'Private client: large transfer out%'",
        1,
        Duration::from_secs(10),
    )
    .await;
    app.stop().await;
}

fn feed_transfer(
    event_id: &str,
    direction: pb::TransferDirection,
    status: pb::TransferStatus,
    reference: &str,
) -> pb::BankEvent {
    pb::BankEvent {
        event_id: event_id.into(),
        client_id: "C-000001".into(),
        occurred_at: Some(crm_grpc::wire::timestamp(chrono::Utc::now())),
        kind: Some(pb::bank_event::Kind::Transfer(pb::Transfer {
            amount: Some(pb::Money {
                minor_units: 80_000_000,
                currency: "CNY".into(),
            }),
            direction: direction as i32,
            counterparty_bank: "Other Bank".into(),
            own_bank: false,
            channel: "online".into(),
            status: status as i32,
            branch_id: String::new(),
            transfer_reference: reference.into(),
        })),
    }
}

/// The feed's PENDING transfer out of a transfer a counter already holds joins
/// that alert; one nobody held raises its own; a large sum in from another bank
/// is a follow-up to keep it.
async fn large_transfers_on_the_feed_are_work_for_the_rm(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let held = notify(
        &app,
        &teller,
        pb::NotifyLargeOutflowRequest {
            transfer_reference: "TX-1".into(),
            ..hold("counter-1", 0)
        },
    )
    .await
    .unwrap();
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    let results = app
        .events()
        .ingest_events(with_token(
            &system,
            pb::IngestEventsRequest {
                events: vec![
                    feed_transfer(
                        "feed-1",
                        pb::TransferDirection::Out,
                        pb::TransferStatus::Pending,
                        "TX-1",
                    ),
                    feed_transfer(
                        "feed-2",
                        pb::TransferDirection::Out,
                        pb::TransferStatus::Pending,
                        "TX-2",
                    ),
                    feed_transfer(
                        "feed-3",
                        pb::TransferDirection::In,
                        pb::TransferStatus::Posted,
                        "TX-3",
                    ),
                ],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(results.iter().all(|r| r.accepted), "{results:?}");
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE rm_id = 'B-001-RM-1' AND kind = 'follow_up' \
         AND title = '800000.00 CNY in from Other Bank'",
        1,
        Duration::from_secs(10),
    )
    .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE rm_id = 'B-001-RM-1' AND kind = 'alert'",
        2,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outflow_alerts").await,
        2,
        "TX-1 joined the counter's alert {}; TX-2 raised its own",
        held.alert_id
    );
    // Another client's transfer reference shows nothing of theirs.
    let refused = notify(
        &app,
        &teller,
        pb::NotifyLargeOutflowRequest {
            client_id: "C-000002".into(),
            transfer_reference: "TX-1".into(),
            ..hold("counter-9", 0)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    app.stop().await;
}

async fn the_rm_answers_a_counter_at_another_branch_before_the_money_leaves(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let mut phone = app
        .referrals()
        .watch_work_items(with_token(&rm, pb::WatchWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    // A counter of another branch holds the transfer and waits for the RM.
    let teller = app.token("B-002-T-1", Role::Teller, "B-002");
    let waiting = {
        let (app_channel, teller) = (app.channel.clone(), teller.clone());
        tokio::spawn(async move {
            crm_proto::v1::event_service_client::EventServiceClient::new(app_channel)
                .notify_large_outflow(with_token(&teller, hold("counter-1", 30)))
                .await
                .map(tonic::Response::into_inner)
        })
    };
    let alert = loop {
        let item = tokio::time::timeout(Duration::from_secs(10), phone.next())
            .await
            .expect("the alert reaches the RM's phone")
            .unwrap()
            .unwrap()
            .work_item
            .unwrap();
        if item.kind == pb::WorkItemKind::Alert as i32 {
            break item;
        }
    };
    assert_eq!(alert.priority, pb::Priority::Urgent as i32);
    assert!(alert.title.contains("800000.00 CNY"), "{}", alert.title);
    assert!(alert.detail.contains("branch B-002"), "{}", alert.detail);
    app.referrals()
        .complete_work_item(with_token(
            &rm,
            pb::CompleteWorkItemRequest {
                work_item_id: alert.work_item_id.clone(),
                outcome: "funds kept".into(),
                note: "client stays; offered a better rate".into(),
                funds_outcome: pb::FundsOutcome::PartlyKept as i32,
                funds_kept: Some(pb::Money {
                    minor_units: 50_000_000,
                    currency: "CNY".into(),
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let answered = waiting.await.unwrap().unwrap();
    assert!(answered.acknowledged, "{answered:?}");
    assert_eq!(answered.rm_id, "B-001-RM-1");
    assert_eq!(
        answered.rm_note,
        "funds kept: client stays; offered a better rate"
    );
    assert_eq!(answered.funds_outcome, pb::FundsOutcome::PartlyKept as i32);
    // Counted for the RM: one alert answered, 500,000 of the 800,000 kept.
    let now = chrono::Utc::now();
    let tally = crm_events::outflow::tally(
        &app.db,
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    )
    .await
    .unwrap();
    assert_eq!(tally.len(), 1, "{tally:?}");
    assert_eq!(
        (
            tally[0].rm_id.as_str(),
            tally[0].answered,
            tally[0].partly_kept,
            tally[0].kept_minor
        ),
        ("B-001-RM-1", 1, 1, 50_000_000)
    );

    // The counter retries (a timeout on its side): the same alert, nothing new.
    let again = notify(&app, &teller, hold("counter-1", 0)).await.unwrap();
    assert_eq!(again.alert_id, answered.alert_id);
    assert!(again.acknowledged);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM work_items WHERE kind = 'alert'")
            .await,
        1
    );

    // Nobody answers within the wait: the counter proceeds.
    let unanswered = notify(&app, &teller, hold("counter-2", 1)).await.unwrap();
    assert!(!unanswered.acknowledged);
    assert_ne!(unanswered.alert_id, answered.alert_id);

    // A wait past two minutes, or an RM at the counter's door, is refused.
    let too_long = notify(&app, &teller, hold("counter-3", 121))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), tonic::Code::InvalidArgument);
    let not_a_counter = notify(&app, &rm, hold("counter-4", 0)).await.unwrap_err();
    assert_eq!(not_a_counter.code(), tonic::Code::PermissionDenied);
    app.stop().await;
}

/// Two replicas of the events service: whichever one takes the RM's answer off
/// the queue, the call waiting on the other returns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_events_replicas_the_answer_reaches_the_waiting_call() {
    let app = spawn_app(Backend::Distributed).await;
    let replica = app.spawn_replica(&["events"]).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    for (n, channel) in [
        app.channel.clone(),
        replica.channel.clone(),
        replica.channel.clone(),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("replica-{n}");
        let waiting = {
            let teller = teller.clone();
            tokio::spawn(async move {
                crm_proto::v1::event_service_client::EventServiceClient::new(channel)
                    .notify_large_outflow(with_token(&teller, hold(&key, 30)))
                    .await
                    .map(tonic::Response::into_inner)
            })
        };
        // The RM answers the alert as soon as it is in their queue.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let item = loop {
            let queue = app
                .referrals()
                .list_work_items(with_token(
                    &rm,
                    pb::ListWorkItemsRequest {
                        states: vec![pb::WorkItemState::Open as i32],
                        kinds: vec![pb::WorkItemKind::Alert as i32],
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            if let Some(item) = queue.work_items.into_iter().next() {
                break item;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no alert for call {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        app.referrals()
            .complete_work_item(with_token(
                &rm,
                pb::CompleteWorkItemRequest {
                    funds_outcome: pb::FundsOutcome::Kept as i32,
                    work_item_id: item.work_item_id,
                    outcome: "funds kept".into(),
                    note: format!("call {n}"),
                    funds_kept: None,
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        let answered = waiting.await.unwrap().unwrap();
        assert!(answered.acknowledged, "call {n}: {answered:?}");
        assert_eq!(answered.rm_note, format!("funds kept: call {n}"));
    }
    replica.stop().await;
    app.stop().await;
}
