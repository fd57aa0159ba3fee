//! Is the feed healthy? Two questions a bank's operators ask of it, answered by
//! `crm jobs feed-watch` (run every few minutes by cron or a CronJob):
//!
//! - **Held events**: events of clients the client book has not announced, kept
//!   and waiting (client_copy.rs). A few seconds is normal (the book's news lags
//!   the feed); longer than `CRM_HELD_EVENT_ALERT_MINUTES` means a client core
//!   banking knows and the book does not, which someone must look at.
//! - **A silent feed**: no event received for `CRM_FEED_SILENT_MINUTES` of
//!   business time (the bank's calendar: a quiet night or weekend is not silence).

use chrono::{DateTime, Utc};
use crm_domain::sla::BusinessCalendar;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, QueryFilter};
use sea_orm::{EntityTrait, FromQueryResult, QueryOrder, QuerySelect};
use serde::Serialize;

use crate::error::Result;
use crate::store::{bank_event_id, held_event};

/// Clients listed in a report, at most (the count says how many there are).
const LISTED: u64 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldClient {
    pub client_id: String,
    pub events: i64,
    pub oldest_received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedReport {
    /// Clients whose events have waited longer than the alert time, oldest first.
    pub held_too_long: Vec<HeldClient>,
    /// Events held now, however long.
    pub held_events: u64,
    /// When the last event arrived (IngestEvents or the feed); None: never.
    pub last_event_received_at: Option<DateTime<Utc>>,
    /// Business minutes since then.
    pub silent_business_minutes: i64,
    /// Silent past the setting: the feed is probably down.
    pub silent: bool,
}

pub struct FeedWatch {
    pub db: crm_store::Db,
    pub calendar: BusinessCalendar,
    pub held_alert_minutes: i64,
    pub silent_minutes: i64,
}

#[derive(FromQueryResult)]
struct HeldRow {
    client_id: String,
    events: i64,
    oldest: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct Latest {
    latest: Option<DateTime<Utc>>,
}

impl FeedWatch {
    pub async fn run(&self, now: DateTime<Utc>) -> Result<FeedReport> {
        let held_before = now - chrono::Duration::minutes(self.held_alert_minutes);
        let held_too_long = held_event::Entity::find()
            .select_only()
            .column(held_event::Column::ClientId)
            .column_as(Expr::col(held_event::Column::EventId).count(), "events")
            .column_as(Expr::col(held_event::Column::ReceivedAt).min(), "oldest")
            .filter(held_event::Column::ReceivedAt.lt(held_before))
            .group_by(held_event::Column::ClientId)
            .order_by_asc(Expr::col(held_event::Column::ReceivedAt).min())
            .order_by_asc(held_event::Column::ClientId)
            .limit(LISTED)
            .into_model::<HeldRow>()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| HeldClient {
                client_id: row.client_id,
                events: row.events,
                oldest_received_at: row.oldest,
            })
            .collect();
        let held_events = held_event::Entity::find()
            .select_only()
            .column_as(Expr::col(held_event::Column::EventId).count(), "events")
            .into_tuple::<i64>()
            .one(&self.db)
            .await?
            .unwrap_or(0);
        // MAX over the ledger's index on received_at: one index lookup.
        let last = bank_event_id::Entity::find()
            .select_only()
            .column_as(Expr::col(bank_event_id::Column::ReceivedAt).max(), "latest")
            .into_model::<Latest>()
            .one(&self.db)
            .await?
            .and_then(|row| row.latest);
        let silent_business_minutes = last
            .map(|at| self.calendar.business_minutes_between(at, now))
            .unwrap_or(0);
        Ok(FeedReport {
            held_too_long,
            held_events: u64::try_from(held_events).unwrap_or(0),
            last_event_received_at: last,
            silent_business_minutes,
            silent: last.is_some() && silent_business_minutes >= self.silent_minutes,
        })
    }
}
