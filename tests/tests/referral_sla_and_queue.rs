//! The acceptance clock and the RM's queue, over PostgreSQL + RabbitMQ and the
//! embedded default: SLA escalation and reassignment with a controllable clock (and
//! two runners at once), a logged contact stopping the clock, unacknowledged items
//! pushed again on reconnect, a snoozed item coming back, and a walk-in's referral
//! linked once they become a client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_referrals::{SlaJob, SlaReport};
use crm_testkit::{Backend, TestApp, spawn_app, with_token};
use tokio_stream::StreamExt;

async fn refer(app: &TestApp, client_id: &str) -> pb::Referral {
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    app.referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: uuid::Uuid::now_v7().to_string(),
                client_id: client_id.into(),
                need: pb::Need::WealthManagement as i32,
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap()
}

async fn get(app: &TestApp, referral_id: &str) -> pb::Referral {
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    app.referrals()
        .get_referral(with_token(
            &system,
            pb::GetReferralRequest {
                referral_id: referral_id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap()
}

fn due(referral: &pb::Referral) -> DateTime<Utc> {
    let at = referral.sla_due_at.unwrap();
    DateTime::from_timestamp(at.seconds, 0).unwrap()
}

async fn sla_escalates_then_reassigns(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-300", "B-001", Some("B-001-RM-1")).await;
    app.seed_client("C-301", "B-001", Some("B-001-RM-1")).await;
    let lapsing = refer(&app, "C-300").await;
    let contacted = refer(&app, "C-301").await;
    // RM-1 calls C-301 before accepting: that referral's clock stops.
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    app.clients()
        .log_interaction(with_token(
            &rm1,
            pb::LogInteractionRequest {
                client_id: "C-301".into(),
                channel: pb::InteractionChannel::Phone as i32,
                summary: "called back about the referral".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    app.wait_for_count(
        &format!(
            "SELECT COUNT(*) FROM referrals WHERE referral_id = '{}' AND sla_stopped_at IS NOT NULL",
            contacted.referral_id
        ),
        1,
        Duration::from_secs(10),
    )
    .await;

    let job = SlaJob {
        db: app.db.clone(),
        sla: Default::default(),
        calendar: Default::default(),
    };
    // Before the deadline: nothing.
    let before = job
        .run(due(&lapsing) - chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(before, SlaReport::default());
    // Past it, two runners at once: one escalation between them.
    let after = due(&lapsing) + chrono::Duration::minutes(1);
    let (one, two) = tokio::join!(job.run(after), job.run(after));
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(
        (
            one.escalated + two.escalated,
            one.reassigned + two.reassigned
        ),
        (1, 0)
    );
    let escalated = get(&app, &lapsing.referral_id).await;
    assert!(escalated.escalated);
    assert_eq!(escalated.assigned_rm_id, "B-001-RM-1");
    assert!(due(&escalated) > after, "a second window opens");
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    let managers_queue = app
        .referrals()
        .list_work_items(with_token(&manager, pb::ListWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .work_items;
    let alert = managers_queue
        .iter()
        .find(|item| item.source_id == lapsing.referral_id)
        .expect("the manager has a work item for the breach");
    assert_eq!(alert.kind, pb::WorkItemKind::FollowUp as i32);
    assert!(alert.title.contains("SLA breach"), "{}", alert.title);
    // The same run again: already escalated, nothing new.
    assert_eq!(job.run(after).await.unwrap(), SlaReport::default());

    // The second breach moves it down the chain: past RM-1 to the teller's pair.
    let later = due(&escalated) + chrono::Duration::minutes(1);
    let report = job.run(later).await.unwrap();
    assert_eq!(
        report,
        SlaReport {
            escalated: 0,
            reassigned: 1
        }
    );
    let moved = get(&app, &lapsing.referral_id).await;
    assert_eq!(moved.assigned_rm_id, "B-001-RM-2");
    assert_eq!(moved.status, pb::ReferralStatus::Assigned as i32);
    let actions: Vec<(String, String)> = moved
        .history
        .iter()
        .map(|c| (c.action.clone(), c.actor_id.clone()))
        .collect();
    assert_eq!(
        actions[1..],
        [
            ("escalated".to_owned(), "system:referral-sla".to_owned()),
            ("reassigned".to_owned(), "system:referral-sla".to_owned()),
        ]
    );
    assert!(moved.history[2].reason.contains("second SLA breach"));
    // Both RMs see why.
    let rm1_queue = app
        .referrals()
        .list_work_items(with_token(&rm1, pb::ListWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .work_items;
    let closed = rm1_queue
        .iter()
        .find(|item| item.source_id == lapsing.referral_id)
        .unwrap();
    assert_eq!(closed.state, pb::WorkItemState::Done as i32);
    assert!(
        closed
            .outcome
            .contains("reassigned to B-001-RM-2 by system:referral-sla")
    );
    // The stopped clock never breached, however late it got.
    let stopped = get(&app, &contacted.referral_id).await;
    assert!(!stopped.escalated);
    assert_eq!(
        job.run(later + chrono::Duration::days(30))
            .await
            .unwrap()
            .escalated,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn sla_escalates_then_reassigns_on_postgres_and_rabbitmq() {
    sla_escalates_then_reassigns(Backend::Distributed).await;
}

#[tokio::test]
async fn sla_escalates_then_reassigns_on_the_embedded_default() {
    sla_escalates_then_reassigns(Backend::Embedded).await;
}

type Stream = tonic::Streaming<pb::WatchWorkItemsResponse>;

async fn open_stream(app: &TestApp, token: &str) -> Stream {
    app.referrals()
        .watch_work_items(with_token(token, pb::WatchWorkItemsRequest {}))
        .await
        .unwrap()
        .into_inner()
}

/// The next item on `stream` matching `want`, within a few seconds.
async fn next_matching(stream: &mut Stream, want: impl Fn(&pb::WorkItem) -> bool) -> pb::WorkItem {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the item arrives in time")
            .expect("the stream stays open")
            .unwrap();
        let item = message.work_item.unwrap();
        if want(&item) {
            return item;
        }
    }
}

async fn unacked_again_and_snoozed_back(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-500", "B-001", Some("B-001-RM-1")).await;
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    let mut stream = open_stream(&app, &rm1).await;
    let referral = refer(&app, "C-500").await;
    let is_it = |item: &pb::WorkItem| item.source_id == referral.referral_id;
    let first = next_matching(&mut stream, is_it).await;
    assert!(first.acked_at.is_none());
    // The phone drops the connection before acknowledging: on reconnect the item
    // is pushed again.
    drop(stream);
    let mut stream = open_stream(&app, &rm1).await;
    let again = next_matching(&mut stream, is_it).await;
    assert_eq!(again.work_item_id, first.work_item_id);
    // Acknowledged, then snoozed for a second: it goes quiet, then comes back open.
    app.referrals()
        .ack_work_item(with_token(
            &rm1,
            pb::AckWorkItemRequest {
                work_item_id: first.work_item_id.clone(),
            },
        ))
        .await
        .unwrap();
    let until = Utc::now() + chrono::Duration::seconds(1);
    app.referrals()
        .snooze_work_item(with_token(
            &rm1,
            pb::SnoozeWorkItemRequest {
                work_item_id: first.work_item_id.clone(),
                until: Some(prost_types::Timestamp {
                    seconds: until.timestamp(),
                    nanos: i32::try_from(until.timestamp_subsec_nanos()).unwrap(),
                }),
            },
        ))
        .await
        .unwrap();
    let snoozed = next_matching(&mut stream, |item| {
        is_it(item) && item.state == pb::WorkItemState::Snoozed as i32
    })
    .await;
    let back = next_matching(&mut stream, |item| {
        is_it(item) && item.state == pb::WorkItemState::Open as i32
    })
    .await;
    assert!(back.version > snoozed.version);
    assert!(back.snoozed_until.is_none());
    app.stop().await;
}

#[tokio::test]
async fn unacked_items_again_and_snoozed_items_back_on_postgres_and_rabbitmq() {
    unacked_again_and_snoozed_back(Backend::Distributed).await;
}

#[tokio::test]
async fn unacked_items_again_and_snoozed_items_back_on_the_embedded_default() {
    unacked_again_and_snoozed_back(Backend::Embedded).await;
}

#[tokio::test]
async fn a_walk_in_who_becomes_a_client_is_linked() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 2).await;
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let walk_in = app
        .referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: uuid::Uuid::now_v7().to_string(),
                prospect: Some(pb::Prospect {
                    full_name: "Soon Client".into(),
                    phone: "13812345678".into(),
                }),
                need: pb::Need::Payroll as i32,
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap();
    // Core banking opens the account (the testkit's clients carry that phone).
    app.seed_client("C-600", "B-001", None).await;
    app.wait_for_count(
        &format!(
            "SELECT COUNT(*) FROM referrals WHERE referral_id = '{}' AND client_id = 'C-600'",
            walk_in.referral_id
        ),
        1,
        Duration::from_secs(10),
    )
    .await;
    let linked = get(&app, &walk_in.referral_id).await;
    assert_eq!(linked.client_id, "C-600");
    assert!(linked.history.iter().any(|c| c.action == "linked"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE message_type = 'referral.linked'")
            .await,
        1
    );
    // The linked referral now blocks a second one for the client and that need.
    let again = app
        .referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: uuid::Uuid::now_v7().to_string(),
                client_id: "C-600".into(),
                need: pb::Need::Payroll as i32,
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.referral.unwrap().duplicate_of, walk_in.referral_id);
    app.stop().await;
}

/// A phone on a flaky network: the stream is dropped and reopened every few
/// hundred milliseconds while referrals keep arriving. Across the connections the
/// RM sees every item, and no connection shows the same version of an item twice
/// (the snapshot and the live feed overlap without duplicating).
async fn a_flaky_phone_sees_every_item(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    for n in 0..40 {
        app.seed_client(&format!("C-8{n:02}"), "B-001", Some("B-001-RM-1"))
            .await;
    }
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    let producer = {
        let app = &app;
        async move {
            let mut ids = Vec::new();
            for n in 0..40 {
                ids.push(refer(app, &format!("C-8{n:02}")).await.referral_id);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            ids
        }
    };
    let phone = {
        let app = &app;
        let rm1 = rm1.clone();
        async move {
            let mut seen = std::collections::BTreeSet::new();
            let stop = tokio::time::Instant::now() + Duration::from_secs(4);
            while tokio::time::Instant::now() < stop {
                let mut stream = open_stream(app, &rm1).await;
                let mut this_connection = std::collections::BTreeSet::new();
                let reconnect_at = tokio::time::Instant::now() + Duration::from_millis(300);
                while let Ok(Some(message)) =
                    tokio::time::timeout_at(reconnect_at, stream.next()).await
                {
                    let item = message.unwrap().work_item.unwrap();
                    assert!(
                        this_connection.insert((item.work_item_id.clone(), item.version)),
                        "{} v{} sent twice on one connection",
                        item.work_item_id,
                        item.version
                    );
                    seen.insert(item.source_id);
                }
            }
            seen
        }
    };
    let (ids, seen) = tokio::join!(producer, phone);
    for id in &ids {
        assert!(seen.contains(id), "referral {id} never reached the phone");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_flaky_phone_sees_every_item_on_postgres_and_rabbitmq() {
    a_flaky_phone_sees_every_item(Backend::Distributed).await;
}

#[tokio::test]
async fn a_flaky_phone_sees_every_item_on_the_embedded_default() {
    a_flaky_phone_sees_every_item(Backend::Embedded).await;
}
