//! What the campaigns service takes from the bus, each in the consumer's
//! transaction: the client book's profiles (audiences) and contacts (cadence);
//! the RM work queue's news of the tasks it asked for (who got each, how each
//! ended); and, for the league tables, referrals, tier crossings and funds kept
//! after large-outflow alerts. It reads no other service's tables.

use chrono::{DateTime, Utc};
use crm_bus::{Envelope, HandlerError};
use crm_domain::campaign::{TaskState, parse_task_source_key};
use crm_domain::messages::{
    ClientProfile, ClientProfilesChanged, InteractionLogged, ReferralEvent, TierChanged,
    WorkItemCompleted, WorkItemsAssigned,
};
use crm_domain::referral::FundsOutcome;
use crm_domain::tier::Tier;
use crm_store::Dialect;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set, Statement,
};

use crate::SERVICE;
use crate::audience::tier_rank;
use crate::store::{
    campaign_client, campaign_task, league_funds_kept, league_referral, league_tier_crossing,
};

/// Profiles written per statement (~14 bind parameters each).
const PROFILES_PER_WRITE: usize = 1_000;
/// Task assignments written per statement (4 parameters each).
const ASSIGNMENTS_PER_WRITE: usize = 1_000;

fn segments_column(segments: &[String]) -> String {
    format!(",{},", segments.join(","))
}

fn profile_row(profile: &ClientProfile) -> Result<campaign_client::ActiveModel, HandlerError> {
    let tier = Tier::parse(&profile.tier)
        .ok_or_else(|| HandlerError::Poison(format!("unknown tier {:?}", profile.tier)))?;
    Ok(campaign_client::ActiveModel {
        client_id: Set(profile.client_id.clone()),
        home_branch_id: Set(profile.home_branch_id.clone()),
        tier: Set(tier.as_str().to_owned()),
        tier_rank: Set(tier_rank(tier)),
        aum_minor: Set(profile.aum_daily_avg_minor),
        currency: Set(profile.currency.clone()),
        segments: Set(segments_column(&profile.segments)),
        primary_rm_id: Set(profile.primary_rm_id.clone()),
        do_not_contact: Set(profile.do_not_contact),
        marketing_consent: Set(profile.marketing_consent),
        last_contact_at: Set(profile.last_contact_at),
        next_tier_at_minor: Set(profile.next_tier_at_minor),
        source_updated_at: Set(profile.updated_at),
    })
}

/// Stores each profile unless the projection holds a newer one of the client;
/// a batch of a thousand (a republish) is one statement per thousand.
pub async fn apply_profiles(
    transaction: &DatabaseTransaction,
    message: ClientProfilesChanged,
) -> Result<(), HandlerError> {
    use campaign_client::Column;
    // One row per client per statement: the last of a client's profiles in the
    // message is the newest.
    let mut newest: std::collections::BTreeMap<&str, &ClientProfile> = Default::default();
    for profile in &message.profiles {
        let entry = newest.entry(profile.client_id.as_str()).or_insert(profile);
        if profile.updated_at >= entry.updated_at {
            *entry = profile;
        }
    }
    let rows = newest
        .values()
        .map(|profile| profile_row(profile))
        .collect::<Result<Vec<_>, _>>()?;
    let stored = Expr::col((campaign_client::Entity, Column::SourceUpdatedAt));
    let news = Expr::col((Alias::new("excluded"), Column::SourceUpdatedAt));
    for chunk in rows.chunks(PROFILES_PER_WRITE) {
        campaign_client::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::column(Column::ClientId)
                    .update_columns([
                        Column::HomeBranchId,
                        Column::Tier,
                        Column::TierRank,
                        Column::AumMinor,
                        Column::Currency,
                        Column::Segments,
                        Column::PrimaryRmId,
                        Column::DoNotContact,
                        Column::MarketingConsent,
                        Column::NextTierAtMinor,
                        Column::SourceUpdatedAt,
                    ])
                    // A contact is never taken back: a profile read before an
                    // interaction was logged may land after the interaction's news.
                    .value(
                        Column::LastContactAt,
                        Expr::cust(
                            "CASE WHEN excluded.last_contact_at IS NULL THEN campaign_clients.last_contact_at \
                             WHEN campaign_clients.last_contact_at IS NULL \
                               OR campaign_clients.last_contact_at < excluded.last_contact_at \
                             THEN excluded.last_contact_at ELSE campaign_clients.last_contact_at END",
                        ),
                    )
                    .action_and_where(stored.clone().lte(news.clone()))
                    .to_owned(),
            )
            .exec_without_returning(transaction)
            .await?;
    }
    Ok(())
}

/// A contact moves the client's last contact forward, never back.
pub async fn apply_interaction(
    transaction: &DatabaseTransaction,
    interaction: InteractionLogged,
) -> Result<(), HandlerError> {
    use campaign_client::Column;
    campaign_client::Entity::update_many()
        .col_expr(
            Column::LastContactAt,
            Expr::value(Some(interaction.occurred_at)),
        )
        .filter(Column::ClientId.eq(interaction.client_id.as_str()))
        .filter(
            sea_orm::Condition::any()
                .add(Column::LastContactAt.is_null())
                .add(Column::LastContactAt.lt(interaction.occurred_at)),
        )
        .exec(transaction)
        .await?;
    Ok(())
}

/// Who the queue gave each of this service's tasks to: one statement per
/// thousand (an UPDATE … FROM VALUES both databases read alike).
pub async fn apply_assigned(
    transaction: &DatabaseTransaction,
    assigned: WorkItemsAssigned,
) -> Result<(), HandlerError> {
    if assigned.requested_by != SERVICE {
        return Ok(());
    }
    let rows: Vec<[String; 4]> = assigned
        .items
        .iter()
        .filter(|item| !item.rm_id.is_empty())
        .filter_map(|item| {
            let (campaign_id, client_id, round) = parse_task_source_key(&item.source_key)?;
            Some([
                campaign_id.to_owned(),
                client_id.to_owned(),
                round.to_owned(),
                item.rm_id.clone(),
            ])
        })
        .collect();
    let dialect = Dialect::of(transaction);
    for chunk in rows.chunks(ASSIGNMENTS_PER_WRITE) {
        let mut values = Vec::with_capacity(chunk.len() * 4);
        let mut tuples = Vec::with_capacity(chunk.len());
        for row in chunk {
            let first = values.len();
            let placeholders: Vec<String> = (1..=4)
                .map(|n| match dialect {
                    Dialect::Postgres => format!("${}", first + n),
                    Dialect::Sqlite => "?".to_owned(),
                })
                .collect();
            tuples.push(format!("({})", placeholders.join(", ")));
            values.extend(row.iter().cloned().map(sea_orm::Value::from));
        }
        let sql = format!(
            "UPDATE campaign_tasks SET rm_id = v.column4 FROM (VALUES {}) AS v \
             WHERE campaign_tasks.campaign_id = v.column1 AND campaign_tasks.client_id = v.column2 \
             AND campaign_tasks.round = v.column3 AND campaign_tasks.state = 'open'",
            tuples.join(", ")
        );
        transaction
            .execute_raw(Statement::from_sql_and_values(
                transaction.get_database_backend(),
                sql,
                values,
            ))
            .await?;
    }
    Ok(())
}

/// A completed item this service asked for: the task's outcome (an open task
/// only: a withdrawn one stays withdrawn). Any service's alert whose funds were
/// kept counts for the league tables.
pub async fn apply_completed(
    transaction: &DatabaseTransaction,
    completed: WorkItemCompleted,
) -> Result<(), HandlerError> {
    if completed.requested_by != SERVICE {
        return record_funds_kept(transaction, &completed).await;
    }
    let Some((campaign_id, client_id, round)) = parse_task_source_key(&completed.source_key) else {
        return Err(HandlerError::Poison(format!(
            "a completion of {:?}, not a campaign task's key",
            completed.source_key
        )));
    };
    use campaign_task::Column;
    campaign_task::Entity::update_many()
        .col_expr(Column::State, Expr::value(TaskState::Done))
        .col_expr(Column::Outcome, Expr::value(completed.task_outcome))
        .col_expr(
            Column::ConvertedProduct,
            Expr::value(completed.converted_product.clone()),
        )
        .col_expr(
            Column::ConvertedMinor,
            Expr::value(completed.converted_minor),
        )
        .col_expr(
            Column::ConvertedCurrency,
            Expr::value(completed.converted_currency.clone()),
        )
        .col_expr(
            Column::CompletedAt,
            Expr::value(Some(completed.completed_at)),
        )
        .col_expr(Column::RmId, Expr::value(Some(completed.rm_id.clone())))
        .col_expr(
            Column::WorkItemId,
            Expr::value(Some(completed.work_item_id.clone())),
        )
        .filter(Column::CampaignId.eq(campaign_id))
        .filter(Column::ClientId.eq(client_id))
        .filter(Column::Round.eq(round))
        .filter(Column::State.eq(TaskState::Open))
        .exec(transaction)
        .await?;
    Ok(())
}

async fn record_funds_kept(
    transaction: &DatabaseTransaction,
    completed: &WorkItemCompleted,
) -> Result<(), HandlerError> {
    let Some(outcome @ (FundsOutcome::Kept | FundsOutcome::PartlyKept)) = completed.funds_outcome
    else {
        return Ok(());
    };
    // The client's home branch, as the projection knows it: the RM's branch
    // is not in the message, and the alert is the home branch's work.
    let branch_id = match &completed.client_id {
        Some(client_id) => campaign_client::Entity::find_by_id(client_id.as_str())
            .one(transaction)
            .await?
            .map(|client| client.home_branch_id),
        None => None,
    }
    .unwrap_or_default();
    league_funds_kept::Entity::insert(league_funds_kept::ActiveModel {
        work_item_id: Set(completed.work_item_id.clone()),
        rm_id: Set(completed.rm_id.clone()),
        branch_id: Set(branch_id),
        outcome: Set(outcome),
        completed_at: Set(completed.completed_at),
    })
    .on_conflict(
        OnConflict::column(league_funds_kept::Column::WorkItemId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(transaction)
    .await?;
    Ok(())
}

/// A referral for the league tables: made (assigned), reassigned, accepted,
/// converted.
pub async fn apply_referral(
    transaction: &DatabaseTransaction,
    message_type: &str,
    referral: ReferralEvent,
) -> Result<(), HandlerError> {
    use crm_domain::messages::{
        REFERRAL_ACCEPTED, REFERRAL_ASSIGNED, REFERRAL_OUTCOME_RECORDED, REFERRAL_REASSIGNED,
    };
    use league_referral::Column;
    match message_type {
        REFERRAL_ASSIGNED | REFERRAL_REASSIGNED => {
            league_referral::Entity::insert(league_referral::ActiveModel {
                referral_id: Set(referral.referral_id.clone()),
                branch_id: Set(referral.branch_id.clone()),
                rm_id: Set(referral.assigned_rm_id.clone()),
                made_at: Set(referral.occurred_at),
                accepted_at: Set(None),
                minutes_to_accept: Set(None),
                converted_at: Set(None),
            })
            .on_conflict(
                OnConflict::column(Column::ReferralId)
                    .update_column(Column::RmId)
                    .to_owned(),
            )
            .exec_without_returning(transaction)
            .await?;
        }
        REFERRAL_ACCEPTED => {
            let made_at: Option<DateTime<Utc>> =
                league_referral::Entity::find_by_id(referral.referral_id.as_str())
                    .one(transaction)
                    .await?
                    .map(|row| row.made_at);
            if let Some(made_at) = made_at {
                let minutes = Ord::max((referral.occurred_at - made_at).num_minutes(), 0);
                league_referral::Entity::update_many()
                    .col_expr(Column::AcceptedAt, Expr::value(Some(referral.occurred_at)))
                    .col_expr(Column::MinutesToAccept, Expr::value(Some(minutes)))
                    .col_expr(Column::RmId, Expr::value(referral.assigned_rm_id.clone()))
                    .filter(Column::ReferralId.eq(referral.referral_id.as_str()))
                    .filter(Column::AcceptedAt.is_null())
                    .exec(transaction)
                    .await?;
            }
        }
        REFERRAL_OUTCOME_RECORDED if referral.status == "converted" => {
            league_referral::Entity::update_many()
                .col_expr(Column::ConvertedAt, Expr::value(Some(referral.occurred_at)))
                .filter(Column::ReferralId.eq(referral.referral_id.as_str()))
                .filter(Column::ConvertedAt.is_null())
                .exec(transaction)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// A client reaching wealth, or HNW and above, from below.
pub async fn apply_tier(
    transaction: &DatabaseTransaction,
    change: TierChanged,
) -> Result<(), HandlerError> {
    let rank = |tier: &str| Tier::parse(tier).map(tier_rank);
    let Some(now) = rank(&change.tier) else {
        return Err(HandlerError::Poison(format!(
            "unknown tier {:?}",
            change.tier
        )));
    };
    let before = change.previous_tier.as_deref().and_then(rank).unwrap_or(0);
    let crossings = [
        ("wealth", tier_rank(Tier::Wealth)),
        ("hnw", tier_rank(Tier::Hnw)),
    ]
    .into_iter()
    .filter(|(_, threshold)| before < *threshold && now >= *threshold)
    .map(|(crossed, _)| league_tier_crossing::ActiveModel {
        client_id: Set(change.client_id.clone()),
        crossed: Set(crossed.to_owned()),
        changed_at: Set(change.changed_at),
        branch_id: Set(change.home_branch_id.clone()),
        rm_id: Set(change.primary_rm_id.clone()),
    })
    .collect::<Vec<_>>();
    if crossings.is_empty() {
        return Ok(());
    }
    league_tier_crossing::Entity::insert_many(crossings)
        .on_conflict(
            OnConflict::columns([
                league_tier_crossing::Column::ClientId,
                league_tier_crossing::Column::Crossed,
                league_tier_crossing::Column::ChangedAt,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(transaction)
        .await?;
    Ok(())
}

/// Dispatches one consumed message.
pub async fn handle(
    transaction: &DatabaseTransaction,
    envelope: &Envelope,
    time_zone: chrono_tz::Tz,
) -> Result<(), HandlerError> {
    use crm_domain::messages::*;
    match envelope.message_type.as_str() {
        CAMPAIGN_TASKS_REQUESTED => {
            crate::requested::apply(transaction, envelope.decode()?, time_zone).await
        }
        CLIENT_PROFILES_CHANGED => apply_profiles(transaction, envelope.decode()?).await,
        INTERACTION_LOGGED => apply_interaction(transaction, envelope.decode()?).await,
        WORK_ITEMS_ASSIGNED => apply_assigned(transaction, envelope.decode()?).await,
        WORK_ITEM_COMPLETED => apply_completed(transaction, envelope.decode()?).await,
        TIER_CHANGED => apply_tier(transaction, envelope.decode()?).await,
        REFERRAL_ASSIGNED | REFERRAL_REASSIGNED | REFERRAL_ACCEPTED | REFERRAL_OUTCOME_RECORDED => {
            apply_referral(transaction, &envelope.message_type, envelope.decode()?).await
        }
        other => Err(HandlerError::Poison(format!(
            "unexpected message type {other}"
        ))),
    }
}

/// What the campaigns service's queue binds.
pub const CONSUMES: &[&str] = &[
    crm_domain::messages::CAMPAIGN_TASKS_REQUESTED,
    crm_domain::messages::CLIENT_PROFILES_CHANGED,
    crm_domain::messages::INTERACTION_LOGGED,
    crm_domain::messages::WORK_ITEMS_ASSIGNED,
    crm_domain::messages::WORK_ITEM_COMPLETED,
    crm_domain::messages::TIER_CHANGED,
    crm_domain::messages::REFERRAL_ASSIGNED,
    crm_domain::messages::REFERRAL_REASSIGNED,
    crm_domain::messages::REFERRAL_ACCEPTED,
    crm_domain::messages::REFERRAL_OUTCOME_RECORDED,
];
