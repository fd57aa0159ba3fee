//! Balance watch. Each client's closing balance per day comes from
//! `BalanceSnapshot` events: a later snapshot of a day replaces an earlier one
//! (judged by `occurred_at`, so arrival order does not matter). From them the
//! trailing 30-day daily average: the mean, over the business days of the bank's
//! calendar in the 30 days up to the latest day known, of each day's closing
//! balance, a day without a snapshot carrying the last balance forward. A change of
//! the average is published (`client.balance_average_changed`) for the client book,
//! whose tier follows it. For a client whose average is above the watch threshold,
//! a day-on-day drop of more than the configured share raises an alert for the RM,
//! naming the rule and the figures.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use crm_domain::Money;
use crm_domain::messages::{
    BALANCE_AVERAGE_CHANGED, BalanceAverageChanged, RequestedWorkItem, WORK_ITEMS_REQUESTED,
    WorkItemsRequested,
};
use crm_domain::referral::{Priority, WorkItemKind};
use crm_domain::sla::BusinessCalendar;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
};

use crate::SERVICE;
use crate::error::Result;
use crate::store::{balance_average, daily_balance};

/// Days the average looks back over.
pub const WINDOW_DAYS: i64 = 30;

/// The watch's rules, from settings.
#[derive(Debug, Clone)]
pub struct WatchRules {
    /// Clients whose average is above this (minor units, CNY) are watched for drops.
    pub watch_threshold_minor: i64,
    /// A day-on-day fall of more than this share of the day before raises an alert.
    pub drop_percent: u8,
    pub calendar: BusinessCalendar,
    /// A transfer to or from another bank of at least this (minor units, CNY) is
    /// work for the RM: an alert out, a follow-up in.
    pub large_transfer_minor: i64,
}

/// The closing balance of `day`: that day's, or the last one before it.
fn closing_on(closings: &BTreeMap<NaiveDate, i64>, day: NaiveDate) -> Option<i64> {
    closings
        .range(..=day)
        .next_back()
        .map(|(_, balance)| *balance)
}

/// The trailing average through `through` (business days of `calendar` in the
/// window; days before the first snapshot are not counted). None without data.
pub fn trailing_average(
    closings: &BTreeMap<NaiveDate, i64>,
    through: NaiveDate,
    calendar: &BusinessCalendar,
) -> Option<i64> {
    let (mut sum, mut days) = (0_i128, 0_i128);
    for offset in 0..WINDOW_DAYS {
        let day = through - Duration::days(offset);
        if !calendar.is_business_day(day) {
            continue;
        }
        if let Some(balance) = closing_on(closings, day) {
            sum += i128::from(balance);
            days += 1;
        }
    }
    (days > 0).then(|| i64::try_from(sum / days).unwrap_or(i64::MAX))
}

/// The day-on-day drop of `day` against the business day before, as a percentage
/// of the day before, when the day before had a positive balance.
pub fn drop_percent(
    closings: &BTreeMap<NaiveDate, i64>,
    day: NaiveDate,
    calendar: &BusinessCalendar,
) -> Option<(i64, i64, i64)> {
    let today = *closings.get(&day)?;
    let mut before_day = day - Duration::days(1);
    for _ in 0..WINDOW_DAYS {
        if calendar.is_business_day(before_day) {
            break;
        }
        before_day -= Duration::days(1);
    }
    let before = closing_on(closings, before_day)?;
    if before <= 0 || today >= before {
        return None;
    }
    let percent =
        i64::try_from(i128::from(before - today) * 100 / i128::from(before)).unwrap_or(100);
    Some((before, today, percent))
}

/// One snapshot taken in: its day's closing balance (unless a later snapshot of
/// that day is stored), the client's average again, and the drop rule.
pub async fn apply_snapshot(
    transaction: &DatabaseTransaction,
    rules: &WatchRules,
    client_id: &str,
    balance: &Money,
    day: NaiveDate,
    event_id: &str,
    occurred_at: DateTime<Utc>,
) -> Result<()> {
    // One client's snapshots one at a time: two batches each computing the average
    // without the other's uncommitted day would leave it wrong.
    crate::client_copy::lock_client(transaction, "balance", client_id).await?;
    let stored = Expr::col((daily_balance::Entity, daily_balance::Column::OccurredAt));
    let news = Expr::col((
        sea_orm::sea_query::Alias::new("excluded"),
        daily_balance::Column::OccurredAt,
    ));
    daily_balance::Entity::insert(daily_balance::ActiveModel {
        client_id: Set(client_id.to_owned()),
        day: Set(day),
        balance_minor: Set(balance.minor_units()),
        currency: Set(balance.currency().to_owned()),
        event_id: Set(event_id.to_owned()),
        occurred_at: Set(occurred_at),
    })
    .on_conflict(
        OnConflict::columns([daily_balance::Column::ClientId, daily_balance::Column::Day])
            .update_columns([
                daily_balance::Column::BalanceMinor,
                daily_balance::Column::Currency,
                daily_balance::Column::EventId,
                daily_balance::Column::OccurredAt,
            ])
            .action_and_where(stored.lt(news))
            .to_owned(),
    )
    .exec_without_returning(transaction)
    .await?;

    // The window (and the business day before it, for the drop), plus the newest
    // closing before all that: it carries forward into the window's first days.
    let Some(latest) = daily_balance::Entity::find()
        .filter(daily_balance::Column::ClientId.eq(client_id))
        .order_by_desc(daily_balance::Column::Day)
        .one(transaction)
        .await?
        .map(|row| row.day)
    else {
        return Ok(());
    };
    let window_start = latest - Duration::days(WINDOW_DAYS * 2);
    let mut rows = daily_balance::Entity::find()
        .filter(daily_balance::Column::ClientId.eq(client_id))
        .filter(daily_balance::Column::Day.gte(window_start))
        .all(transaction)
        .await?;
    rows.extend(
        daily_balance::Entity::find()
            .filter(daily_balance::Column::ClientId.eq(client_id))
            .filter(daily_balance::Column::Day.lt(window_start))
            .order_by_desc(daily_balance::Column::Day)
            .one(transaction)
            .await?,
    );
    let closings: BTreeMap<NaiveDate, i64> = rows
        .iter()
        .map(|row| (row.day, row.balance_minor))
        .collect();
    let Some(average) = trailing_average(&closings, latest, &rules.calendar) else {
        return Ok(());
    };
    let previous = balance_average::Entity::find_by_id(client_id)
        .one(transaction)
        .await?;
    let average_before = previous.as_ref().map(|p| p.average_minor);
    if average_before != Some(average) || previous.as_ref().is_some_and(|p| p.through != latest) {
        let now = Utc::now();
        balance_average::Entity::insert(balance_average::ActiveModel {
            client_id: Set(client_id.to_owned()),
            average_minor: Set(average),
            through: Set(latest),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(balance_average::Column::ClientId)
                .update_columns([
                    balance_average::Column::AverageMinor,
                    balance_average::Column::Through,
                    balance_average::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(transaction)
        .await?;
        // Also when only the day moved: a client book that did not hold the client
        // at the last change catches up with the next day's snapshot.
        {
            let message = BalanceAverageChanged {
                client_id: client_id.to_owned(),
                daily_avg_minor: average,
                currency: "CNY".to_owned(),
                through: latest,
                updated_at: now,
            };
            crm_bus::outbox::enqueue_event(
                transaction,
                SERVICE,
                BALANCE_AVERAGE_CHANGED,
                BALANCE_AVERAGE_CHANGED,
                &message,
            )
            .await?;
        }
    }

    // Watched: an average (as it stood before this day) above the threshold.
    let watched = average_before.unwrap_or(average) > rules.watch_threshold_minor;
    if let Some((before, today, percent)) = drop_percent(&closings, day, &rules.calendar)
        && watched
        && percent > i64::from(rules.drop_percent)
    {
        let detail = format!(
            "Rule: balance drop over {}% in a day for clients averaging over {} (CRM_BALANCE_DROP_PERCENT, CRM_BALANCE_WATCH_THRESHOLD_CNY). \
             Closing balance {} on {day}, {} the business day before: down {percent}%. 30-day daily average {}.",
            rules.drop_percent,
            Money::cny(rules.watch_threshold_minor),
            Money::cny(today),
            Money::cny(before),
            Money::cny(average_before.unwrap_or(average)),
        );
        let request = WorkItemsRequested {
            requested_by: SERVICE.to_owned(),
            items: vec![RequestedWorkItem {
                source_key: format!("balance-drop:{client_id}:{day}"),
                kind: WorkItemKind::Alert,
                client_id: client_id.to_owned(),
                title: format!("Balance down {percent}% in a day"),
                detail,
                priority: Priority::High,
                due_at: None,
                rm_id: None,
                home_branch_id: None,
            }],
        };
        crm_bus::outbox::enqueue_event(
            transaction,
            SERVICE,
            WORK_ITEMS_REQUESTED,
            WORK_ITEMS_REQUESTED,
            &request,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or(NaiveDate::MIN)
    }

    #[test]
    fn the_average_carries_the_last_balance_over_missing_and_closed_days() {
        let calendar = BusinessCalendar::default();
        // Mon 2 Nov: 100; Wed 4 Nov: 400; through Fri 6 Nov (weekdays 2..=6).
        let closings = BTreeMap::from([(day(2), 100), (day(4), 400)]);
        // Mon 100, Tue 100 (carried), Wed 400, Thu 400, Fri 400.
        assert_eq!(trailing_average(&closings, day(6), &calendar), Some(280));
        // The weekend does not count: through Sunday 8 is the same five days.
        assert_eq!(trailing_average(&closings, day(8), &calendar), Some(280));
        assert_eq!(trailing_average(&BTreeMap::new(), day(8), &calendar), None);
    }

    #[test]
    fn a_drop_is_measured_against_the_business_day_before() {
        let calendar = BusinessCalendar::default();
        // Fri 6 Nov 1,000; Mon 9 Nov 600: down 40% over the weekend.
        let closings = BTreeMap::from([(day(6), 1_000), (day(9), 600)]);
        assert_eq!(
            drop_percent(&closings, day(9), &calendar),
            Some((1_000, 600, 40))
        );
        let rising = BTreeMap::from([(day(6), 600), (day(9), 1_000)]);
        assert_eq!(drop_percent(&rising, day(9), &calendar), None);
    }
}
