//! Tasks other services ask of a period's campaign (`campaign_tasks.requested`):
//! the events service's maturity follow-ups become tasks of the quarter's
//! CAMPAIGN_KIND_MATURITY campaign, so its progress and the league tables count
//! them like any campaign's. The campaign is made on the first request (one per
//! kind, period and name, as CreateCampaign makes it), each task once per
//! (campaign, client, round), and the new ones are asked of the RM work queue in
//! the same transaction.

use std::collections::HashMap;

use chrono::{SubsecRound, Utc};
use crm_bus::HandlerError;
use crm_domain::campaign::{CampaignStatus, Quarter, TaskState};
use crm_domain::messages::CampaignTasksRequested;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Set,
};

use crate::audience::Audience;
use crate::launch::{self, Asked};
use crate::store::{campaign, campaign_client, campaign_task};

/// At most this many tasks in one message.
const MAX_ITEMS: usize = 5_000;

fn poison(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::Poison(error.to_string())
}

pub async fn apply(
    transaction: &DatabaseTransaction,
    message: CampaignTasksRequested,
    time_zone: chrono_tz::Tz,
) -> Result<(), HandlerError> {
    if message.items.len() > MAX_ITEMS {
        return Err(poison(format!(
            "{} tasks in one request; at most {MAX_ITEMS}",
            message.items.len()
        )));
    }
    if !(1..=4).contains(&message.quarter) {
        return Err(poison(format!("quarter {} is not 1 to 4", message.quarter)));
    }
    // Every item as the work queue will check it, before anything is written:
    // a bad one refused there would leave its whole batch's tasks open here.
    for item in &message.items {
        let key = format!("{}:{}", item.client_id, item.round);
        if crm_domain::ClientId::parse(&item.client_id).is_err() {
            return Err(poison(format!(
                "{key}: client id {:?} is not one",
                item.client_id
            )));
        }
        if item.round.is_empty()
            || item.round.len() > 100
            || item.round.chars().any(char::is_control)
        {
            return Err(poison(format!(
                "{key}: round must be 1 to 100 printable characters"
            )));
        }
        if item.title.trim().is_empty() || item.title.chars().count() > 200 {
            return Err(poison(format!("{key}: title must be 1 to 200 characters")));
        }
        if item.detail.chars().count() > 4_000 {
            return Err(poison(format!(
                "{key}: detail must be at most 4,000 characters"
            )));
        }
    }
    let quarter = Quarter {
        year: message.year,
        quarter: message.quarter,
    };
    let (Some(start), Some(end)) = (quarter.starts_at(time_zone), quarter.ends_at(time_zone))
    else {
        return Err(poison(format!(
            "no quarter {}-Q{}",
            message.year, message.quarter
        )));
    };
    let now = Utc::now().trunc_subsecs(6);
    use campaign::Column;
    campaign::Entity::insert(campaign::ActiveModel {
        campaign_id: Set(uuid::Uuid::now_v7().to_string()),
        name: Set(message.campaign_name.clone()),
        kind: Set(message.kind),
        period_year: Set(message.year),
        period_quarter: Set(i32::try_from(message.quarter).map_err(poison)?),
        audience: Set(serde_json::to_string(&Audience::default()).map_err(poison)?),
        window_start: Set(start),
        window_end: Set(end),
        task_title: Set(message.task_title.clone()),
        status: Set(CampaignStatus::Launched),
        created_by: Set(format!("service:{}", message.requested_by)),
        created_at: Set(now),
        launched_at: Set(Some(now)),
        launch_requested_by: Set(None),
        approved_by: Set(None),
        audience_size: Set(0),
        cancel_reason: Set(None),
    })
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
    .exec_without_returning(transaction)
    .await?;
    let Some(campaign) = campaign::Entity::find()
        .filter(Column::Kind.eq(message.kind))
        .filter(Column::PeriodYear.eq(message.year))
        .filter(Column::PeriodQuarter.eq(i32::try_from(message.quarter).map_err(poison)?))
        .filter(Column::Name.eq(message.campaign_name.as_str()))
        .lock_exclusive()
        .one(transaction)
        .await?
    else {
        return Err(HandlerError::Failed(
            "the requested campaign is not there".into(),
        ));
    };
    if campaign.status == CampaignStatus::Cancelled {
        tracing::info!(campaign_id = %campaign.campaign_id, "tasks asked of a cancelled campaign: none made");
        return Ok(());
    }
    // Where each client banks, as the projection knows it (the queue routes a
    // client it knows better itself).
    let ids: Vec<String> = message
        .items
        .iter()
        .map(|item| item.client_id.clone())
        .collect();
    let known: HashMap<String, (String, String)> = campaign_client::Entity::find()
        .select_only()
        .columns([
            campaign_client::Column::ClientId,
            campaign_client::Column::HomeBranchId,
            campaign_client::Column::Tier,
        ])
        .filter(campaign_client::Column::ClientId.is_in(ids))
        .into_tuple::<(String, String, String)>()
        .all(transaction)
        .await?
        .into_iter()
        .map(|(client_id, branch, tier)| (client_id, (branch, tier)))
        .collect();
    let rows: Vec<campaign_task::ActiveModel> = message
        .items
        .iter()
        .map(|item| {
            let (branch, tier) = known.get(&item.client_id).cloned().unwrap_or_default();
            campaign_task::ActiveModel {
                campaign_id: Set(campaign.campaign_id.clone()),
                client_id: Set(item.client_id.clone()),
                round: Set(item.round.clone()),
                branch_id: Set(branch),
                tier: Set(tier),
                rm_id: Set(None),
                work_item_id: Set(None),
                state: Set(TaskState::Open),
                outcome: Set(None),
                converted_product: Set(None),
                converted_minor: Set(None),
                converted_currency: Set(None),
                due_at: Set(item.due_at),
                created_at: Set(now),
                completed_at: Set(None),
                title: Set(Some(item.title.clone())),
                detail: Set(Some(item.detail.clone())),
                priority: Set(item.priority),
            }
        })
        .collect();
    for chunk in rows.chunks(500) {
        let inserted = campaign_task::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    campaign_task::Column::CampaignId,
                    campaign_task::Column::ClientId,
                    campaign_task::Column::Round,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(transaction)
            .await;
        match inserted {
            Ok(_) | Err(sea_orm::DbErr::RecordNotInserted) => {}
            Err(error) => return Err(error.into()),
        }
    }
    launch::request_tasks(transaction, &campaign, Asked::MadeAt(now))
        .await
        .map_err(|error| HandlerError::Failed(error.to_string()))?;
    let tasks = campaign_task::Entity::find()
        .filter(campaign_task::Column::CampaignId.eq(campaign.campaign_id.as_str()))
        .count(transaction)
        .await?;
    campaign::Entity::update_many()
        .col_expr(
            Column::AudienceSize,
            Expr::value(i64::try_from(tasks).unwrap_or(i64::MAX)),
        )
        .filter(Column::CampaignId.eq(campaign.campaign_id.as_str()))
        .exec(transaction)
        .await?;
    Ok(())
}
