//! Product maturities (产品到期): each `ProductMaturity` event is kept by client,
//! product and date, and `crm jobs maturity-sweep` asks for one follow-up per
//! product and maturity date in the next days, as tasks of the quarter's
//! CAMPAIGN_KIND_MATURITY campaign (the campaigns service makes them, once per
//! key, and counts them in progress and league tables). A maturity in the last
//! week before a month-, quarter- or year-end is flagged and of HIGH priority: the money
//! must be kept before the period's balances are counted.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use crm_domain::Money;
use crm_domain::campaign::{CampaignKind, Quarter};
use crm_domain::messages::{
    CAMPAIGN_TASKS_REQUESTED, CampaignTaskRequested, CampaignTasksRequested,
};
use crm_domain::referral::Priority;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};

use crate::SERVICE;
use crate::error::Result;
use crate::ingest::{BankEvent, EventDetail};
use crate::store::product_maturity;

/// Tasks per `campaign_tasks.requested` message.
const ITEMS_PER_MESSAGE: usize = 1_000;
/// A maturity this close to a period's end is flagged.
const DAYS_BEFORE_PERIOD_END: i64 = 7;

/// Keeps a maturity event: the latest says the product's name and amount.
pub async fn record(transaction: &DatabaseTransaction, event: &BankEvent) -> Result<()> {
    let EventDetail::ProductMaturity {
        product_id,
        product_name,
        amount,
        maturity_date,
    } = &event.detail
    else {
        return Ok(());
    };
    use product_maturity::Column;
    product_maturity::Entity::insert(product_maturity::ActiveModel {
        client_id: Set(event.client_id.clone()),
        product_id: Set(product_id.clone()),
        maturity_date: Set(*maturity_date),
        product_name: Set(product_name.clone()),
        amount_minor: Set(amount.minor_units()),
        currency: Set(amount.currency().to_owned()),
        event_id: Set(event.event_id.clone()),
        received_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([Column::ClientId, Column::ProductId, Column::MaturityDate])
            .update_columns([
                Column::ProductName,
                Column::AmountMinor,
                Column::Currency,
                Column::EventId,
                Column::ReceivedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(transaction)
    .await?;
    Ok(())
}

/// Which period's end a maturity on `date` falls just before, if any.
pub fn period_end_flag(date: NaiveDate) -> Option<&'static str> {
    let next_month = if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }?;
    if (next_month - date).num_days() > DAYS_BEFORE_PERIOD_END {
        return None;
    }
    Some(match date.month() {
        12 => "年末",
        3 | 6 | 9 => "季末",
        _ => "月末",
    })
}

/// What the sweep asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub maturities: usize,
    pub before_period_end: usize,
    pub messages: usize,
}

pub struct Sweep {
    pub days_ahead: i64,
    /// Days before the maturity the follow-up is due.
    pub lead_days: i64,
    pub time_zone: chrono_tz::Tz,
}

impl Sweep {
    /// 17:00 local on the day `lead_days` before the maturity, and never
    /// sooner than two hours from now.
    fn due_at(&self, maturity_date: NaiveDate, now: DateTime<Utc>) -> DateTime<Utc> {
        let day = maturity_date - Duration::days(self.lead_days);
        let local = day
            .and_hms_opt(17, 0, 0)
            .and_then(|at| self.time_zone.from_local_datetime(&at).earliest())
            .map(|at| at.with_timezone(&Utc));
        local.unwrap_or(now).max(now + Duration::hours(2))
    }

    fn task(&self, row: &product_maturity::Model, now: DateTime<Utc>) -> CampaignTaskRequested {
        let flag = period_end_flag(row.maturity_date);
        let amount = Money::parse(row.amount_minor, &row.currency)
            .map(|money| money.to_string())
            .unwrap_or_else(|_| format!("{} {}", row.amount_minor, row.currency));
        let title = format!(
            "{}产品到期：{} {} 于 {} 到期",
            flag.map(|flag| format!("[{flag}] ")).unwrap_or_default(),
            row.product_name,
            amount,
            row.maturity_date
        );
        CampaignTaskRequested {
            client_id: row.client_id.clone(),
            round: format!("{}:{}", row.product_id, row.maturity_date),
            title: title.chars().take(200).collect(),
            detail: format!(
                "Product {} ({}) of {} matures on {}: call the client before then to keep the money in the bank.",
                row.product_name, row.product_id, amount, row.maturity_date
            ),
            priority: if flag.is_some() {
                Priority::High
            } else {
                Priority::Normal
            },
            due_at: self.due_at(row.maturity_date, now),
        }
    }

    /// Asks for a follow-up per maturity from today to `days_ahead` days on (in
    /// the bank's time zone), grouped by the quarter each maturity falls in, in
    /// one transaction. Run twice, it asks twice; the campaigns service makes each
    /// task once.
    pub async fn run(&self, db: &crm_store::Db, now: DateTime<Utc>) -> Result<Swept> {
        let today = now.with_timezone(&self.time_zone).date_naive();
        let until = today + Duration::days(self.days_ahead);
        let rows = product_maturity::Entity::find()
            .filter(product_maturity::Column::MaturityDate.gte(today))
            .filter(product_maturity::Column::MaturityDate.lte(until))
            .order_by_asc(product_maturity::Column::MaturityDate)
            .order_by_asc(product_maturity::Column::ClientId)
            .all(db)
            .await?;
        let mut by_quarter: std::collections::BTreeMap<(i32, u32), Vec<CampaignTaskRequested>> =
            Default::default();
        let mut swept = Swept::default();
        for row in &rows {
            let quarter = Quarter::of(row.maturity_date);
            swept.maturities += 1;
            if period_end_flag(row.maturity_date).is_some() {
                swept.before_period_end += 1;
            }
            by_quarter
                .entry((quarter.year, quarter.quarter))
                .or_default()
                .push(self.task(row, now));
        }
        let transaction = db.begin().await?;
        for ((year, quarter), items) in by_quarter {
            for chunk in items.chunks(ITEMS_PER_MESSAGE) {
                let message = CampaignTasksRequested {
                    requested_by: SERVICE.to_owned(),
                    kind: CampaignKind::Maturity,
                    year,
                    quarter,
                    campaign_name: format!("{year}年第{quarter}季度产品到期跟进"),
                    task_title: "产品到期跟进".to_owned(),
                    items: chunk.to_vec(),
                };
                crm_bus::outbox::enqueue_event(
                    &transaction,
                    SERVICE,
                    CAMPAIGN_TASKS_REQUESTED,
                    CAMPAIGN_TASKS_REQUESTED,
                    &message,
                )
                .await?;
                swept.messages += 1;
            }
        }
        transaction.commit().await?;
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maturities_just_before_a_period_end_are_flagged() {
        let date = |text: &str| text.parse::<NaiveDate>().unwrap();
        let cases = [
            ("2026-12-28", Some("年末")),
            ("2026-12-24", None),
            ("2026-03-25", Some("季末")),
            ("2026-06-30", Some("季末")),
            ("2026-11-30", Some("月末")),
            ("2026-02-22", Some("月末")),
            ("2026-02-21", None),
            ("2026-01-15", None),
        ];
        for (day, flag) in cases {
            assert_eq!(period_end_flag(date(day)), flag, "{day}");
        }
    }

    #[test]
    fn a_follow_up_is_due_before_the_maturity_and_never_in_the_past() {
        let sweep = Sweep {
            days_ahead: 14,
            lead_days: 3,
            time_zone: chrono_tz::Asia::Shanghai,
        };
        let now: DateTime<Utc> = "2026-11-28T02:00:00Z".parse().unwrap();
        let due = sweep.due_at("2026-12-10".parse().unwrap(), now);
        assert_eq!(due.to_rfc3339(), "2026-12-07T09:00:00+00:00");
        let tomorrow = sweep.due_at("2026-11-29".parse().unwrap(), now);
        assert_eq!(tomorrow, now + Duration::hours(2));
    }
}
