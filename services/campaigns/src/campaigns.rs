//! The campaign RPCs: create (one per kind, period and name), preview, launch
//! (dry or real; a big one by a person waits for a second campaign admin),
//! approve, progress, list and cancel.

use chrono::{DateTime, Utc};
use crm_auth::Principal;
use crm_auth::page_token::PageTokens;
use crm_domain::campaign::{CampaignKind, CampaignStatus, TaskState, task_source_key};
use crm_domain::messages::{WORK_ITEMS_WITHDRAWN, WorkItemsWithdrawn};
use crm_domain::validation::check_text;
use crm_domain::{Role, Violations};
use crm_grpc::{RpcError, WireEnum, wire};
use crm_proto::v1 as pb;
use crm_store::Db;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

use crate::SERVICE;
use crate::audience::Audience;
use crate::error::{CampaignsError, Result};
use crate::launch::{self, Launched};
use crate::progress::{self, Scope};
use crate::store::{campaign, campaign_task};

/// Who creates, launches and cancels campaigns.
pub const ADMINS: &[Role] = &[Role::CampaignAdmin, Role::System];
/// Source keys per withdrawal message.
const KEYS_PER_MESSAGE: usize = 1_000;

pub fn to_proto(model: &campaign::Model) -> Result<pb::Campaign> {
    let audience: Audience = serde_json::from_str(&model.audience).map_err(|error| {
        CampaignsError::Corrupt(format!("campaign {} audience: {error}", model.campaign_id))
    })?;
    Ok(pb::Campaign {
        campaign_id: model.campaign_id.clone(),
        name: model.name.clone(),
        kind: model.kind.to_wire(),
        audience: Some(audience.to_proto()),
        period: Some(pb::CampaignPeriod {
            year: model.period_year,
            quarter: model.period_quarter,
        }),
        contact_window: Some(pb::ContactWindow {
            start: Some(wire::timestamp(model.window_start)),
            end: Some(wire::timestamp(model.window_end)),
        }),
        task_title: model.task_title.clone(),
        status: model.status.to_wire(),
        created_at: Some(wire::timestamp(model.created_at)),
        launched_at: wire::optional_timestamp(model.launched_at),
        launch_requested_by: model.launch_requested_by.clone().unwrap_or_default(),
        approved_by: model.approved_by.clone().unwrap_or_default(),
        audience_size: model.audience_size,
        cancel_reason: model.cancel_reason.clone().unwrap_or_default(),
    })
}

/// A campaign as asked for, checked.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub kind: CampaignKind,
    pub audience: Audience,
    pub year: i32,
    pub quarter: i32,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub task_title: String,
}

impl NewCampaign {
    pub fn parse(
        input: &pb::CreateCampaignRequest,
    ) -> std::result::Result<NewCampaign, Violations> {
        let mut violations = Violations::new();
        check_text(&mut violations, "name", &input.name, true, 100);
        check_text(&mut violations, "task_title", &input.task_title, true, 200);
        let kind = CampaignKind::from_proto(input.kind);
        if kind.is_none() {
            violations.add("kind", "is required: one of the CampaignKind values");
        }
        let audience = match &input.audience {
            Some(audience) => Audience::parse(&mut violations, "audience", audience),
            None => {
                violations.add("audience", "is required");
                Audience::default()
            }
        };
        let (year, quarter) = match &input.period {
            Some(period) => {
                if !(2000..=2100).contains(&period.year) {
                    violations.add("period.year", "must be between 2000 and 2100");
                }
                if !(0..=4).contains(&period.quarter) {
                    violations.add(
                        "period.quarter",
                        "must be 1 to 4, or 0 for a yearly campaign",
                    );
                }
                if kind == Some(CampaignKind::QuarterlyHnw) && period.quarter == 0 {
                    violations.add("period.quarter", "is required for a quarterly campaign");
                }
                (period.year, period.quarter)
            }
            None => {
                violations.add("period", "is required");
                (0, 0)
            }
        };
        let window = input.contact_window.as_ref();
        let start = match window.and_then(|window| window.start.as_ref()) {
            Some(start) => violations.check("contact_window.start", wire::datetime(start)),
            None => {
                violations.add("contact_window.start", "is required");
                None
            }
        };
        let end = match window.and_then(|window| window.end.as_ref()) {
            Some(end) => violations.check("contact_window.end", wire::datetime(end)),
            None => {
                violations.add("contact_window.end", "is required");
                None
            }
        };
        if let (Some(start), Some(end)) = (start, end)
            && end <= start
        {
            violations.add("contact_window.end", "must be after the start");
        }
        violations.finish(|| {
            Some(NewCampaign {
                name: input.name.trim().to_owned(),
                kind: kind?,
                audience,
                year,
                quarter,
                window_start: start?,
                window_end: end?,
                task_title: input.task_title.trim().to_owned(),
            })
        })
    }
}

/// Creates the campaign, or finds the one of the same kind, period and name.
pub async fn create(
    db: &Db,
    new: NewCampaign,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<campaign::Model> {
    use campaign::Column;
    let row = campaign::ActiveModel {
        campaign_id: Set(uuid::Uuid::now_v7().to_string()),
        name: Set(new.name.clone()),
        kind: Set(new.kind),
        period_year: Set(new.year),
        period_quarter: Set(new.quarter),
        audience: Set(serde_json::to_string(&new.audience)?),
        window_start: Set(new.window_start),
        window_end: Set(new.window_end),
        task_title: Set(new.task_title.clone()),
        status: Set(CampaignStatus::Draft),
        created_by: Set(created_by.to_owned()),
        created_at: Set(now),
        launched_at: Set(None),
        launch_requested_by: Set(None),
        approved_by: Set(None),
        audience_size: Set(0),
        cancel_reason: Set(None),
    };
    // Two creates at once: the unique key lets one row in, and both read it.
    campaign::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                Column::Kind,
                Column::PeriodYear,
                Column::PeriodQuarter,
                Column::Name,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    campaign::Entity::find()
        .filter(Column::Kind.eq(new.kind))
        .filter(Column::PeriodYear.eq(new.year))
        .filter(Column::PeriodQuarter.eq(new.quarter))
        .filter(Column::Name.eq(new.name.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| CampaignsError::Corrupt("a created campaign is not there".into()))
}

pub async fn find(db: &Db, campaign_id: &str) -> Result<campaign::Model> {
    campaign::Entity::find_by_id(campaign_id)
        .one(db)
        .await?
        .ok_or_else(|| RpcError::NotFound(format!("campaign {campaign_id}")).into())
}

pub fn launch_response(
    campaign: &campaign::Model,
    launched: Launched,
    dry_run: bool,
) -> Result<pb::LaunchCampaignResponse> {
    Ok(pb::LaunchCampaignResponse {
        tasks_created: launched.created,
        tasks_existing: launched.existing,
        by_rm: launched
            .by_rm
            .into_iter()
            .map(|(key, count)| pb::CountByKey { key, count })
            .collect(),
        dry_run,
        approval_required: false,
        campaign: Some(to_proto(campaign)?),
    })
}

/// The settings a launch needs.
#[derive(Debug, Clone, Copy)]
pub struct LaunchRules {
    pub approval_threshold: u64,
    pub upgrade_percent: u8,
}

/// LaunchCampaign: a dry run counts; a person's launch above the threshold
/// waits for another campaign admin; else it launches.
pub async fn launch_by(
    db: &Db,
    principal: &Principal,
    campaign_id: &str,
    dry_run: bool,
    rules: LaunchRules,
    now: DateTime<Utc>,
) -> Result<pb::LaunchCampaignResponse> {
    let campaign = find(db, campaign_id).await?;
    refuse_made_by_others(&campaign)?;
    if campaign.status != CampaignStatus::Draft {
        // Launched already (or cancelled): the real launch answers what is there.
        let (campaign, launched) =
            launch::launch(db, campaign_id, rules.upgrade_percent, None, now).await?;
        return launch_response(&campaign, launched, dry_run);
    }
    let audience: Audience = serde_json::from_str(&campaign.audience).map_err(|error| {
        CampaignsError::Corrupt(format!("campaign {campaign_id} audience: {error}"))
    })?;
    let by_rm = launch::audience_by_rm(db, &audience, rules.upgrade_percent).await?;
    let size: i64 = by_rm.iter().map(|(_, count)| count).sum();
    if dry_run {
        return launch_response(
            &campaign,
            Launched {
                created: size,
                existing: 0,
                by_rm,
            },
            true,
        );
    }
    let needs_approval = principal.role != Role::System
        && u64::try_from(size).unwrap_or(u64::MAX) > rules.approval_threshold;
    if needs_approval {
        let transaction = db.begin().await?;
        let locked = launch::locked_campaign(&transaction, campaign_id).await?;
        let mut row: campaign::ActiveModel = locked.into();
        row.launch_requested_by = Set(Some(principal.staff_id.to_string()));
        let stored = row.update(&transaction).await?;
        transaction.commit().await?;
        tracing::info!(
            campaign_id,
            tasks = size,
            "campaign launch waits for a second campaign admin"
        );
        let mut response = launch_response(
            &stored,
            Launched {
                created: 0,
                existing: 0,
                by_rm,
            },
            false,
        )?;
        response.approval_required = true;
        return Ok(response);
    }
    let (campaign, launched) =
        launch::launch(db, campaign_id, rules.upgrade_percent, None, now).await?;
    launch_response(&campaign, launched, false)
}

/// The tasks of contact-cadence and maturity campaigns are made by their jobs,
/// client by client, never by freezing an audience: a launch would give clients
/// with a follow-up open a second one.
fn refuse_made_by_others(campaign: &campaign::Model) -> Result<()> {
    match campaign.kind {
        CampaignKind::ContactCadence | CampaignKind::Maturity => {
            Err(RpcError::FailedPrecondition(format!(
                "the tasks of a {} campaign are made by its job, not launched",
                campaign.kind
            ))
            .into())
        }
        _ => Ok(()),
    }
}

/// ApproveCampaignLaunch: a second campaign admin launches what the first asked.
pub async fn approve(
    db: &Db,
    principal: &Principal,
    campaign_id: &str,
    rules: LaunchRules,
    now: DateTime<Utc>,
) -> Result<pb::LaunchCampaignResponse> {
    let campaign = find(db, campaign_id).await?;
    if campaign.status != CampaignStatus::Draft {
        let (campaign, launched) =
            launch::launch(db, campaign_id, rules.upgrade_percent, None, now).await?;
        return launch_response(&campaign, launched, false);
    }
    let Some(requested_by) = campaign.launch_requested_by.as_deref() else {
        return Err(RpcError::FailedPrecondition(format!(
            "campaign {campaign_id} has no launch waiting for approval"
        ))
        .into());
    };
    if requested_by == principal.staff_id.as_str() {
        return Err(RpcError::PermissionDenied(
            "a launch is approved by another campaign admin than the one who asked for it".into(),
        )
        .into());
    }
    let approval = launch::Approval {
        approver: principal.staff_id.to_string(),
        requested_by: requested_by.to_owned(),
    };
    let (campaign, launched) =
        launch::launch(db, campaign_id, rules.upgrade_percent, Some(&approval), now).await?;
    launch_response(&campaign, launched, false)
}

/// CancelCampaign: the campaign and its open tasks close, each with the reason;
/// the queue is told to take them off the RMs' phones.
pub async fn cancel(
    db: &Db,
    campaign_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(campaign::Model, u64)> {
    let transaction = db.begin().await?;
    let campaign = launch::locked_campaign(&transaction, campaign_id).await?;
    if campaign.status == CampaignStatus::Cancelled {
        transaction.commit().await?;
        return Ok((campaign, 0));
    }
    let open: Vec<(String, String)> = campaign_task::Entity::find()
        .select_only()
        .column(campaign_task::Column::ClientId)
        .column(campaign_task::Column::Round)
        .filter(campaign_task::Column::CampaignId.eq(campaign_id))
        .filter(campaign_task::Column::State.eq(TaskState::Open))
        .into_tuple()
        .all(&transaction)
        .await?;
    campaign_task::Entity::update_many()
        .col_expr(
            campaign_task::Column::State,
            Expr::value(TaskState::Withdrawn),
        )
        .col_expr(campaign_task::Column::CompletedAt, Expr::value(Some(now)))
        .filter(campaign_task::Column::CampaignId.eq(campaign_id))
        .filter(campaign_task::Column::State.eq(TaskState::Open))
        .exec(&transaction)
        .await?;
    for chunk in open.chunks(KEYS_PER_MESSAGE) {
        let message = WorkItemsWithdrawn {
            requested_by: SERVICE.to_owned(),
            source_keys: chunk
                .iter()
                .map(|(client_id, round)| task_source_key(campaign_id, client_id, round))
                .collect(),
            reason: format!("campaign cancelled: {reason}"),
        };
        crm_bus::outbox::enqueue_event(
            &transaction,
            SERVICE,
            WORK_ITEMS_WITHDRAWN,
            WORK_ITEMS_WITHDRAWN,
            &message,
        )
        .await?;
    }
    let mut row: campaign::ActiveModel = campaign.into();
    row.status = Set(CampaignStatus::Cancelled);
    row.cancel_reason = Set(Some(reason.to_owned()));
    let stored = row.update(&transaction).await?;
    transaction.commit().await?;
    tracing::info!(campaign_id, tasks_closed = open.len(), "campaign cancelled");
    Ok((stored, open.len() as u64))
}

/// Whose tasks `principal` sees in a campaign's progress.
pub fn progress_scope(principal: &Principal) -> Result<Scope> {
    match principal.role {
        Role::CampaignAdmin | Role::System => Ok(Scope::Everyone),
        Role::BranchManager => Ok(Scope::Branch(principal.branch_id.to_string())),
        Role::Rm => Ok(Scope::Rm(principal.staff_id.to_string())),
        Role::Teller => Err(RpcError::PermissionDenied(
            "role teller may not read campaign progress".into(),
        )
        .into()),
    }
}

pub async fn read_progress(
    db: &Db,
    principal: &Principal,
    campaign_id: &str,
    now: DateTime<Utc>,
) -> Result<pb::GetCampaignProgressResponse> {
    let scope = progress_scope(principal)?;
    find(db, campaign_id).await?;
    progress::progress(db, campaign_id, &scope, now).await
}

/// ListCampaigns, newest first (campaign ids are UUIDv7: time-ordered).
pub async fn list(
    db: &Db,
    vault: &crm_store::Vault,
    principal: &Principal,
    input: &pb::ListCampaignsRequest,
) -> Result<pb::ListCampaignsResponse> {
    let mut violations = Violations::new();
    let page_size = violations.check("page_size", wire::page_size(input.page_size));
    let kind = match input.kind {
        0 => None,
        value => {
            let kind = CampaignKind::from_proto(value);
            if kind.is_none() {
                violations.add("kind", "is not a known CampaignKind");
            }
            kind
        }
    };
    if input.year != 0 && !(2000..=2100).contains(&input.year) {
        violations.add("year", "must be between 2000 and 2100, or 0 for every year");
    }
    let kind_filter = kind
        .map(|kind| kind.as_str().to_owned())
        .unwrap_or_default();
    let year_filter = input.year.to_string();
    let tokens = PageTokens::new(
        vault,
        principal,
        &[("kind", &kind_filter), ("year", &year_filter)],
    );
    let after = violations.check("page_token", tokens.read(&input.page_token));
    let (page_size, after) = violations.finish(|| Some((page_size?, after?)))?;
    let mut select = campaign::Entity::find();
    if let Some(kind) = kind {
        select = select.filter(campaign::Column::Kind.eq(kind));
    }
    if input.year != 0 {
        select = select.filter(campaign::Column::PeriodYear.eq(input.year));
    }
    if let Some(after) = after {
        select = select.filter(campaign::Column::CampaignId.lt(after));
    }
    let rows = select
        .order_by_desc(campaign::Column::CampaignId)
        .limit(page_size + 1)
        .all(db)
        .await?;
    let (rows, next_key) = wire::into_page(rows, page_size, |row| row.campaign_id.clone());
    Ok(pb::ListCampaignsResponse {
        campaigns: rows.iter().map(to_proto).collect::<Result<_>>()?,
        next_page_token: tokens.issue(&next_key),
    })
}
