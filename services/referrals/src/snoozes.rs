//! Snoozed work items come back at their time: a small loop finds the ones due,
//! reopens each with its version bumped and announces it, so the RM's live stream
//! shows it again. Each item is reopened by a conditional update on its version,
//! so replicas running the same loop reopen it once.

use std::time::Duration;

use crate::store::work_item;
use chrono::{DateTime, Utc};
use crm_domain::referral::WorkItemState;
use crm_store::Db;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::work_item_feed::announce;

/// How often the loop looks; an item returns at most this late.
pub const SNOOZE_POLL: Duration = Duration::from_secs(1);

/// Reopens the items whose snooze ended by `now`; how many.
pub async fn wake_due(db: &Db, now: DateTime<Utc>) -> Result<usize> {
    let due = work_item::Entity::find()
        .filter(work_item::Column::State.eq(WorkItemState::Snoozed.as_str()))
        .filter(work_item::Column::SnoozedUntil.lte(now))
        .order_by_asc(work_item::Column::SnoozedUntil)
        .limit(500)
        .all(db)
        .await?;
    let mut woken = 0;
    for item in due {
        let transaction = db.begin().await?;
        let reopened = work_item::Entity::update_many()
            .col_expr(
                work_item::Column::State,
                Expr::value(WorkItemState::Open.as_str()),
            )
            .col_expr(
                work_item::Column::SnoozedUntil,
                Expr::value(None::<DateTime<Utc>>),
            )
            .col_expr(work_item::Column::Version, Expr::value(item.version + 1))
            .col_expr(work_item::Column::UpdatedAt, Expr::value(now))
            .filter(work_item::Column::WorkItemId.eq(item.work_item_id.as_str()))
            .filter(work_item::Column::Version.eq(item.version))
            .exec(&transaction)
            .await?;
        if reopened.rows_affected == 0 {
            transaction.rollback().await?;
            continue;
        }
        let stored = work_item::Model {
            state: WorkItemState::Open,
            snoozed_until: None,
            version: item.version + 1,
            updated_at: now,
            ..item
        };
        announce(&transaction, &stored).await?;
        transaction.commit().await?;
        woken += 1;
    }
    Ok(woken)
}

/// The loop a referrals process runs until shutdown.
pub async fn run(db: Db, outbox: crm_bus::outbox::OutboxWaker, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SNOOZE_POLL) => {}
        }
        match wake_due(&db, Utc::now()).await {
            Ok(0) => {}
            Ok(_) => outbox.wake(),
            Err(error) => tracing::warn!(%error, "snoozed items could not be reopened; retrying"),
        }
    }
}
