//! Launching a campaign: its audience is frozen into `campaign_tasks` (one row per
//! client, keyed (campaign, client, round)) by one INSERT … SELECT, and the RM
//! work queue is asked for the tasks in batched `work_items.requested` messages,
//! a thousand items each, in the same transaction. The campaign row is locked
//! first, so two launches at once run one after the other and the second finds
//! the campaign launched; the key makes even a launch that somehow ran twice
//! create nothing twice, and the queue makes each item once per source key. A
//! launch killed half way rolled back whole: run again, it does all of it.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use crm_domain::campaign::{CampaignStatus, TaskState, task_source_key};
use crm_domain::messages::{RequestedWorkItem, WORK_ITEMS_REQUESTED, WorkItemsRequested};
use crm_domain::referral::WorkItemKind;
use crm_grpc::RpcError;
use crm_store::WriteBatch;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use crate::SERVICE;
use crate::audience::Audience;
use crate::error::{CampaignsError, Result};
use crate::store::{campaign, campaign_client, campaign_task};

/// Items per `work_items.requested` message (the queue takes up to 5,000).
const ITEMS_PER_MESSAGE: u64 = 1_000;
/// Outbox rows written per statement.
const MESSAGES_PER_WRITE: usize = 20;

/// The key of a task's RM in counts: the primary RM, or the branch pool the
/// queue will route it to (least-loaded RM of the client's home branch).
pub fn rm_key(rm_id: Option<&str>, branch_id: &str) -> String {
    match rm_id {
        Some(rm_id) => rm_id.to_owned(),
        None => format!("pool:{branch_id}"),
    }
}

/// What a launch did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launched {
    pub created: i64,
    pub existing: i64,
    /// Per RM key (see [`rm_key`]), sorted.
    pub by_rm: Vec<(String, i64)>,
}

fn fold_by_rm(rows: Vec<(Option<String>, String, i64)>) -> Vec<(String, i64)> {
    let mut by_rm: BTreeMap<String, i64> = BTreeMap::new();
    for (rm_id, branch_id, count) in rows {
        *by_rm
            .entry(rm_key(rm_id.as_deref(), &branch_id))
            .or_default() += count;
    }
    by_rm.into_iter().collect()
}

/// The audience of `campaign` now, per RM key: a dry run's answer, and the size
/// a launch would have. Writes nothing.
pub async fn audience_by_rm(
    connection: &impl ConnectionTrait,
    audience: &Audience,
    upgrade_percent: u8,
) -> Result<Vec<(String, i64)>> {
    use campaign_client::Column;
    let rows: Vec<(Option<String>, String, i64)> = campaign_client::Entity::find()
        .select_only()
        .column(Column::PrimaryRmId)
        .column(Column::HomeBranchId)
        .column_as(Expr::col(Column::ClientId).count(), "clients")
        .filter(audience.condition(upgrade_percent))
        .group_by(Column::PrimaryRmId)
        .group_by(Column::HomeBranchId)
        .into_tuple()
        .all(connection)
        .await?;
    Ok(fold_by_rm(rows))
}

/// A launched campaign's tasks per RM key, as the queue has placed them so far.
pub async fn tasks_by_rm(
    connection: &impl ConnectionTrait,
    campaign_id: &str,
) -> Result<Vec<(String, i64)>> {
    use campaign_task::Column;
    let rows: Vec<(Option<String>, String, i64)> = campaign_task::Entity::find()
        .select_only()
        .column(Column::RmId)
        .column(Column::BranchId)
        .column_as(Expr::col(Column::ClientId).count(), "tasks")
        .filter(Column::CampaignId.eq(campaign_id))
        .group_by(Column::RmId)
        .group_by(Column::BranchId)
        .into_tuple()
        .all(connection)
        .await?;
    Ok(fold_by_rm(rows))
}

pub async fn locked_campaign(
    transaction: &DatabaseTransaction,
    campaign_id: &str,
) -> Result<campaign::Model> {
    campaign::Entity::find_by_id(campaign_id)
        .lock_exclusive()
        .one(transaction)
        .await?
        .ok_or_else(|| RpcError::NotFound(format!("campaign {campaign_id}")).into())
}

/// A second campaign admin's approval of the launch another one asked for.
#[derive(Debug, Clone)]
pub struct Approval {
    pub approver: String,
    pub requested_by: String,
}

/// Launches `campaign_id` (any size: the caller has checked who may). A
/// launched campaign is answered with its tasks and nothing new.
pub async fn launch(
    db: &crm_store::Db,
    campaign_id: &str,
    upgrade_percent: u8,
    approval: Option<&Approval>,
    now: DateTime<Utc>,
) -> Result<(campaign::Model, Launched)> {
    // As the database keeps it (microseconds): the tasks are found again by it.
    let now = now.trunc_subsecs(6);
    let transaction = db.begin().await?;
    let campaign = locked_campaign(&transaction, campaign_id).await?;
    match campaign.status {
        CampaignStatus::Draft => {}
        CampaignStatus::Launched | CampaignStatus::Closed => {
            let existing = campaign_task::Entity::find()
                .filter(campaign_task::Column::CampaignId.eq(campaign_id))
                .count(&transaction)
                .await?;
            let by_rm = tasks_by_rm(&transaction, campaign_id).await?;
            transaction.commit().await?;
            return Ok((
                campaign,
                Launched {
                    created: 0,
                    existing: i64::try_from(existing).unwrap_or(i64::MAX),
                    by_rm,
                },
            ));
        }
        CampaignStatus::Cancelled => {
            return Err(RpcError::FailedPrecondition(format!(
                "campaign {campaign_id} was cancelled; it cannot be launched"
            ))
            .into());
        }
    }
    // Checked again under the lock: what was approved is what waits.
    if let Some(approval) = approval {
        if campaign.launch_requested_by.as_deref() != Some(approval.requested_by.as_str()) {
            return Err(RpcError::Aborted(format!(
                "campaign {campaign_id}'s launch request changed meanwhile; read it again"
            ))
            .into());
        }
        if approval.approver == approval.requested_by {
            return Err(RpcError::PermissionDenied(
                "a launch is approved by another campaign admin than the one who asked for it"
                    .into(),
            )
            .into());
        }
    }
    let audience: Audience = serde_json::from_str(&campaign.audience).map_err(|error| {
        CampaignsError::Corrupt(format!("campaign {campaign_id} audience: {error}"))
    })?;
    let created = freeze_audience(&transaction, &campaign, &audience, upgrade_percent, now).await?;
    // A draft has asked the queue for nothing yet (the asking commits with the
    // launch): every open task is asked for, also any an earlier run left.
    request_tasks(&transaction, &campaign, Asked::EveryOpenTask).await?;
    let mut row: campaign::ActiveModel = campaign.into();
    row.status = sea_orm::Set(CampaignStatus::Launched);
    row.launched_at = sea_orm::Set(Some(now));
    row.audience_size = sea_orm::Set(i64::try_from(created).unwrap_or(i64::MAX));
    if let Some(approval) = approval {
        row.approved_by = sea_orm::Set(Some(approval.approver.clone()));
    }
    let stored = sea_orm::ActiveModelTrait::update(row, &transaction).await?;
    let by_rm = tasks_by_rm(&transaction, campaign_id).await?;
    transaction.commit().await?;
    tracing::info!(campaign_id, tasks = created, "campaign launched");
    Ok((
        stored,
        Launched {
            created: i64::try_from(created).unwrap_or(i64::MAX),
            existing: 0,
            by_rm,
        },
    ))
}

/// One task per audience client, for the client's primary RM (none: the branch
/// pool), due at the contact window's end; how many were new.
async fn freeze_audience(
    transaction: &DatabaseTransaction,
    campaign: &campaign::Model,
    audience: &Audience,
    upgrade_percent: u8,
    now: DateTime<Utc>,
) -> Result<u64> {
    use campaign_client::Column as Client;
    use campaign_task::Column as Task;
    let select = Query::select()
        .expr(Expr::val(campaign.campaign_id.as_str()))
        .column(Client::ClientId)
        .expr(Expr::val(""))
        .column(Client::HomeBranchId)
        .column(Client::Tier)
        .column(Client::PrimaryRmId)
        .expr(Expr::val(TaskState::Open.as_str()))
        .expr(Expr::val(campaign.window_end))
        .expr(Expr::val(now))
        .from(campaign_client::Entity)
        .cond_where(audience.condition(upgrade_percent))
        .to_owned();
    let insert = Query::insert()
        .into_table(campaign_task::Entity)
        .columns([
            Task::CampaignId,
            Task::ClientId,
            Task::Round,
            Task::BranchId,
            Task::Tier,
            Task::RmId,
            Task::State,
            Task::DueAt,
            Task::CreatedAt,
        ])
        .select_from(select)
        .map_err(|error| CampaignsError::Corrupt(format!("audience query: {error}")))?
        .on_conflict(
            OnConflict::columns([Task::CampaignId, Task::ClientId, Task::Round])
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    Ok(transaction.execute(&insert).await?.rows_affected())
}

/// Which of a campaign's open tasks to ask the queue for.
#[derive(Debug, Clone, Copy)]
pub enum Asked {
    /// At launch: all of them.
    EveryOpenTask,
    /// One run's follow-ups: those it wrote, in its transaction, at this instant.
    MadeAt(DateTime<Utc>),
}

/// Asks the RM work queue for `which` open tasks of `campaign`, a thousand per
/// message. The queue makes each item once per source key, so asking again is
/// harmless.
pub async fn request_tasks(
    transaction: &DatabaseTransaction,
    campaign: &campaign::Model,
    which: Asked,
) -> Result<u64> {
    use campaign_task::Column;
    // Before every key: no client id is empty.
    let mut after = (String::new(), String::new());
    let mut asked = 0;
    let mut messages = Vec::new();
    loop {
        let mut select = campaign_task::Entity::find();
        if let Asked::MadeAt(made_at) = which {
            select = select.filter(Column::CreatedAt.eq(made_at));
        }
        let page: Vec<campaign_task::Model> = select
            .filter(Column::CampaignId.eq(campaign.campaign_id.as_str()))
            .filter(Column::State.eq(TaskState::Open))
            // Keyset on the key (client, round): a client may have several tasks.
            .filter(
                sea_orm::Condition::any()
                    .add(Column::ClientId.gt(after.0.as_str()))
                    .add(
                        sea_orm::Condition::all()
                            .add(Column::ClientId.eq(after.0.as_str()))
                            .add(Column::Round.gt(after.1.as_str())),
                    ),
            )
            .order_by_asc(Column::ClientId)
            .order_by_asc(Column::Round)
            .limit(ITEMS_PER_MESSAGE)
            .all(transaction)
            .await?;
        let Some(last) = page.last() else { break };
        after = (last.client_id.clone(), last.round.clone());
        asked += page.len() as u64;
        let full = page.len() as u64 == ITEMS_PER_MESSAGE;
        let items = page
            .into_iter()
            .map(|task| RequestedWorkItem {
                source_key: task_source_key(&campaign.campaign_id, &task.client_id, &task.round),
                kind: WorkItemKind::CampaignTask,
                client_id: task.client_id,
                title: task.title.unwrap_or_else(|| campaign.task_title.clone()),
                detail: task
                    .detail
                    .unwrap_or_else(|| format!("{} — {}", campaign.name, campaign.kind)),
                priority: task.priority,
                due_at: Some(task.due_at),
                // The queue's chain: the client's primary RM as the queue knows
                // them now, else the least-loaded RM of the home branch.
                rm_id: None,
                home_branch_id: (!task.branch_id.is_empty()).then_some(task.branch_id),
            })
            .collect();
        messages.push(
            crm_bus::outbox::event_row(
                SERVICE,
                WORK_ITEMS_REQUESTED,
                WORK_ITEMS_REQUESTED,
                &WorkItemsRequested {
                    requested_by: SERVICE.to_owned(),
                    items,
                },
            )
            .map_err(CampaignsError::Bus)?,
        );
        if messages.len() == MESSAGES_PER_WRITE {
            let mut writes = WriteBatch::new();
            writes.insert_many(std::mem::take(&mut messages));
            writes.execute(transaction).await?;
        }
        if !full {
            break;
        }
    }
    let mut writes = WriteBatch::new();
    writes.insert_many(messages);
    writes.execute(transaction).await?;
    Ok(asked)
}

/// PreviewAudience: the audience now, by tier and by branch. Writes nothing.
pub async fn preview(
    connection: &impl ConnectionTrait,
    audience: &Audience,
    upgrade_percent: u8,
) -> Result<crm_proto::v1::PreviewAudienceResponse> {
    use campaign_client::Column;
    use crm_proto::v1::CountByKey;
    let rows: Vec<(String, String, i64)> = campaign_client::Entity::find()
        .select_only()
        .column(Column::Tier)
        .column(Column::HomeBranchId)
        .column_as(Expr::col(Column::ClientId).count(), "clients")
        .filter(audience.condition(upgrade_percent))
        .group_by(Column::Tier)
        .group_by(Column::HomeBranchId)
        .into_tuple()
        .all(connection)
        .await?;
    let mut by_tier: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_branch: BTreeMap<String, i64> = BTreeMap::new();
    for (tier, branch, count) in &rows {
        *by_tier.entry(tier.clone()).or_default() += count;
        *by_branch.entry(branch.clone()).or_default() += count;
    }
    let counts = |map: BTreeMap<String, i64>| {
        map.into_iter()
            .map(|(key, count)| CountByKey { key, count })
            .collect()
    };
    Ok(crm_proto::v1::PreviewAudienceResponse {
        total: rows.iter().map(|(_, _, count)| count).sum(),
        by_tier: counts(by_tier),
        by_branch: counts(by_branch),
    })
}
