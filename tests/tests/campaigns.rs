//! Campaigns and their scheduler: one task per audience client however often and
//! however concurrently a launch runs; dry runs write nothing; do-not-contact and
//! consent leave clients out; progress and league tables follow the RMs' work;
//! cancel withdraws open tasks; maker-checker; the jobs (quarter boundaries in the
//! bank's time zone, contact cadence, history with failed and crashed runs).
//! Over PostgreSQL + RabbitMQ and the embedded default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{
    Backend, TestApp, on_both_backends, spawn_app, spawn_app_with_sections, with_token,
};
use sea_orm::ConnectionTrait;

const BRANCH: &str = "B-001";
const WAIT: Duration = Duration::from_secs(20);

/// A client: id, daily average in CNY, primary RM, do-not-contact, consent.
struct Seed {
    id: &'static str,
    aum_cny: i64,
    rm: Option<&'static str>,
    do_not_contact: bool,
    consent: bool,
}

const fn client(id: &'static str, aum_cny: i64, rm: Option<&'static str>) -> Seed {
    Seed {
        id,
        aum_cny,
        rm,
        do_not_contact: false,
        consent: true,
    }
}

/// The bank of most tests: three HNW-and-above clients in the audience (one
/// without a primary RM: the branch pool's), a wealth client below it, and two
/// HNW clients who must never be in it.
fn the_bank() -> Vec<Seed> {
    vec![
        client("C-H1", 6_000_000, Some("B-001-RM-1")),
        client("C-H2", 7_000_000, None),
        client("C-P1", 12_000_000, Some("B-001-RM-2")),
        client("C-W1", 2_000_000, Some("B-001-RM-1")),
        Seed {
            do_not_contact: true,
            ..client("C-DNC", 6_000_000, Some("B-001-RM-1"))
        },
        Seed {
            consent: false,
            ..client("C-NOC", 6_000_000, Some("B-001-RM-1"))
        },
    ]
}

async fn seed(app: &TestApp, clients: &[Seed]) {
    app.seed_branch(BRANCH, 2).await;
    let system = app.token("SYS-TEST", Role::System, BRANCH);
    let mut book = app.clients();
    for seed in clients {
        book.upsert_client(with_token(
            &system,
            pb::UpsertClientRequest {
                client: Some(pb::Client {
                    client_id: seed.id.into(),
                    full_name: format!("Client {}", seed.id),
                    national_id: "110101198001011234".into(),
                    phone: "13812345678".into(),
                    home_branch_id: BRANCH.into(),
                    kind: pb::ClientKind::Individual as i32,
                    do_not_contact: seed.do_not_contact,
                    marketing_consent: Some(seed.consent),
                    aum_daily_avg: Some(pb::Money {
                        minor_units: seed.aum_cny * 100,
                        currency: "CNY".into(),
                    }),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap();
        if let Some(rm) = seed.rm {
            book.assign_coverage(with_token(
                &system,
                pb::AssignCoverageRequest {
                    client_id: seed.id.into(),
                    primary_rm_id: rm.into(),
                    reason: "test".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        }
    }
    let with_rm = clients.iter().filter(|seed| seed.rm.is_some()).count();
    app.wait_for_count(
        "SELECT COUNT(*) FROM campaign_clients WHERE primary_rm_id IS NOT NULL",
        i64::try_from(with_rm).unwrap(),
        WAIT,
    )
    .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM routing_clients WHERE primary_rm_id IS NOT NULL",
        i64::try_from(with_rm).unwrap(),
        WAIT,
    )
    .await;
}

fn admin(app: &TestApp) -> String {
    app.token("CA-1", Role::CampaignAdmin, "HQ-001")
}

/// The bank's quarter now (the league table's period of this run's figures).
fn this_quarter() -> pb::LeaguePeriod {
    let quarter = crm_domain::campaign::Quarter::at(chrono::Utc::now(), chrono_tz::Asia::Shanghai);
    pb::LeaguePeriod {
        year: quarter.year,
        quarter: i32::try_from(quarter.quarter).unwrap(),
    }
}

fn hnw_campaign(name: &str) -> pb::CreateCampaignRequest {
    let now = chrono::Utc::now();
    let quarter = this_quarter();
    pb::CreateCampaignRequest {
        name: name.into(),
        kind: pb::CampaignKind::QuarterlyHnw as i32,
        audience: Some(pb::Audience {
            tier_min: pb::Tier::Hnw as i32,
            ..Default::default()
        }),
        period: Some(pb::CampaignPeriod {
            year: quarter.year,
            quarter: quarter.quarter,
        }),
        contact_window: Some(pb::ContactWindow {
            start: Some(crm_grpc::wire::timestamp(now)),
            end: Some(crm_grpc::wire::timestamp(now + chrono::Duration::days(45))),
        }),
        task_title: "Quarterly review call".into(),
    }
}

async fn create(app: &TestApp, request: pb::CreateCampaignRequest) -> pb::Campaign {
    app.campaigns()
        .create_campaign(with_token(&admin(app), request))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap()
}

async fn launch(
    app: &TestApp,
    token: &str,
    campaign_id: &str,
    dry_run: bool,
) -> Result<pb::LaunchCampaignResponse, tonic::Status> {
    app.campaigns()
        .launch_campaign(with_token(
            token,
            pb::LaunchCampaignRequest {
                campaign_id: campaign_id.into(),
                dry_run,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn tasks_of(campaign_id: &str) -> String {
    format!("SELECT COUNT(*) FROM campaign_tasks WHERE campaign_id = '{campaign_id}'")
}

fn items_of(campaign_id: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM work_items WHERE kind = 'campaign_task' AND source_id LIKE 'campaigns:campaign:{campaign_id}:%'"
    )
}

async fn queue(app: &TestApp, rm: &str) -> Vec<pb::WorkItem> {
    app.referrals()
        .list_work_items(with_token(
            &app.token(rm, Role::Rm, BRANCH),
            pb::ListWorkItemsRequest {
                kinds: vec![pb::WorkItemKind::CampaignTask as i32],
                states: vec![pb::WorkItemState::Open as i32],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .work_items
}

on_both_backends!(
    launches_make_one_task_per_audience_client,
    progress_cancel_and_league_follow_the_rms,
    a_big_launch_waits_for_a_second_admin,
    a_launch_left_half_done_is_finished_by_the_next,
    the_quarterly_job_counts_quarters_in_shanghai_and_runs_once,
    job_history_shows_a_failed_run_its_rerun_and_a_crash,
    contact_cadence_follows_the_last_contact,
    bad_campaigns_are_refused_field_by_field,
    the_projection_is_rebuilt_by_republishing_the_book,
    the_maturity_sweep_makes_one_task_per_maturity_of_the_maturity_campaign,
    a_withdrawal_that_overtakes_its_request_still_wins,
);

async fn launches_make_one_task_per_audience_client(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app, &the_bank()).await;
    let campaign = create(&app, hnw_campaign("Q4 HNW")).await;
    let again = create(&app, hnw_campaign("Q4 HNW")).await;
    assert_eq!(
        again.campaign_id, campaign.campaign_id,
        "one per kind, period and name"
    );
    assert_eq!(campaign.status, pb::CampaignStatus::Draft as i32);

    let preview = app
        .campaigns()
        .preview_audience(with_token(
            &admin(&app),
            pb::PreviewAudienceRequest {
                audience: Some(pb::Audience {
                    tier_min: pb::Tier::Hnw as i32,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.total, 3, "{preview:?}");
    let tiers: Vec<_> = preview
        .by_tier
        .iter()
        .map(|c| (c.key.as_str(), c.count))
        .collect();
    assert_eq!(tiers, [("hnw", 2), ("private", 1)]);
    let with_dnc = app
        .campaigns()
        .preview_audience(with_token(
            &admin(&app),
            pb::PreviewAudienceRequest {
                audience: Some(pb::Audience {
                    tier_min: pb::Tier::Hnw as i32,
                    include_do_not_contact: true,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        with_dnc.total, 4,
        "do_not_contact on purpose; never without consent"
    );

    let dry = launch(&app, &admin(&app), &campaign.campaign_id, true)
        .await
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.tasks_created, 3);
    let by_rm: Vec<_> = dry
        .by_rm
        .iter()
        .map(|c| (c.key.as_str(), c.count))
        .collect();
    assert_eq!(
        by_rm,
        [("B-001-RM-1", 1), ("B-001-RM-2", 1), ("pool:B-001", 1)]
    );
    assert_eq!(
        app.count(&tasks_of(&campaign.campaign_id)).await,
        0,
        "a dry run writes nothing"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE message_type = 'work_items.requested'")
            .await,
        0
    );

    // Two schedulers at once, then a third launch.
    let token = admin(&app);
    let (first, second) = tokio::join!(
        launch(&app, &token, &campaign.campaign_id, false),
        launch(&app, &token, &campaign.campaign_id, false),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        first.tasks_created + second.tasks_created,
        3,
        "{first:?} {second:?}"
    );
    let third = launch(&app, &token, &campaign.campaign_id, false)
        .await
        .unwrap();
    assert_eq!((third.tasks_created, third.tasks_existing), (0, 3));
    assert_eq!(
        third.campaign.unwrap().status,
        pb::CampaignStatus::Launched as i32
    );
    assert_eq!(app.count(&tasks_of(&campaign.campaign_id)).await, 3);
    app.wait_for_count(&items_of(&campaign.campaign_id), 3, WAIT)
        .await;

    let rm1 = queue(&app, "B-001-RM-1").await;
    assert_eq!(rm1.len(), 1, "{rm1:?}");
    assert_eq!(rm1[0].client_id, "C-H1");
    assert_eq!(rm1[0].title, "Quarterly review call");
    assert_eq!(
        rm1[0].due_at.as_ref().map(|due| due.seconds),
        campaign.contact_window.unwrap().end.map(|end| end.seconds)
    );
    // The pool's task went to a branch RM, and the campaign heard who.
    app.wait_for_count(
        &format!(
            "SELECT COUNT(*) FROM campaign_tasks WHERE campaign_id = '{}' AND rm_id IS NOT NULL",
            campaign.campaign_id
        ),
        3,
        WAIT,
    )
    .await;
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count(&items_of(&campaign.campaign_id)).await, 3);
    app.stop().await;
}

async fn complete(
    app: &TestApp,
    rm: &str,
    item: &pb::WorkItem,
    outcome: pb::ReferralOutcome,
    converted: Option<(&str, i64)>,
) -> Result<pb::WorkItem, tonic::Status> {
    app.referrals()
        .complete_work_item(with_token(
            &app.token(rm, Role::Rm, BRANCH),
            pb::CompleteWorkItemRequest {
                work_item_id: item.work_item_id.clone(),
                note: "called".into(),
                task_outcome: outcome as i32,
                converted_product: converted
                    .map(|(product, _)| product.into())
                    .unwrap_or_default(),
                converted_amount: converted.map(|(_, cny)| pb::Money {
                    minor_units: cny * 100,
                    currency: "CNY".into(),
                }),
                ..Default::default()
            },
        ))
        .await
        .map(|response| response.into_inner().work_item.unwrap())
}

async fn progress(
    app: &TestApp,
    token: &str,
    campaign_id: &str,
) -> pb::GetCampaignProgressResponse {
    app.campaigns()
        .get_campaign_progress(with_token(
            token,
            pb::GetCampaignProgressRequest {
                campaign_id: campaign_id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// This quarter's league table as `token`'s holder sees it.
async fn league(app: &TestApp, token: &str) -> Result<pb::GetLeagueTableResponse, tonic::Status> {
    app.reports()
        .get_league_table(with_token(
            token,
            pb::GetLeagueTableRequest {
                period: Some(this_quarter()),
                branch_id: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn progress_cancel_and_league_follow_the_rms(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app, &the_bank()).await;
    let campaign = create(&app, hnw_campaign("Q4 HNW")).await;
    launch(&app, &admin(&app), &campaign.campaign_id, false)
        .await
        .unwrap();
    app.wait_for_count(&items_of(&campaign.campaign_id), 3, WAIT)
        .await;

    let rm1_item = queue(&app, "B-001-RM-1").await.remove(0);
    let refused = complete(
        &app,
        "B-001-RM-1",
        &rm1_item,
        pb::ReferralOutcome::Unspecified,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::InvalidArgument,
        "a campaign task needs its outcome"
    );
    let refused = complete(
        &app,
        "B-001-RM-1",
        &rm1_item,
        pb::ReferralOutcome::Converted,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::InvalidArgument,
        "a conversion names product and amount"
    );
    complete(
        &app,
        "B-001-RM-1",
        &rm1_item,
        pb::ReferralOutcome::Converted,
        Some(("3-year deposit", 1_000_000)),
    )
    .await
    .unwrap();
    let rm2_item = queue(&app, "B-001-RM-2").await.remove(0);
    complete(
        &app,
        "B-001-RM-2",
        &rm2_item,
        pb::ReferralOutcome::Declined,
        None,
    )
    .await
    .unwrap();
    app.wait_for_count(
        &format!(
            "SELECT COUNT(*) FROM campaign_tasks WHERE campaign_id = '{}' AND state = 'done'",
            campaign.campaign_id
        ),
        2,
        WAIT,
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM campaign_tasks WHERE converted_product = '3-year deposit' AND converted_minor = 100000000").await,
        1
    );

    let all = progress(&app, &admin(&app), &campaign.campaign_id).await;
    let totals = all.totals.unwrap();
    assert_eq!(
        (
            totals.tasks,
            totals.done,
            totals.converted,
            totals.declined,
            totals.overdue
        ),
        (3, 2, 1, 1, 0),
        "{totals:?}"
    );
    assert_eq!(all.by_branch.len(), 1);
    let mine = progress(
        &app,
        &app.token("B-001-RM-1", Role::Rm, BRANCH),
        &campaign.campaign_id,
    )
    .await;
    assert_eq!(mine.by_rm.len(), 1, "an RM sees their own: {mine:?}");
    assert_eq!(mine.totals.unwrap().converted, 1);
    let elsewhere = progress(
        &app,
        &app.token("B-002-M", Role::BranchManager, "B-002"),
        &campaign.campaign_id,
    )
    .await;
    assert_eq!(
        elsewhere.totals.unwrap().tasks,
        0,
        "another branch's manager sees none of it"
    );
    let teller = app
        .campaigns()
        .get_campaign_progress(with_token(
            &app.token("B-001-T-1", Role::Teller, BRANCH),
            pb::GetCampaignProgressRequest {
                campaign_id: campaign.campaign_id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(teller.code(), tonic::Code::PermissionDenied);

    // A teller's referral, accepted and converted by the RM.
    let teller = app.token("B-001-T-1", Role::Teller, BRANCH);
    let referral = app
        .referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: "league-1".into(),
                client_id: "C-H1".into(),
                need: pb::Need::WealthManagement as i32,
                priority: pb::Priority::High as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap();
    assert_eq!(referral.assigned_rm_id, "B-001-RM-1");
    let rm1 = app.token("B-001-RM-1", Role::Rm, BRANCH);
    app.accept(&rm1, &referral.referral_id).await.unwrap();
    app.referrals()
        .record_referral_outcome(with_token(
            &rm1,
            pb::RecordReferralOutcomeRequest {
                referral_id: referral.referral_id.clone(),
                outcome: pb::ReferralOutcome::Converted as i32,
                note: "opened a wealth account".into(),
                product: "wealth management".into(),
                amount: Some(pb::Money {
                    minor_units: 100_000_000,
                    currency: "CNY".into(),
                }),
            },
        ))
        .await
        .unwrap();
    app.wait_for_count(
        "SELECT COUNT(*) FROM league_referrals WHERE converted_at IS NOT NULL AND accepted_at IS NOT NULL",
        1,
        WAIT,
    )
    .await;

    // Targets: set by a campaign admin only, checked field by field.
    let target = |branch: &str, percent: i32| pb::SetBranchTargetRequest {
        target: Some(pb::BranchTarget {
            branch_id: branch.into(),
            period: Some(this_quarter()),
            new_hnw_clients: 10,
            campaign_completion_percent: percent,
            ..Default::default()
        }),
    };
    let manager = app.token("B-001-M", Role::BranchManager, BRANCH);
    let denied = app
        .reports()
        .set_branch_target(with_token(&manager, target(BRANCH, 100)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let bad = app
        .reports()
        .set_branch_target(with_token(&admin(&app), target("no branch", 101)))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    app.reports()
        .set_branch_target(with_token(&admin(&app), target(BRANCH, 100)))
        .await
        .unwrap();

    // The league table counts the branch's referrals, campaign work, new HNW
    // clients, and measures them against the targets.
    let table = league(&app, &manager).await.unwrap();
    let branch = table.branches.iter().find(|row| row.key == BRANCH).unwrap();
    assert_eq!(
        (
            branch.rank,
            branch.referrals_made,
            branch.referrals_accepted,
            branch.referrals_converted,
            branch.campaign_tasks_done,
            branch.new_hnw_clients,
            branch.new_wealth_clients,
        ),
        (1, 1, 1, 1, 2, 5, 6),
        "{branch:?}"
    );
    assert!((branch.conversion_rate - 1.0).abs() < 1e-9);
    assert!(
        (branch.hnw_clients_attainment - 0.5).abs() < 1e-9,
        "{branch:?}"
    );
    let completion = 2.0 / 3.0;
    assert!(
        (branch.campaign_completion_attainment - completion).abs() < 1e-9,
        "{branch:?}"
    );
    assert!(
        (branch.attainment - (0.5 + completion) / 2.0).abs() < 1e-9,
        "{branch:?}"
    );
    let rm_row = table
        .rms
        .iter()
        .find(|row| row.key == "B-001-RM-1")
        .unwrap();
    assert_eq!(
        (rm_row.referrals_converted, rm_row.campaign_tasks_done),
        (1, 1)
    );
    // An RM sees the branch ranking and only their own row; a teller nothing.
    let own = league(&app, &rm1).await.unwrap();
    assert_eq!(own.rms.len(), 1);
    assert_eq!(own.rms[0].key, "B-001-RM-1");
    let teller_league = league(&app, &teller).await.unwrap_err();
    assert_eq!(teller_league.code(), tonic::Code::PermissionDenied);

    // Cancel: the one open task leaves the pool RM's phone with the reason.
    let cancelled = app
        .campaigns()
        .cancel_campaign(with_token(
            &admin(&app),
            pb::CancelCampaignRequest {
                campaign_id: campaign.campaign_id.clone(),
                reason: "product withdrawn by head office".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.tasks_closed, 1);
    assert_eq!(
        cancelled.campaign.unwrap().status,
        pb::CampaignStatus::Cancelled as i32
    );
    app.wait_for_count(
        &format!(
            "SELECT COUNT(*) FROM work_items WHERE source_id LIKE 'campaigns:campaign:{}:%' AND state = 'done' AND outcome LIKE 'withdrawn: campaign cancelled: product withdrawn%'",
            campaign.campaign_id
        ),
        1,
        WAIT,
    )
    .await;
    let relaunch = launch(&app, &admin(&app), &campaign.campaign_id, false)
        .await
        .unwrap_err();
    assert_eq!(relaunch.code(), tonic::Code::FailedPrecondition);
    app.stop().await;
}

async fn a_big_launch_waits_for_a_second_admin(backend: Backend) {
    let app = spawn_app_with_sections(backend, &["--campaign-approval-threshold", "2"]).await;
    seed(&app, &the_bank()).await;
    let campaign = create(&app, hnw_campaign("Q4 HNW")).await;
    let first = launch(&app, &admin(&app), &campaign.campaign_id, false)
        .await
        .unwrap();
    assert!(first.approval_required, "3 tasks > 2");
    assert_eq!(first.tasks_created, 0);
    assert_eq!(
        app.count(&tasks_of(&campaign.campaign_id)).await,
        0,
        "no task before approval"
    );
    let approve = |token: String| {
        let mut client = app.campaigns();
        let campaign_id = campaign.campaign_id.clone();
        async move {
            client
                .approve_campaign_launch(with_token(
                    &token,
                    pb::ApproveCampaignLaunchRequest { campaign_id },
                ))
                .await
        }
    };
    let same = approve(admin(&app)).await.unwrap_err();
    assert_eq!(
        same.code(),
        tonic::Code::PermissionDenied,
        "the maker can't be the checker"
    );
    let approved = approve(app.token("CA-2", Role::CampaignAdmin, "HQ-001"))
        .await
        .unwrap()
        .into_inner()
        .launch
        .unwrap();
    assert_eq!(approved.tasks_created, 3);
    assert_eq!(approved.campaign.unwrap().approved_by, "CA-2");
    app.wait_for_count(&items_of(&campaign.campaign_id), 3, WAIT)
        .await;
    app.stop().await;
}

/// A launch that stopped after writing some tasks (and asking for none): the
/// next launch makes the rest and asks for all, each exactly once.
async fn a_launch_left_half_done_is_finished_by_the_next(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app, &the_bank()).await;
    let campaign = create(&app, hnw_campaign("Q4 HNW")).await;
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO campaign_tasks (campaign_id, client_id, round, branch_id, tier, rm_id, state, due_at, created_at) \
             SELECT '{}', client_id, '', home_branch_id, tier, primary_rm_id, 'open', source_updated_at, source_updated_at \
             FROM campaign_clients WHERE client_id IN ('C-H1', 'C-P1')",
            campaign.campaign_id
        ))
        .await
        .unwrap();
    let launched = launch(&app, &admin(&app), &campaign.campaign_id, false)
        .await
        .unwrap();
    assert_eq!(launched.tasks_created, 1, "only C-H2 was missing");
    assert_eq!(app.count(&tasks_of(&campaign.campaign_id)).await, 3);
    app.wait_for_count(&items_of(&campaign.campaign_id), 3, WAIT)
        .await;
    launch(&app, &admin(&app), &campaign.campaign_id, false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count(&items_of(&campaign.campaign_id)).await, 3);
    app.stop().await;
}

async fn the_quarterly_job_counts_quarters_in_shanghai_and_runs_once(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app, &the_bank()).await;
    // 23:30 UTC on the last day of March is 07:30 on 1 April in Shanghai.
    let now = ["--now", "2026-03-31T23:30:00Z"];
    let said = app.run_job("quarterly-hnw", &now).await.unwrap();
    assert!(said.contains("2026年第2季度"), "{said}");
    assert!(said.contains("3 tasks created"), "{said}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM campaigns WHERE kind = 'quarterly_hnw' AND period_year = 2026 AND period_quarter = 2 AND status = 'launched'").await,
        1
    );
    let again = app.run_job("quarterly-hnw", &now).await.unwrap();
    assert!(
        again.contains("0 tasks created, 3 already there"),
        "{again}"
    );
    let (one, two) = tokio::join!(
        app.run_job("quarterly-hnw", &now),
        app.run_job("quarterly-hnw", &now)
    );
    for said in [one.unwrap(), two.unwrap()] {
        assert!(
            said.contains("0 tasks created") || said.starts_with("skipped"),
            "{said}"
        );
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM campaign_tasks").await, 3);
    assert_eq!(app.count("SELECT COUNT(*) FROM campaigns").await, 1);
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE kind = 'campaign_task'",
        3,
        WAIT,
    )
    .await;
    // A minute before midnight local time it is still the first quarter.
    let said = app
        .run_job("quarterly-hnw", &["--now", "2026-03-31T15:59:00Z"])
        .await
        .unwrap();
    assert!(said.contains("2026年第1季度"), "{said}");
    let runs = crm_runtime::job_runs::history(&app.db, Some("quarterly-hnw"), 50)
        .await
        .unwrap();
    assert_eq!(runs.len(), 5);
    assert!(
        runs.iter()
            .all(|run| run.shown_outcome == "succeeded" || run.shown_outcome == "skipped")
    );
    app.stop().await;
}

async fn job_history_shows_a_failed_run_its_rerun_and_a_crash(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app, &the_bank()).await;
    app.db
        .execute_unprepared("ALTER TABLE campaign_tasks RENAME TO campaign_tasks_away")
        .await
        .unwrap();
    let failed = app.run_job("quarterly-hnw", &[]).await;
    assert!(failed.is_err(), "{failed:?}");
    app.db
        .execute_unprepared("ALTER TABLE campaign_tasks_away RENAME TO campaign_tasks")
        .await
        .unwrap();
    let said = app.run_job("quarterly-hnw", &[]).await.unwrap();
    assert!(said.contains("3 tasks created"), "{said}");
    // A run that died with its lease gone: running, never finished.
    app.db
        .execute_unprepared(
            "INSERT INTO job_runs (run_id, job, outcome, holder, started_at, finished_at, summary, error) \
             VALUES ('00000000-dead', 'contact-cadence', 'running', 'node-9:77', '2026-01-01T00:00:00+00:00', NULL, '', '')",
        )
        .await
        .unwrap();
    let runs = crm_runtime::job_runs::history(&app.db, None, 10)
        .await
        .unwrap();
    let outcomes: Vec<_> = runs
        .iter()
        .map(|run| (run.run.job.as_str(), run.shown_outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("quarterly-hnw", "succeeded"),
            ("quarterly-hnw", "failed"),
            ("contact-cadence", "crashed")
        ],
        "newest first"
    );
    assert!(
        runs[1].run.error.contains("campaign_tasks"),
        "{}",
        runs[1].run.error
    );
    // The crashed run held no lease: the next run of its job works.
    let said = app.run_job("contact-cadence", &[]).await.unwrap();
    assert!(!said.starts_with("skipped"), "{said}");
    app.stop().await;
}

async fn log_contact(app: &TestApp, client_id: &str, days_ago: i64) {
    app.clients()
        .log_interaction(with_token(
            &app.token("B-001-M", Role::BranchManager, BRANCH),
            pb::LogInteractionRequest {
                client_id: client_id.into(),
                channel: pb::InteractionChannel::Phone as i32,
                summary: "checked in".into(),
                outcome: String::new(),
                occurred_at: Some(crm_grpc::wire::timestamp(
                    chrono::Utc::now() - chrono::Duration::days(days_ago),
                )),
            },
        ))
        .await
        .unwrap();
}

async fn contact_cadence_follows_the_last_contact(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(
        &app,
        &[
            client("C-P-OLD", 12_000_000, Some("B-001-RM-1")),
            client("C-P-NEW", 12_000_000, Some("B-001-RM-1")),
            client("C-H-NEVER", 6_000_000, Some("B-001-RM-2")),
            client("C-W-OLD", 2_000_000, Some("B-001-RM-2")),
            client("C-W-NEW", 2_000_000, Some("B-001-RM-2")),
            client("C-MASS", 10_000, Some("B-001-RM-2")),
        ],
    )
    .await;
    log_contact(&app, "C-P-OLD", 40).await; // private: 30 days
    log_contact(&app, "C-P-NEW", 10).await;
    log_contact(&app, "C-W-OLD", 100).await; // wealth: 90 days
    log_contact(&app, "C-W-NEW", 80).await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM campaign_clients WHERE last_contact_at IS NOT NULL",
        4,
        WAIT,
    )
    .await;
    let said = app.run_job("contact-cadence", &[]).await.unwrap();
    assert!(said.contains("3 follow-ups created"), "{said}");
    let due = "SELECT COUNT(*) FROM campaign_tasks WHERE client_id IN ('C-P-OLD', 'C-H-NEVER', 'C-W-OLD') AND state = 'open'";
    assert_eq!(app.count(due).await, 3);
    let said = app.run_job("contact-cadence", &[]).await.unwrap();
    assert!(said.contains("0 follow-ups created"), "{said}");
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE kind = 'campaign_task'",
        3,
        WAIT,
    )
    .await;

    // The RM reaches the private client through the follow-up: a contact.
    let item = queue(&app, "B-001-RM-1").await.remove(0);
    assert_eq!(item.client_id, "C-P-OLD");
    complete(
        &app,
        "B-001-RM-1",
        &item,
        pb::ReferralOutcome::Contacted,
        None,
    )
    .await
    .unwrap();
    app.wait_for_count(
        "SELECT COUNT(*) FROM campaign_tasks WHERE client_id = 'C-P-OLD' AND state = 'done'",
        1,
        WAIT,
    )
    .await;
    let said = app.run_job("contact-cadence", &[]).await.unwrap();
    assert!(
        said.contains("0 follow-ups created"),
        "contacted today: {said}"
    );
    // A month on, both private clients are due again, and the wealth client last
    // seen 80 days ago; the others still have their follow-up open.
    let later = (chrono::Utc::now() + chrono::Duration::days(31)).to_rfc3339();
    let said = app
        .run_job("contact-cadence", &["--now", &later])
        .await
        .unwrap();
    assert!(said.contains("3 follow-ups created"), "{said}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM campaign_tasks WHERE client_id IN ('C-P-OLD', 'C-P-NEW', 'C-W-NEW') AND state = 'open'").await,
        3
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM campaign_tasks WHERE client_id = 'C-MASS'")
            .await,
        0
    );
    app.stop().await;
}

async fn bad_campaigns_are_refused_field_by_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let bad = pb::CreateCampaignRequest {
        name: " ".into(),
        kind: 0,
        audience: Some(pb::Audience {
            tier_min: 99,
            branch_ids: vec!["bad branch".into()],
            ..Default::default()
        }),
        period: Some(pb::CampaignPeriod {
            year: 1999,
            quarter: 7,
        }),
        contact_window: Some(pb::ContactWindow {
            start: Some(crm_grpc::wire::timestamp(chrono::Utc::now())),
            end: Some(crm_grpc::wire::timestamp(
                chrono::Utc::now() - chrono::Duration::days(1),
            )),
        }),
        task_title: String::new(),
    };
    let status = app
        .campaigns()
        .create_campaign(with_token(&admin(&app), bad))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let fields: Vec<String> = tonic_types::StatusExt::get_error_details(&status)
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|violation| violation.field.clone())
        .collect();
    for field in [
        "name",
        "task_title",
        "kind",
        "audience.tier_min",
        "audience.branch_ids[0]",
        "period.year",
        "period.quarter",
        "contact_window.end",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM campaigns").await, 0);
    let rm = app
        .campaigns()
        .create_campaign(with_token(
            &app.token("B-001-RM-1", Role::Rm, BRANCH),
            hnw_campaign("mine"),
        ))
        .await
        .unwrap_err();
    assert_eq!(rm.code(), tonic::Code::PermissionDenied);
    let unknown = launch(
        &app,
        &admin(&app),
        "0190a0a0-0000-7000-8000-000000000000",
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    app.stop().await;
}

async fn the_projection_is_rebuilt_by_republishing_the_book(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app, &the_bank()).await;
    app.db
        .execute_unprepared("DELETE FROM campaign_clients")
        .await
        .unwrap();
    let said = app.run_job("republish-clients", &[]).await.unwrap();
    assert!(said.contains("6 clients"), "{said}");
    app.wait_for_count("SELECT COUNT(*) FROM campaign_clients", 6, WAIT)
        .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM campaign_clients WHERE client_id = 'C-NOC' AND marketing_consent = false").await,
        1
    );
    app.stop().await;
}

fn maturity(event_id: &str, client_id: &str, product: &str, in_days: i64) -> pb::BankEvent {
    let date = (chrono::Utc::now() + chrono::Duration::days(in_days))
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    pb::BankEvent {
        event_id: event_id.into(),
        client_id: client_id.into(),
        occurred_at: Some(crm_grpc::wire::timestamp(chrono::Utc::now())),
        kind: Some(pb::bank_event::Kind::ProductMaturity(pb::ProductMaturity {
            product_id: product.into(),
            product_name: "Time deposit 1Y".into(),
            amount: Some(pb::Money {
                minor_units: 200_000_000,
                currency: "CNY".into(),
            }),
            maturity_date: Some(crm_grpc::wire::date_to_proto(date)),
        })),
    }
}

async fn the_maturity_sweep_makes_one_task_per_maturity_of_the_maturity_campaign(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app, &the_bank()).await;
    app.wait_for_count("SELECT COUNT(*) FROM event_clients", 6, WAIT)
        .await;
    let system = app.token("SYS-CORE", Role::System, BRANCH);
    let events = vec![
        maturity("m-1", "C-H1", "TD-1", 5),
        maturity("m-2", "C-W1", "TD-2", 10),
        maturity("m-3", "C-H2", "TD-3", 40), // beyond the 14 days swept
    ];
    let taken = app
        .events()
        .ingest_events(with_token(&system, pb::IngestEventsRequest { events }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        taken.results.iter().all(|result| result.accepted),
        "{taken:?}"
    );
    let said = app.run_job("maturity-sweep", &[]).await.unwrap();
    assert!(said.starts_with("2 maturities"), "{said}");
    let (one, two) = tokio::join!(
        app.run_job("maturity-sweep", &[]),
        app.run_job("maturity-sweep", &[])
    );
    one.unwrap();
    two.unwrap();
    let items = "SELECT COUNT(*) FROM work_items WHERE kind = 'campaign_task' AND source_id LIKE 'campaigns:campaign:%:TD-%'";
    app.wait_for_count(items, 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.count(items).await, 2, "swept three times, made once");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM campaign_tasks WHERE round LIKE 'TD-%'")
            .await,
        2
    );
    let listed = app
        .campaigns()
        .list_campaigns(with_token(
            &admin(&app),
            pb::ListCampaignsRequest {
                kind: pb::CampaignKind::Maturity as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .campaigns;
    assert!(!listed.is_empty() && listed.len() <= 2, "{listed:?}");
    let mut tasks = 0;
    for campaign in &listed {
        assert!(campaign.name.contains("产品到期跟进"), "{}", campaign.name);
        tasks += progress(&app, &admin(&app), &campaign.campaign_id)
            .await
            .totals
            .unwrap()
            .tasks;
    }
    assert_eq!(tasks, 2, "the maturity campaigns count the follow-ups");
    // The follow-up names the product and its date, flagged before a period end.
    let item = queue(&app, "B-001-RM-1")
        .await
        .into_iter()
        .find(|item| item.client_id == "C-H1")
        .unwrap();
    let date = (chrono::Utc::now() + chrono::Duration::days(5))
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    assert!(item.title.contains(&date.to_string()), "{}", item.title);
    let flagged = crm_events::maturities::period_end_flag(date).is_some();
    assert_eq!(item.title.starts_with('['), flagged, "{}", item.title);
    assert_eq!(
        item.priority,
        if flagged {
            pb::Priority::High
        } else {
            pb::Priority::Normal
        } as i32
    );
    app.stop().await;
}

/// Messages of one sender may be handled out of order (concurrent handlers, a
/// retried one): a withdrawal handled before its request keeps the item from
/// ever being made.
async fn a_withdrawal_that_overtakes_its_request_still_wins(backend: Backend) {
    use crm_domain::messages::{
        RequestedWorkItem, WORK_ITEMS_REQUESTED, WORK_ITEMS_WITHDRAWN, WorkItemsRequested,
        WorkItemsWithdrawn,
    };
    let app = spawn_app(backend).await;
    seed(&app, &the_bank()).await;
    let key = |client: &str| format!("campaign:0190a0a0-0000-7000-8000-00000000000a:{client}");
    let withdrawn = WorkItemsWithdrawn {
        requested_by: "campaigns".into(),
        source_keys: vec![key("C-H1")],
        reason: "campaign cancelled: test".into(),
    };
    crm_bus::outbox::enqueue_event(
        &app.db,
        "campaigns",
        WORK_ITEMS_WITHDRAWN,
        WORK_ITEMS_WITHDRAWN,
        &withdrawn,
    )
    .await
    .unwrap();
    app.wait_for_count(
        &format!(
            "SELECT COUNT(*) FROM work_requests WHERE source_key = '{}' AND work_item_id = ''",
            key("C-H1")
        ),
        1,
        WAIT,
    )
    .await;
    let item = |client: &str| RequestedWorkItem {
        source_key: key(client),
        kind: crm_domain::referral::WorkItemKind::CampaignTask,
        client_id: client.into(),
        title: "Quarterly review call".into(),
        detail: String::new(),
        priority: crm_domain::referral::Priority::Normal,
        due_at: None,
        rm_id: None,
        home_branch_id: Some(BRANCH.into()),
    };
    let requested = WorkItemsRequested {
        requested_by: "campaigns".into(),
        items: vec![item("C-H1"), item("C-P1")],
    };
    crm_bus::outbox::enqueue_event(
        &app.db,
        "campaigns",
        WORK_ITEMS_REQUESTED,
        WORK_ITEMS_REQUESTED,
        &requested,
    )
    .await
    .unwrap();
    let made = "SELECT COUNT(*) FROM work_items WHERE source_id LIKE 'campaigns:campaign:0190a0a0-0000-7000-8000-00000000000a:%'";
    app.wait_for_count(made, 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.count(made).await,
        1,
        "only the item not withdrawn is made"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM work_items WHERE client_id = 'C-H1' AND kind = 'campaign_task'"
        )
        .await,
        0
    );
    app.stop().await;
}
