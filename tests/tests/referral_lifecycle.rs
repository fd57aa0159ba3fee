//! A referral's life after the teller's call, over PostgreSQL + RabbitMQ and over
//! the embedded default: outcomes and illegal moves, a manager reassigning (both
//! RMs see why), the history, duplicates across branches (also when they race),
//! a teller unable to read another teller's referrals, and a burst spread evenly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::collections::BTreeMap;
use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use tonic::Code;

fn teller(app: &TestApp, branch: &str) -> String {
    app.token(&format!("{branch}-T-1"), Role::Teller, branch)
}

async fn refer_client(
    app: &TestApp,
    token: &str,
    client_id: &str,
    need: pb::Need,
) -> pb::CreateReferralResponse {
    app.referrals()
        .create_referral(with_token(
            token,
            pb::CreateReferralRequest {
                idempotency_key: uuid::Uuid::now_v7().to_string(),
                client_id: client_id.into(),
                need: need as i32,
                priority: pb::Priority::Normal as i32,
                note: "wants to talk about it".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn refer_walk_in(
    app: &TestApp,
    token: &str,
    phone: &str,
) -> Result<pb::CreateReferralResponse, tonic::Status> {
    Ok(app
        .referrals()
        .create_referral(with_token(
            token,
            pb::CreateReferralRequest {
                idempotency_key: uuid::Uuid::now_v7().to_string(),
                prospect: Some(pb::Prospect {
                    full_name: "Walk In".into(),
                    phone: phone.into(),
                }),
                need: pb::Need::LargeDeposit as i32,
                priority: pb::Priority::High as i32,
                ..Default::default()
            },
        ))
        .await?
        .into_inner())
}

async fn outcome(
    app: &TestApp,
    token: &str,
    referral_id: &str,
    outcome: pb::ReferralOutcome,
    note: &str,
) -> Result<pb::Referral, tonic::Status> {
    Ok(app
        .referrals()
        .record_referral_outcome(with_token(
            token,
            pb::RecordReferralOutcomeRequest {
                referral_id: referral_id.into(),
                outcome: outcome as i32,
                note: note.into(),
                product: "time deposit".into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .referral
        .unwrap())
}

async fn queue(app: &TestApp, rm: &str, branch: &str) -> Vec<pb::WorkItem> {
    let token = app.token(rm, Role::Rm, branch);
    app.referrals()
        .list_work_items(with_token(&token, pb::ListWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .work_items
}

/// Routing's per-RM load counters agree with the referrals they count.
async fn assert_loads_match(app: &TestApp) {
    use sea_orm::{ConnectionTrait, Statement};
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT s.staff_id, s.open_referrals, (SELECT COUNT(*) FROM referrals r \
             WHERE r.assigned_rm_id = s.staff_id \
             AND r.status IN ('new', 'assigned', 'accepted', 'contacted')) AS actual \
             FROM routing_staff s",
        ))
        .await
        .unwrap();
    let drifted: Vec<(String, i32, i64)> = rows
        .iter()
        .map(|row| {
            (
                row.try_get_by_index::<String>(0).unwrap(),
                row.try_get_by_index::<i32>(1).unwrap(),
                row.try_get_by_index::<i64>(2).unwrap(),
            )
        })
        .filter(|(_, counted, actual)| i64::from(*counted) != *actual)
        .collect();
    assert!(
        drifted.is_empty(),
        "open-referral counters drifted: {drifted:?}"
    );
}

/// Branch B-001 with three RMs, and a loan referral for C-100 held by RM-1 (its
/// primary RM). Returns the app and the referral's id.
async fn a_referral_held_by_rm1(backend: Backend) -> (TestApp, String) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 3).await;
    app.seed_client("C-100", "B-001", Some("B-001-RM-1")).await;
    let created = refer_client(&app, &teller(&app, "B-001"), "C-100", pb::Need::Loan).await;
    let referral = created.referral.unwrap();
    assert_eq!(referral.assigned_rm_id, "B-001-RM-1");
    (app, referral.referral_id)
}

async fn reassign(
    app: &TestApp,
    token: &str,
    id: &str,
    rm_id: &str,
    reason: &str,
) -> Result<pb::Referral, tonic::Status> {
    Ok(app
        .referrals()
        .reassign_referral(with_token(
            token,
            pb::ReassignReferralRequest {
                referral_id: id.into(),
                rm_id: rm_id.into(),
                reason: reason.into(),
            },
        ))
        .await?
        .into_inner()
        .referral
        .unwrap())
}

async fn a_managers_reassignment_closes_one_rms_item_and_opens_the_others_with_the_reason(
    backend: Backend,
) {
    let (app, id) = a_referral_held_by_rm1(backend).await;
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    let rm3 = app.token("B-001-RM-3", Role::Rm, "B-001");
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    let moved = reassign(&app, &manager, &id, "B-001-RM-3", "RM-1 on leave")
        .await
        .unwrap();
    assert_eq!(moved.assigned_rm_id, "B-001-RM-3");
    assert_eq!(moved.status, pb::ReferralStatus::Assigned as i32);
    let old = queue(&app, "B-001-RM-1", "B-001").await;
    let closed = old.iter().find(|item| item.source_id == id).unwrap();
    assert_eq!(closed.state, pb::WorkItemState::Done as i32);
    assert!(
        closed.outcome.contains("reassigned to B-001-RM-3")
            && closed.outcome.contains("RM-1 on leave")
    );
    let new = queue(&app, "B-001-RM-3", "B-001").await;
    let opened = new.iter().find(|item| item.source_id == id).unwrap();
    assert_eq!(opened.state, pb::WorkItemState::Open as i32);
    assert!(
        opened.detail.contains("Reassigned from B-001-RM-1")
            && opened.detail.contains("RM-1 on leave")
    );
    // The old RM may no longer act on it; reassigning to a teller is refused, and
    // an RM may not reassign.
    assert_eq!(
        app.accept(&rm1, &id).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let error = reassign(&app, &manager, &id, "B-001-T-1", "no")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = reassign(&app, &rm3, &id, "B-001-RM-2", "mine")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert_loads_match(&app).await;
    app.stop().await;
}

async fn outcomes_follow_the_state_machine_and_a_final_status_refuses_change(backend: Backend) {
    let (app, id) = a_referral_held_by_rm1(backend).await;
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    // Before acceptance no outcome is possible; the answer names the status.
    let error = outcome(&app, &rm1, &id, pb::ReferralOutcome::Contacted, "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains("assigned"), "{}", error.message());
    // The RM works it: accept, contacted, then a decline needs a reason.
    app.accept(&rm1, &id).await.unwrap();
    let contacted = outcome(&app, &rm1, &id, pb::ReferralOutcome::Contacted, "called")
        .await
        .unwrap();
    assert_eq!(contacted.status, pb::ReferralStatus::Contacted as i32);
    let error = outcome(&app, &rm1, &id, pb::ReferralOutcome::Declined, " ")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let converted = outcome(&app, &rm1, &id, pb::ReferralOutcome::Converted, "signed")
        .await
        .unwrap();
    assert_eq!(converted.status, pb::ReferralStatus::Converted as i32);
    assert_eq!(converted.outcome, pb::ReferralOutcome::Converted as i32);
    assert_eq!(converted.outcome_product, "time deposit");
    // Final: the same outcome again is the same answer; anything else is refused.
    outcome(&app, &rm1, &id, pb::ReferralOutcome::Converted, "signed")
        .await
        .unwrap();
    let error = outcome(
        &app,
        &rm1,
        &id,
        pb::ReferralOutcome::Declined,
        "changed mind",
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains("converted"));
    let error = reassign(&app, &manager, &id, "B-001-RM-2", "late")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    // The work item closed with the outcome.
    let done = queue(&app, "B-001-RM-1", "B-001").await;
    let item = done.iter().find(|item| item.source_id == id).unwrap();
    assert_eq!(item.state, pb::WorkItemState::Done as i32);

    assert_loads_match(&app).await;
    app.stop().await;
}

async fn the_history_and_the_outbox_tell_the_whole_story(backend: Backend) {
    let (app, id) = a_referral_held_by_rm1(backend).await;
    let rm3 = app.token("B-001-RM-3", Role::Rm, "B-001");
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    reassign(&app, &manager, &id, "B-001-RM-3", "RM-1 on leave")
        .await
        .unwrap();
    app.accept(&rm3, &id).await.unwrap();
    outcome(&app, &rm3, &id, pb::ReferralOutcome::Contacted, "called")
        .await
        .unwrap();
    outcome(&app, &rm3, &id, pb::ReferralOutcome::Converted, "signed")
        .await
        .unwrap();
    let full = app
        .referrals()
        .get_referral(with_token(
            &manager,
            pb::GetReferralRequest {
                referral_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap();
    let story: Vec<(String, String, String)> = full
        .history
        .iter()
        .map(|c| (c.action.clone(), c.actor_id.clone(), c.rm_id.clone()))
        .collect();
    let step = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        story,
        vec![
            step("created", "B-001-T-1", "B-001-RM-1"),
            step("reassigned", "B-001-M", "B-001-RM-3"),
            step("accepted", "B-001-RM-3", "B-001-RM-3"),
            step("outcome", "B-001-RM-3", "B-001-RM-3"),
            step("outcome", "B-001-RM-3", "B-001-RM-3"),
        ]
    );
    assert_eq!(full.history[1].reason, "RM-1 on leave");
    // Every change was published.
    for (message_type, want) in [
        ("referral.assigned", 1),
        ("referral.reassigned", 1),
        ("referral.accepted", 1),
        ("referral.outcome_recorded", 2),
    ] {
        let have = app
            .count(&format!(
                "SELECT COUNT(*) FROM outbox WHERE message_type = '{message_type}'"
            ))
            .await;
        assert_eq!(have, want, "{message_type}");
    }
    assert_loads_match(&app).await;
    app.stop().await;
}

async fn duplicates_across_branches(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_branch("B-002", 2).await;
    app.seed_client("C-200", "B-001", Some("B-001-RM-1")).await;
    let first = refer_client(
        &app,
        &teller(&app, "B-001"),
        "C-200",
        pb::Need::WealthManagement,
    )
    .await;
    let first = first.referral.unwrap();
    // Another branch's teller, same client and need: only that it exists — not
    // where, nor who holds it.
    let second = refer_client(
        &app,
        &teller(&app, "B-002"),
        "C-200",
        pb::Need::WealthManagement,
    )
    .await;
    assert_eq!(second.duplicate_held_by, "");
    let existence = second.referral.unwrap();
    assert_eq!(existence.duplicate_of, first.referral_id);
    assert_eq!(existence.referral_id, first.referral_id);
    assert!(
        existence.note.is_empty()
            && existence.routing_decision.is_none()
            && existence.referrer_id.is_empty()
            && existence.assigned_rm_id.is_empty()
            && existence.branch_id.is_empty()
    );
    // Another teller of the same branch: that it exists, and who holds it.
    let colleague = app.seed_unpaired_teller("B-001-T-2", "B-001").await;
    let third = refer_client(&app, &colleague, "C-200", pb::Need::WealthManagement).await;
    assert_eq!(third.duplicate_held_by, "B-001-RM-1");
    let summary = third.referral.unwrap();
    assert_eq!(summary.duplicate_of, first.referral_id);
    assert_eq!(summary.assigned_rm_id, "B-001-RM-1");
    assert!(summary.note.is_empty() && summary.referrer_id.is_empty());
    // The same teller again sees their own referral whole.
    let again = refer_client(
        &app,
        &teller(&app, "B-001"),
        "C-200",
        pb::Need::WealthManagement,
    )
    .await;
    let again = again.referral.unwrap();
    assert_eq!(
        (again.duplicate_of.as_str(), again.note.as_str()),
        (first.referral_id.as_str(), "wants to talk about it")
    );
    // Another need is another referral; one work item each.
    let loan = refer_client(&app, &teller(&app, "B-002"), "C-200", pb::Need::Loan).await;
    assert!(loan.duplicate_held_by.is_empty());
    assert_eq!(app.count("SELECT COUNT(*) FROM referrals").await, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM work_items").await, 2);

    // Walk-ins by phone, stored sealed; the same phone and need is a duplicate.
    let walk_in = refer_walk_in(&app, &teller(&app, "B-001"), "13711112222")
        .await
        .unwrap();
    let dup = refer_walk_in(&app, &teller(&app, "B-002"), "13711112222")
        .await
        .unwrap();
    assert_eq!(
        dup.referral.unwrap().duplicate_of,
        walk_in.referral.unwrap().referral_id
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM referrals WHERE prospect_phone LIKE '%13711112222%'")
            .await,
        0
    );

    // A closed referral no longer blocks: after a decline, a new one is made.
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    app.accept(&rm1, &first.referral_id).await.unwrap();
    outcome(
        &app,
        &rm1,
        &first.referral_id,
        pb::ReferralOutcome::Declined,
        "not now",
    )
    .await
    .unwrap();
    let fresh = refer_client(
        &app,
        &teller(&app, "B-002"),
        "C-200",
        pb::Need::WealthManagement,
    )
    .await;
    assert!(fresh.duplicate_held_by.is_empty());
    assert_ne!(fresh.referral.unwrap().referral_id, first.referral_id);

    // Ten tellers racing for the same client and need make one referral.
    for n in 3..=12 {
        let branch = format!("B-{n:03}");
        app.seed_branch(&branch, 1).await;
    }
    let racers: Vec<_> = (3..=12)
        .map(|n| {
            let token = teller(&app, &format!("B-{n:03}"));
            let mut referrals = app.referrals();
            async move {
                referrals
                    .create_referral(with_token(
                        &token,
                        pb::CreateReferralRequest {
                            idempotency_key: uuid::Uuid::now_v7().to_string(),
                            client_id: "C-200".into(),
                            need: pb::Need::Insurance as i32,
                            priority: pb::Priority::Normal as i32,
                            ..Default::default()
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner()
            }
        })
        .collect();
    let answers = futures::future::join_all(racers).await;
    let made = answers
        .iter()
        .filter(|a| a.referral.as_ref().unwrap().duplicate_of.is_empty())
        .count();
    assert_eq!(made, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM referrals WHERE need = 'insurance'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_teller_cannot_read_another_tellers_referrals() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 2).await;
    app.seed_unpaired_teller("B-001-T-2", "B-001").await;
    let mine = refer_walk_in(&app, &teller(&app, "B-001"), "13622223333")
        .await
        .unwrap();
    let id = mine.referral.unwrap().referral_id;
    let other = app.token("B-001-T-2", Role::Teller, "B-001");
    let error = app
        .referrals()
        .get_referral(with_token(
            &other,
            pb::GetReferralRequest {
                referral_id: id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let listed = app
        .referrals()
        .list_referrals(with_token(&other, pb::ListReferralsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .referrals;
    assert!(listed.is_empty());
    app.stop().await;
}

async fn a_burst_spreads_evenly(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 4).await;
    // An unpaired teller: every walk-in goes to the branch pool.
    app.seed_unpaired_teller("B-001-T-9", "B-001").await;
    let token = app.token("B-001-T-9", Role::Teller, "B-001");
    let burst: Vec<_> = (0..100)
        .map(|n| {
            let token = token.clone();
            let app = &app;
            async move {
                refer_walk_in(app, &token, &format!("1350000{n:04}"))
                    .await
                    .unwrap()
            }
        })
        .collect();
    let answers = futures::future::join_all(burst).await;
    let mut per_rm: BTreeMap<String, usize> = BTreeMap::new();
    for answer in answers {
        *per_rm
            .entry(answer.referral.unwrap().assigned_rm_id)
            .or_default() += 1;
    }
    let want: BTreeMap<String, usize> = (1..=4).map(|n| (format!("B-001-RM-{n}"), 25)).collect();
    assert_eq!(per_rm, want);
    assert_loads_match(&app).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    app.stop().await;
}

#[tokio::test]
async fn referrer_credit_per_teller_and_branch() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 2).await;
    app.seed_unpaired_teller("B-001-T-2", "B-001").await;
    for n in 1..=4 {
        app.seed_client(&format!("C-70{n}"), "B-001", Some("B-001-RM-1"))
            .await;
    }
    let t1 = teller(&app, "B-001");
    let t2 = app.token("B-001-T-2", Role::Teller, "B-001");
    let mut ids = Vec::new();
    for n in 1..=3 {
        let made = refer_client(&app, &t1, &format!("C-70{n}"), pb::Need::Loan).await;
        ids.push(made.referral.unwrap().referral_id);
    }
    refer_client(&app, &t2, "C-704", pb::Need::Loan).await;
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    app.accept(&rm1, &ids[0]).await.unwrap();
    app.accept(&rm1, &ids[1]).await.unwrap();
    outcome(
        &app,
        &rm1,
        &ids[0],
        pb::ReferralOutcome::Converted,
        "opened",
    )
    .await
    .unwrap();

    let stats = |token: String, referrer: &str| {
        let mut referrals = app.referrals();
        let request = with_token(
            &token,
            pb::GetReferralStatsRequest {
                referrer_id: referrer.into(),
                ..Default::default()
            },
        );
        async move { referrals.get_referral_stats(request).await }
    };
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    let all = stats(manager.clone(), "").await.unwrap().into_inner();
    let counts = |c: &pb::ReferralCounts| (c.made, c.accepted, c.converted, c.conversion_rate_bp);
    let per_teller: Vec<(String, (i64, i64, i64, i32))> = all
        .referrers
        .iter()
        .map(|r| (r.referrer_id.clone(), counts(r.counts.as_ref().unwrap())))
        .collect();
    assert_eq!(
        per_teller,
        vec![
            ("B-001-T-1".to_owned(), (3, 2, 1, 3333)),
            ("B-001-T-2".to_owned(), (1, 0, 0, 0)),
        ]
    );
    let branch = all.branches[0].counts.unwrap();
    assert_eq!(counts(&branch), (4, 2, 1, 2500));
    assert!(branch.median_seconds_to_accept < 60);
    // A teller gets their own credit, and no one else's; an RM none.
    let own = stats(t1.clone(), "").await.unwrap().into_inner();
    assert_eq!(own.referrers.len(), 1);
    assert_eq!(own.referrers[0].referrer_id, "B-001-T-1");
    assert_eq!(
        stats(t1.clone(), "B-001-T-2").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        stats(rm1.clone(), "").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // ListReferrals by referrer shows what came of each.
    let listed = app
        .referrals()
        .list_referrals(with_token(
            &manager,
            pb::ListReferralsRequest {
                referrer_id: "B-001-T-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referrals;
    assert_eq!(listed.len(), 3);
    let converted = listed.iter().find(|r| r.referral_id == ids[0]).unwrap();
    assert_eq!(converted.outcome, pb::ReferralOutcome::Converted as i32);
    app.stop().await;
}

/// A phone retrying an outcome five times at once, and a manager reassigning while
/// the holder accepts: each change happens once, and the load counters hold.
#[tokio::test]
async fn concurrent_changes_happen_once() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 3).await;
    app.seed_client("C-900", "B-001", Some("B-001-RM-1")).await;
    app.seed_client("C-901", "B-001", Some("B-001-RM-1")).await;
    let rm1 = app.token("B-001-RM-1", Role::Rm, "B-001");
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    let first = refer_client(&app, &teller(&app, "B-001"), "C-900", pb::Need::Loan).await;
    let id = first.referral.unwrap().referral_id;
    app.accept(&rm1, &id).await.unwrap();
    let retries: Vec<_> = (0..5)
        .map(|_| outcome(&app, &rm1, &id, pb::ReferralOutcome::Converted, "signed"))
        .collect();
    for answer in futures::future::join_all(retries).await {
        assert_eq!(answer.unwrap().status, pb::ReferralStatus::Converted as i32);
    }
    let history = app
        .count(&format!(
            "SELECT COUNT(*) FROM referral_history WHERE referral_id = '{id}' AND action = 'outcome'"
        ))
        .await;
    assert_eq!(history, 1);

    let second = refer_client(&app, &teller(&app, "B-001"), "C-901", pb::Need::Loan).await;
    let id = second.referral.unwrap().referral_id;
    let reassign = |rm: &str| {
        let mut referrals = app.referrals();
        let request = with_token(
            &manager,
            pb::ReassignReferralRequest {
                referral_id: id.clone(),
                rm_id: rm.into(),
                reason: "rebalancing".into(),
            },
        );
        async move { referrals.reassign_referral(request).await }
    };
    let (to_two, to_three) = tokio::join!(reassign("B-001-RM-2"), reassign("B-001-RM-3"));
    assert!(to_two.is_ok() && to_three.is_ok());
    // Exactly one open item for the referral, held by whoever holds it now.
    let holder = app
        .referrals()
        .get_referral(with_token(
            &manager,
            pb::GetReferralRequest {
                referral_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap()
        .assigned_rm_id;
    let open_items = app
        .count(&format!(
            "SELECT COUNT(*) FROM work_items WHERE source_id = '{id}' AND state <> 'done'"
        ))
        .await;
    assert_eq!(open_items, 1);
    let holders_items = app
        .count(&format!(
            "SELECT COUNT(*) FROM work_items WHERE source_id = '{id}' AND state <> 'done' \
             AND rm_id = '{holder}'"
        ))
        .await;
    assert_eq!(holders_items, 1);
    assert_loads_match(&app).await;
    app.stop().await;
}

on_both_backends!(
    a_managers_reassignment_closes_one_rms_item_and_opens_the_others_with_the_reason,
    outcomes_follow_the_state_machine_and_a_final_status_refuses_change,
    the_history_and_the_outbox_tell_the_whole_story,
    duplicates_across_branches,
    a_burst_spreads_evenly,
);
