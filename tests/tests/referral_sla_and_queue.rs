//! The acceptance clock and the RM's queue, over PostgreSQL + RabbitMQ and the
//! embedded default: SLA escalation and reassignment with a controllable clock (and
//! two runners at once), a logged contact stopping the clock, unacknowledged items
//! pushed again on reconnect, a snoozed item coming back, a walk-in's referral
//! linked once they become a client, deadlines in each branch's own hours, and
//! referrals left untouched expiring.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_domain::Role;
use crm_domain::referral::Priority;
use crm_domain::sla::{BusinessCalendar, SlaPolicy, acceptance_deadline};
use crm_proto::v1 as pb;
use crm_referrals::store::{referral, routing_branch, routing_staff};
use crm_referrals::{SlaJob, SlaReport};
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio_stream::StreamExt;

async fn refer(app: &TestApp, client_id: &str) -> pb::Referral {
    refer_from(app, "B-001", client_id).await
}

async fn refer_from(app: &TestApp, branch: &str, client_id: &str) -> pb::Referral {
    let teller = app.token(&format!("{branch}-T-1"), Role::Teller, branch);
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

/// The SLA job with API.md's deadlines, the default calendar and 30-day expiry.
fn sla_job(app: &TestApp) -> SlaJob {
    SlaJob {
        db: app.db.clone(),
        sla: SlaPolicy::default(),
        calendar: BusinessCalendar::default(),
        expire_after: chrono::Duration::days(30),
        unrouted_alert_after: chrono::Duration::minutes(15),
    }
}

/// `token`'s holder logs a phone call with `client_id`.
async fn log_call(app: &TestApp, token: &str, client_id: &str) {
    app.clients()
        .log_interaction(with_token(
            token,
            pb::LogInteractionRequest {
                client_id: client_id.into(),
                channel: pb::InteractionChannel::Phone as i32,
                summary: "called about the referral".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
}

fn due(referral: &pb::Referral) -> DateTime<Utc> {
    let at = referral.sla_due_at.unwrap();
    DateTime::from_timestamp(at.seconds, 0).unwrap()
}

fn created(referral: &pb::Referral) -> DateTime<Utc> {
    let at = referral.created_at.unwrap();
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap()).unwrap()
}

/// Whole seconds: what `due` reads back.
fn to_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap()
}

async fn deadlines_count_the_branchs_own_hours(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_branch("B-002", 2).await;
    app.set_branch_time_zone("B-002", "Europe/London").await;
    app.seed_client("C-310", "B-001", Some("B-001-RM-1")).await;
    app.seed_client("C-311", "B-002", Some("B-002-RM-1")).await;
    let shanghai = BusinessCalendar::default();
    let london = BusinessCalendar {
        time_zone: chrono_tz::Europe::London,
        ..shanghai.clone()
    };
    let sla = SlaPolicy::default();

    let in_shanghai = refer_from(&app, "B-001", "C-310").await;
    let in_london = refer_from(&app, "B-002", "C-311").await;
    let expect = |calendar: &BusinessCalendar, at: DateTime<Utc>| {
        to_second(acceptance_deadline(&sla, calendar, Priority::Normal, at))
    };
    assert_eq!(due(&in_shanghai), expect(&shanghai, created(&in_shanghai)));
    assert_eq!(due(&in_london), expect(&london, created(&in_london)));
    assert_ne!(
        expect(&london, created(&in_london)),
        expect(&shanghai, created(&in_london)),
        "the two calendars disagree, so the check above means something"
    );

    // The job's second window counts London hours too.
    let job = SlaJob {
        db: app.db.clone(),
        sla,
        calendar: shanghai,
        expire_after: chrono::Duration::days(30),
        unrouted_alert_after: chrono::Duration::minutes(15),
    };
    let after = due(&in_london) + chrono::Duration::minutes(1);
    job.run(after).await.unwrap();
    let escalated = get(&app, &in_london.referral_id).await;
    assert!(escalated.escalated);
    assert_eq!(due(&escalated), expect(&london, after));
    app.stop().await;
}

/// A copy routing lost (or never had: branch time zones came in an upgrade) is
/// rebuilt by republishing the directory; routing's own counters survive it.
async fn republishing_the_directory_rebuilds_routings_copies(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.set_branch_time_zone("B-001", "Europe/London").await;
    let in_london = "SELECT COUNT(*) FROM routing_branches WHERE branch_id = 'B-001' AND time_zone = 'Europe/London'";
    app.seed_client("C-350", "B-001", Some("B-001-RM-1")).await;
    refer(&app, "C-350").await;
    routing_branch::Entity::delete_many()
        .exec(&app.db)
        .await
        .unwrap();
    assert_eq!(app.count(in_london).await, 0);

    let sent = crm_clients::republish_directory(&app.db).await.unwrap();
    assert_eq!(
        sent,
        crm_clients::Republished {
            branches: 1,
            staff: 4,
            pairs: 1
        }
    );
    app.wait_for_count(in_london, 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM routing_staff WHERE staff_id = 'B-001-RM-1' AND open_referrals = 1")
            .await,
        1,
        "routing's own counter is not the directory's to reset"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM routing_pairs WHERE teller_id = 'B-001-T-1' AND rm_id = 'B-001-RM-2'")
            .await,
        1
    );
    app.stop().await;
}

/// After a restore that lost routing's counters, the recount sets them from the
/// open referrals (a closed one no longer counts).
async fn the_recount_restores_routings_load(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    for client in ["C-360", "C-361", "C-362"] {
        app.seed_client(client, "B-001", Some("B-001-RM-1")).await;
    }
    refer(&app, "C-360").await;
    refer(&app, "C-361").await;
    let closed = refer(&app, "C-362").await;
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    app.accept(&rm1, &closed.referral_id).await.unwrap();
    app.referrals()
        .record_referral_outcome(with_token(
            &rm1,
            pb::RecordReferralOutcomeRequest {
                referral_id: closed.referral_id.clone(),
                outcome: pb::ReferralOutcome::Declined as i32,
                note: "moved abroad".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let rm1_holds = |n: i32| {
        format!(
            "SELECT COUNT(*) FROM routing_staff WHERE staff_id = 'B-001-RM-1' AND open_referrals = {n}"
        )
    };
    assert_eq!(app.count(&rm1_holds(2)).await, 1);
    routing_staff::Entity::update_many()
        .col_expr(routing_staff::Column::OpenReferrals, Expr::value(0))
        .exec(&app.db)
        .await
        .unwrap();
    assert_eq!(app.count(&rm1_holds(0)).await, 1);
    let set = crm_referrals::store::recount_open_referrals(&app.db)
        .await
        .unwrap();
    assert!(set >= 3, "every routed staff row is set, got {set}");
    assert_eq!(app.count(&rm1_holds(2)).await, 1);
    app.stop().await;
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
    log_call(&app, &rm1, "C-301").await;
    app.wait_for_count(
        &format!(
            "SELECT COUNT(*) FROM referrals WHERE referral_id = '{}' AND sla_stopped_at IS NOT NULL",
            contacted.referral_id
        ),
        1,
        Duration::from_secs(10),
    )
    .await;

    let job = sla_job(&app);
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
            reassigned: 1,
            expired: 0,
            rerouted: 0,
            ..SlaReport::default()
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

type Stream = tonic::Streaming<pb::WatchWorkItemsResponse>;

async fn open_stream(app: &TestApp, token: &str) -> Stream {
    app.referrals()
        .watch_work_items(with_token(token, pb::WatchWorkItemsRequest::default()))
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

async fn unacked_items_again_and_snoozed_items_back(backend: Backend) {
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

async fn untouched_referrals_expire(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-320", "B-001", Some("B-001-RM-1")).await;
    app.seed_client("C-321", "B-001", Some("B-001-RM-1")).await;
    let forgotten = refer(&app, "C-320").await;
    let worked = refer(&app, "C-321").await;
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    app.accept(&rm1, &worked.referral_id).await.unwrap();
    let job = sla_job(&app);
    let load =
        "SELECT COUNT(*) FROM routing_staff WHERE staff_id = 'B-001-RM-1' AND open_referrals = 2";
    assert_eq!(app.count(load).await, 1);

    // 29 days on, nothing has gone quiet long enough (the forgotten one escalates).
    let early = job
        .run(created(&forgotten) + chrono::Duration::days(29))
        .await
        .unwrap();
    assert_eq!(early.expired, 0);
    // 31 days after the escalation, both are stale; two runners expire each once.
    let late = created(&forgotten) + chrono::Duration::days(60);
    let (one, two) = tokio::join!(job.run(late), job.run(late));
    assert_eq!(one.unwrap().expired + two.unwrap().expired, 2);

    let expired = get(&app, &forgotten.referral_id).await;
    assert_eq!(expired.status, pb::ReferralStatus::Expired as i32);
    let last = expired.history.last().unwrap();
    assert_eq!(last.action, "expired");
    assert_eq!(last.actor_id, "system:referral-sla");
    assert_eq!(
        get(&app, &worked.referral_id).await.status,
        pb::ReferralStatus::Expired as i32,
        "accepted and then left alone: expired too"
    );
    // Every work item of the two closed, the manager's escalation item included.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM work_items WHERE source_id IN ('{}', '{}') AND state <> 'done'",
            forgotten.referral_id, worked.referral_id
        ))
        .await,
        0
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM work_items WHERE source_id = '{}' AND rm_id = 'B-001-M'",
            forgotten.referral_id
        ))
        .await,
        1,
        "the escalation item existed, and is closed"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM routing_staff WHERE staff_id = 'B-001-RM-1' AND open_referrals = 0")
            .await,
        1,
        "no longer the RM's load"
    );
    // Expired is final, and frees the client for a new referral.
    let refused = app.accept(&rm1, &forgotten.referral_id).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("expired"),
        "{}",
        refused.message()
    );
    let again = refer(&app, "C-320").await;
    assert_ne!(again.referral_id, forgotten.referral_id);
    assert!(again.duplicate_of.is_empty());
    app.stop().await;
}

async fn a_contact_keeps_a_referral_from_expiring(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-330", "B-001", Some("B-001-RM-1")).await;
    app.seed_client("C-331", "B-001", Some("B-001-RM-1")).await;
    let called = refer(&app, "C-330").await;
    let quiet = refer(&app, "C-331").await;
    // Both sat for 40 days...
    let forty_days_ago = Utc::now() - chrono::Duration::days(40);
    referral::Entity::update_many()
        .col_expr(referral::Column::UpdatedAt, Expr::value(forty_days_ago))
        .filter(
            referral::Column::ReferralId
                .is_in([called.referral_id.as_str(), quiet.referral_id.as_str()]),
        )
        .exec(&app.db)
        .await
        .unwrap();
    // ...then the holder calls one client today.
    log_call(&app, &app.token("B-001-RM-1", Role::Rm, "B-001"), "C-330").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = referral::Entity::find_by_id(called.referral_id.as_str())
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        if stored.updated_at > forty_days_ago + chrono::Duration::days(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the contact never reached routing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = sla_job(&app);
    let report = job.run(Utc::now()).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        get(&app, &quiet.referral_id).await.status,
        pb::ReferralStatus::Expired as i32
    );
    assert_eq!(
        get(&app, &called.referral_id).await.status,
        pb::ReferralStatus::Assigned as i32,
        "worked on today: not expired"
    );
    app.stop().await;
}

/// Ten devices snooze the same item at once: each change applies to the version
/// it read or is refused with ABORTED, so every version is written (and
/// announced) once and the last one counts every accepted change.
#[tokio::test]
async fn concurrent_changes_to_one_work_item_each_get_their_own_version() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-340", "B-001", Some("B-001-RM-1")).await;
    let referral = refer(&app, "C-340").await;
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    let item = app
        .referrals()
        .list_work_items(with_token(&rm1, pb::ListWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .work_items
        .into_iter()
        .find(|item| item.source_id == referral.referral_id)
        .unwrap();
    let snoozes = (0..10i64).map(|n| {
        let mut referrals = app.referrals();
        let request = with_token(
            &rm1,
            pb::SnoozeWorkItemRequest {
                work_item_id: item.work_item_id.clone(),
                until: Some(prost_types::Timestamp {
                    seconds: (Utc::now() + chrono::Duration::hours(n + 1)).timestamp(),
                    nanos: 0,
                }),
            },
        );
        async move { referrals.snooze_work_item(request).await }
    });
    let answers = futures::future::join_all(snoozes).await;
    let mut versions = Vec::new();
    for answer in answers {
        match answer {
            Ok(response) => versions.push(response.into_inner().work_item.unwrap().version),
            Err(status) => assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}"),
        }
    }
    assert!(!versions.is_empty());
    let written = versions.len();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), written, "no version written twice");
    let now = app
        .referrals()
        .list_work_items(with_token(&rm1, pb::ListWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .work_items
        .into_iter()
        .find(|found| found.work_item_id == item.work_item_id)
        .unwrap();
    assert_eq!(now.version, item.version + i64::try_from(written).unwrap());
    app.stop().await;
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
    // The phone keeps reconnecting until the last referral is made, however long
    // that takes on the machine, then connects once more.
    let produced = std::sync::atomic::AtomicBool::new(false);
    let producer = {
        let (app, produced) = (&app, &produced);
        async move {
            let mut ids = Vec::new();
            for n in 0..40 {
                ids.push(refer(app, &format!("C-8{n:02}")).await.referral_id);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            produced.store(true, std::sync::atomic::Ordering::SeqCst);
            ids
        }
    };
    let phone = {
        let (app, produced) = (&app, &produced);
        let rm1 = rm1.clone();
        async move {
            let mut seen = std::collections::BTreeSet::new();
            let mut last_connection = false;
            while !last_connection {
                last_connection = produced.load(std::sync::atomic::Ordering::SeqCst);
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

/// Nobody waits on someone who is not there: the SLA pass moves an inactive RM's
/// referrals, and those of an RM out of office past the deadline, down the chain.
async fn an_absent_rms_referrals_are_rerouted_by_the_chain(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 3).await;
    app.seed_client("C-ABS-1", "B-001", Some("B-001-RM-1"))
        .await;
    app.seed_client("C-ABS-2", "B-001", Some("B-001-RM-3"))
        .await;
    let leaver = refer(&app, "C-ABS-1").await;
    let on_leave = refer(&app, "C-ABS-2").await;
    assert_eq!(leaver.assigned_rm_id, "B-001-RM-1");
    assert_eq!(on_leave.assigned_rm_id, "B-001-RM-3");
    let system = app.token("SYS-TEST", Role::System, "B-001");
    let away_until = Utc::now() + chrono::Duration::days(10);
    for (staff_id, active, out_of_office_until) in [
        ("B-001-RM-1", false, None),
        ("B-001-RM-3", true, Some(away_until)),
    ] {
        app.directory()
            .upsert_staff(with_token(
                &system,
                pb::UpsertStaffRequest {
                    staff: Some(pb::Staff {
                        staff_id: staff_id.into(),
                        name: format!("Staff {staff_id}"),
                        role: pb::StaffRole::Rm as i32,
                        branch_id: "B-001".into(),
                        active,
                        capacity: 1000,
                        out_of_office_until: out_of_office_until.map(crm_grpc::wire::timestamp),
                    }),
                },
            ))
            .await
            .unwrap();
    }
    app.wait_for_count(
        "SELECT COUNT(*) FROM routing_staff WHERE (staff_id = 'B-001-RM-1' AND active = false) \
         OR (staff_id = 'B-001-RM-3' AND out_of_office_until IS NOT NULL)",
        2,
        Duration::from_secs(10),
    )
    .await;
    let report = sla_job(&app).run(Utc::now()).await.unwrap();
    assert_eq!(report.rerouted, 2, "{report:?}");
    for (referral, why) in [(&leaver, "no longer active"), (&on_leave, "out of office")] {
        let moved = get(&app, &referral.referral_id).await;
        assert_eq!(
            moved.assigned_rm_id, "B-001-RM-2",
            "the teller's pair takes it"
        );
        assert!(
            moved.routing_reason.contains(why),
            "{}",
            moved.routing_reason
        );
    }
    // Settled: a second pass moves nothing.
    assert_eq!(sla_job(&app).run(Utc::now()).await.unwrap().rerouted, 0);
    app.stop().await;
}

/// What one connection sent before it said it had caught up, and the newest
/// `updated_at` among it.
async fn read_until_caught_up(
    app: &TestApp,
    token: &str,
    resume_from: Option<prost_types::Timestamp>,
) -> (Vec<pb::WorkItem>, Option<prost_types::Timestamp>) {
    let mut stream = app
        .referrals()
        .watch_work_items(with_token(
            token,
            pb::WatchWorkItemsRequest {
                resume_from,
                mark_caught_up: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut items = Vec::new();
    loop {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the stream catches up in time")
            .expect("the stream stays open")
            .unwrap();
        if message.caught_up {
            assert!(message.work_item.is_none(), "the mark carries no item");
            break;
        }
        items.push(message.work_item.unwrap());
    }
    let newest = items
        .iter()
        .filter_map(|item| item.updated_at)
        .max_by_key(|at| (at.seconds, at.nanos));
    (items, newest)
}

/// A phone back from a network blip resumes from the newest change it saw: it
/// gets what changed meanwhile — an item completed elsewhere (which a fresh start
/// would not show, being no longer open) and a new one — instead of every open
/// item; a resume point older than a week counts as none.
async fn a_phone_resumes_from_the_newest_change_it_saw(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    for n in 0..4 {
        app.seed_client(&format!("C-RES-{n}"), "B-001", Some("B-001-RM-1"))
            .await;
    }
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    for n in 0..3 {
        refer(&app, &format!("C-RES-{n}")).await;
    }
    let (first, newest) = read_until_caught_up(&app, &rm1, None).await;
    assert_eq!(first.len(), 3, "{first:?}");

    // Away: one item is completed from another device, and a new referral comes.
    let completed = first[0].work_item_id.clone();
    app.referrals()
        .complete_work_item(with_token(
            &rm1,
            pb::CompleteWorkItemRequest {
                work_item_id: completed.clone(),
                outcome: "called".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let new_referral = refer(&app, "C-RES-3").await.referral_id;

    let (resumed, _) = read_until_caught_up(&app, &rm1, newest).await;
    let done = resumed
        .iter()
        .find(|item| item.work_item_id == completed)
        .expect("the item completed meanwhile is sent on resuming");
    assert_eq!(done.state, pb::WorkItemState::Done as i32);
    assert!(
        resumed.iter().any(|item| item.source_id == new_referral),
        "the new item is sent on resuming"
    );

    let open_ids = |items: &[pb::WorkItem]| {
        let mut ids: Vec<String> = items.iter().map(|i| i.work_item_id.clone()).collect();
        ids.sort();
        ids
    };
    let (fresh, _) = read_until_caught_up(&app, &rm1, None).await;
    assert_eq!(fresh.len(), 3, "a fresh start sends the open items only");
    assert!(fresh.iter().all(|item| item.work_item_id != completed));
    let week_old = prost_types::Timestamp {
        seconds: (Utc::now() - chrono::Duration::days(8)).timestamp(),
        nanos: 0,
    };
    let (stale, _) = read_until_caught_up(&app, &rm1, Some(week_old)).await;
    assert_eq!(open_ids(&stale), open_ids(&fresh));
    app.stop().await;
}

on_both_backends!(
    an_absent_rms_referrals_are_rerouted_by_the_chain,
    republishing_the_directory_rebuilds_routings_copies,
    the_recount_restores_routings_load,
    deadlines_count_the_branchs_own_hours,
    sla_escalates_then_reassigns,
    unacked_items_again_and_snoozed_items_back,
    a_contact_keeps_a_referral_from_expiring,
    untouched_referrals_expire,
    a_flaky_phone_sees_every_item,
    a_phone_resumes_from_the_newest_change_it_saw,
);
