//! The campaign scheduler's jobs, run as `crm jobs <name>` (by a Kubernetes
//! CronJob, cron, or `crm serve` itself on the embedded default), each under its
//! lease and recorded (crm_runtime::job_runs). Each is safe to run twice by
//! construction: a campaign is one per (kind, period, name), a task one per
//! (campaign, client, round), and each step's writes commit together.

use chrono::{DateTime, SubsecRound, Utc};
use crm_domain::campaign::{CampaignKind, CampaignStatus, Quarter, TaskState, year_starts_at};
use crm_domain::referral::{Outcome, Priority};
use crm_domain::tier::Tier;
use crm_runtime::{Job, JobContext, ModuleError};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait,
};

use crate::CampaignsSettings;
use crate::audience::{Audience, tier_rank};
use crate::campaigns::{self, NewCampaign};
use crate::launch;
use crate::store::{campaign, campaign_client, campaign_task};

fn now_flag(command: clap::Command) -> clap::Command {
    command.arg(
        clap::Arg::new("now")
            .long("now")
            .value_parser(clap::value_parser!(DateTime<Utc>))
            .help(
                "Run as of this time (RFC 3339) instead of now: drills, and a missed run made up",
            ),
    )
}

fn now_of(context: &JobContext) -> DateTime<Utc> {
    context
        .args
        .get_one::<DateTime<Utc>>("now")
        .copied()
        .unwrap_or_else(Utc::now)
        .trunc_subsecs(6)
}

fn no_start(quarter: Quarter) -> ModuleError {
    ModuleError::Failed(format!("no start for {quarter:?}").into())
}

fn days(n: u16) -> chrono::Duration {
    chrono::Duration::days(i64::from(n))
}

pub const QUARTERLY_HNW: Job = Job {
    name: "quarterly-hnw",
    about: "Create and launch this quarter's high-net-worth campaign (the quarter in the \
            bank's time zone; HNW and private clients; contacts due within \
            CRM_QUARTERLY_HNW_WINDOW_DAYS of the quarter's start): one task per client on \
            their RM's queue. Run again, it creates nothing",
    args: now_flag,
    run: |context| Box::pin(quarterly_hnw(context)),
    // Every morning: the quarter's first run launches it, a missed one is made
    // up the next day, and the rest find it launched.
    schedule: Some("30 6 * * *"),
};

async fn quarterly_hnw(context: JobContext) -> Result<String, ModuleError> {
    let settings: CampaignsSettings = context.settings.section()?;
    let now = now_of(&context);
    let zone = context.calendar.time_zone;
    let quarter = Quarter::at(now, zone);
    let start = quarter.starts_at(zone).ok_or_else(|| no_start(quarter))?;
    let new = NewCampaign {
        name: format!(
            "{}年第{}季度高净值客户定向营销",
            quarter.year, quarter.quarter
        ),
        kind: CampaignKind::QuarterlyHnw,
        audience: Audience {
            tier_min: Some(Tier::Hnw),
            ..Audience::default()
        },
        year: quarter.year,
        quarter: i32::try_from(quarter.quarter).unwrap_or_default(),
        window_start: start,
        window_end: window_end(start, settings.quarterly_hnw_window_days, &settings, now),
        task_title: "季度定向营销：联系高净值客户".to_owned(),
    };
    launch_scheduled(&context, new, settings.upgrade_candidate_percent, now).await
}

pub const ANNUAL_CAMPAIGN: Job = Job {
    name: "annual-campaign",
    about: "Create and launch the year's campaign (wealth clients and above; contacts due \
            within CRM_ANNUAL_CAMPAIGN_WINDOW_DAYS of 1 January in the bank's time zone). \
            Run again, it creates nothing",
    args: now_flag,
    run: |context| Box::pin(annual_campaign(context)),
    schedule: Some("45 6 * * *"),
};

async fn annual_campaign(context: JobContext) -> Result<String, ModuleError> {
    let settings: CampaignsSettings = context.settings.section()?;
    let now = now_of(&context);
    let zone = context.calendar.time_zone;
    let year = Quarter::at(now, zone).year;
    let start = year_starts_at(year, zone)
        .ok_or_else(|| ModuleError::Failed(format!("no start for the year {year}").into()))?;
    let new = NewCampaign {
        name: format!("{year}年度营销活动"),
        kind: CampaignKind::Annual,
        audience: Audience {
            tier_min: Some(Tier::Wealth),
            ..Audience::default()
        },
        year,
        quarter: 0,
        window_start: start,
        window_end: window_end(start, settings.annual_campaign_window_days, &settings, now),
        task_title: "年度营销活动：联系财富客户".to_owned(),
    };
    launch_scheduled(&context, new, settings.upgrade_candidate_percent, now).await
}

/// The contact window's end: `window_days` after the period's start, or — for a
/// campaign first made after that (a deployment mid-quarter, a missed run made
/// up) — the follow-up days from now, so no task is born overdue.
fn window_end(
    start: DateTime<Utc>,
    window_days: u16,
    settings: &CampaignsSettings,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    Ord::max(
        start + days(window_days),
        now + days(settings.contact_follow_up_days),
    )
}

/// Creates the campaign (or finds it) and launches it (or finds it launched).
async fn launch_scheduled(
    context: &JobContext,
    new: NewCampaign,
    upgrade_percent: u8,
    now: DateTime<Utc>,
) -> Result<String, ModuleError> {
    let name = new.name.clone();
    let created_by = format!("job:{}", new.kind);
    let campaign = campaigns::create(&context.db, new, &created_by, now)
        .await
        .map_err(ModuleError::failed)?;
    if campaign.status == CampaignStatus::Cancelled {
        return Ok(format!(
            "{name} ({}) was cancelled: nothing launched",
            campaign.campaign_id
        ));
    }
    let (campaign, launched) = launch::launch(
        &context.db,
        &campaign.campaign_id,
        upgrade_percent,
        None,
        now,
    )
    .await
    .map_err(ModuleError::failed)?;
    Ok(format!(
        "{name} ({}): {} tasks created, {} already there, for {} RMs or branch pools",
        campaign.campaign_id,
        launched.created,
        launched.existing,
        launched.by_rm.len()
    ))
}

pub const CONTACT_CADENCE: Job = Job {
    name: "contact-cadence",
    about: "Give RMs a follow-up for each client not contacted within their tier's cadence \
            (CRM_CONTACT_CADENCE_DAYS: private, HNW, wealth; a logged contact or a campaign \
            task completed as contacted or converted counts), at most one open per client, \
            as tasks of the quarter's contact-cadence campaign",
    args: now_flag,
    run: |context| Box::pin(contact_cadence(context)),
    // Business-day mornings.
    schedule: Some("0 7 * * 1-5"),
};

/// A client due a contact, as the candidates query reads them.
type Candidate = (String, String, String, i32, Option<DateTime<Utc>>);

async fn contact_cadence(context: JobContext) -> Result<String, ModuleError> {
    let settings: CampaignsSettings = context.settings.section()?;
    let cadence = settings
        .cadence()
        .map_err(crm_runtime::SettingsError::Section)?;
    let now = now_of(&context);
    let zone = context.calendar.time_zone;
    let quarter = Quarter::at(now, zone);
    let start = quarter.starts_at(zone).ok_or_else(|| no_start(quarter))?;
    let end = quarter.ends_at(zone).ok_or_else(|| no_start(quarter))?;
    let campaign = campaigns::create(
        &context.db,
        NewCampaign {
            name: format!("{}年第{}季度定期联系", quarter.year, quarter.quarter),
            kind: CampaignKind::ContactCadence,
            audience: Audience {
                tier_min: Some(Tier::Wealth),
                ..Audience::default()
            },
            year: quarter.year,
            quarter: i32::try_from(quarter.quarter).unwrap_or_default(),
            window_start: start,
            window_end: end,
            task_title: "定期联系：客户已超过联系周期".to_owned(),
        },
        "job:contact_cadence",
        now,
    )
    .await
    .map_err(ModuleError::failed)?;
    let cutoff = |days: i64| now - chrono::Duration::days(days);
    let overdue = |rank: i32, days: i64| {
        Condition::all()
            .add(campaign_client::Column::TierRank.eq(rank))
            .add(
                Condition::any()
                    .add(campaign_client::Column::LastContactAt.is_null())
                    .add(campaign_client::Column::LastContactAt.lt(cutoff(days))),
            )
    };
    let transaction = context.db.begin().await.map_err(ModuleError::failed)?;
    // Locked for the run: a cancel waits for it (and withdraws what it made), or
    // goes first and is seen here.
    let campaign = launch::locked_campaign(&transaction, &campaign.campaign_id)
        .await
        .map_err(ModuleError::failed)?;
    if campaign.status == CampaignStatus::Cancelled {
        return Ok(format!("{} was cancelled: no follow-ups", campaign.name));
    }
    // Who is past their cadence by the client book's last contact.
    let candidates: Vec<Candidate> = campaign_client::Entity::find()
        .select_only()
        .columns([
            campaign_client::Column::ClientId,
            campaign_client::Column::HomeBranchId,
            campaign_client::Column::Tier,
            campaign_client::Column::TierRank,
            campaign_client::Column::LastContactAt,
        ])
        .filter(campaign_client::Column::MarketingConsent.eq(true))
        .filter(campaign_client::Column::DoNotContact.eq(false))
        .filter(
            Condition::any()
                .add(overdue(tier_rank(Tier::Private), cadence.private))
                .add(overdue(tier_rank(Tier::Hnw), cadence.hnw))
                .add(overdue(tier_rank(Tier::Wealth), cadence.wealth)),
        )
        .into_tuple()
        .all(&transaction)
        .await
        .map_err(ModuleError::failed)?;
    let mut created = 0;
    for chunk in candidates.chunks(1_000) {
        let ids: Vec<String> = chunk.iter().map(|candidate| candidate.0.clone()).collect();
        // A follow-up still open (of any quarter's cadence campaign) is enough.
        let open: std::collections::HashSet<String> = campaign_task::Entity::find()
            .select_only()
            .column(campaign_task::Column::ClientId)
            .filter(campaign_task::Column::ClientId.is_in(ids.clone()))
            .filter(campaign_task::Column::State.eq(TaskState::Open))
            .filter(
                campaign_task::Column::CampaignId.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(campaign::Column::CampaignId)
                        .from(campaign::Entity)
                        .and_where(
                            Expr::col(campaign::Column::Kind)
                                .eq(CampaignKind::ContactCadence.as_str()),
                        )
                        .to_owned(),
                ),
            )
            .into_tuple()
            .all(&transaction)
            .await
            .map_err(ModuleError::failed)?
            .into_iter()
            .collect();
        // The latest task an RM completed as a contact counts as one.
        let task_contacts: std::collections::HashMap<String, Option<DateTime<Utc>>> =
            campaign_task::Entity::find()
                .select_only()
                .column(campaign_task::Column::ClientId)
                .column_as(Expr::col(campaign_task::Column::CompletedAt).max(), "last")
                .filter(campaign_task::Column::ClientId.is_in(ids))
                .filter(campaign_task::Column::State.eq(TaskState::Done))
                .filter(
                    campaign_task::Column::Outcome.is_in([Outcome::Contacted, Outcome::Converted]),
                )
                .group_by(campaign_task::Column::ClientId)
                .into_tuple::<(String, Option<DateTime<Utc>>)>()
                .all(&transaction)
                .await
                .map_err(ModuleError::failed)?
                .into_iter()
                .collect();
        let rows: Vec<campaign_task::ActiveModel> = chunk
            .iter()
            .filter(|(client_id, ..)| !open.contains(client_id))
            .filter_map(|(client_id, branch_id, tier, rank, book_contact)| {
                let last_contact = match (
                    *book_contact,
                    task_contacts.get(client_id).copied().flatten(),
                ) {
                    (Some(book), Some(task)) => Some(Ord::max(book, task)),
                    (book, task) => book.or(task),
                };
                let cadence_days = match *rank {
                    3 => cadence.private,
                    2 => cadence.hnw,
                    _ => cadence.wealth,
                };
                if last_contact.is_some_and(|at| at >= cutoff(cadence_days)) {
                    return None;
                }
                // The contact this follow-up answers: the same overdue contact is
                // never asked twice, a new one (after a contact) is.
                let round = last_contact.map_or_else(
                    || "never".to_owned(),
                    |at| at.format("%Y%m%dT%H%M%S%.6fZ").to_string(),
                );
                Some(campaign_task::ActiveModel {
                    campaign_id: Set(campaign.campaign_id.clone()),
                    client_id: Set(client_id.clone()),
                    round: Set(round),
                    branch_id: Set(branch_id.clone()),
                    tier: Set(tier.clone()),
                    rm_id: Set(None),
                    work_item_id: Set(None),
                    state: Set(TaskState::Open),
                    outcome: Set(None),
                    converted_product: Set(None),
                    converted_minor: Set(None),
                    converted_currency: Set(None),
                    due_at: Set(now + days(settings.contact_follow_up_days)),
                    created_at: Set(now),
                    completed_at: Set(None),
                    title: Set(None),
                    detail: Set(None),
                    priority: Set(Priority::Normal),
                })
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let inserted = campaign_task::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    campaign_task::Column::CampaignId,
                    campaign_task::Column::ClientId,
                    campaign_task::Column::Round,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&transaction)
            .await;
        created += match inserted {
            Ok(rows) => rows,
            Err(sea_orm::DbErr::RecordNotInserted) => 0,
            Err(error) => return Err(error.into()),
        };
    }
    let asked = launch::request_tasks(&transaction, &campaign, launch::Asked::MadeAt(now))
        .await
        .map_err(ModuleError::failed)?;
    if campaign.status == CampaignStatus::Draft {
        campaign::Entity::update_many()
            .col_expr(
                campaign::Column::Status,
                Expr::value(CampaignStatus::Launched),
            )
            .col_expr(campaign::Column::LaunchedAt, Expr::value(Some(now)))
            .filter(campaign::Column::CampaignId.eq(campaign.campaign_id.as_str()))
            .filter(campaign::Column::Status.eq(CampaignStatus::Draft))
            .exec(&transaction)
            .await
            .map_err(ModuleError::failed)?;
    }
    transaction.commit().await.map_err(ModuleError::failed)?;
    Ok(format!(
        "{} ({}): {} clients past their cadence, {created} follow-ups created ({asked} asked of the queue)",
        campaign.name,
        campaign.campaign_id,
        candidates.len()
    ))
}
