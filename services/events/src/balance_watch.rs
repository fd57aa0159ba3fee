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

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use crm_domain::Money;
use crm_domain::messages::{
    BALANCE_AVERAGE_CHANGED, BalanceAverageChanged, RequestedWorkItem, WORK_ITEMS_REQUESTED,
    WorkItemsRequested,
};
use crm_domain::referral::{Priority, WorkItemKind};
use crm_domain::sla::BusinessCalendar;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter,
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

/// One balance snapshot to take in.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    pub client_id: &'a str,
    pub balance_minor: i64,
    pub day: NaiveDate,
    pub event_id: &'a str,
    pub occurred_at: DateTime<Utc>,
}

/// Rows per multi-row statement (PostgreSQL takes at most 65,535 parameters).
const CHUNK: usize = 1_000;

/// A batch of snapshots taken in, set-based: each day's closing balance (unless a
/// later snapshot of that day is stored), each client's average again, and the
/// drop rule — a handful of statements for the whole batch, not per snapshot.
pub async fn apply_snapshots(
    transaction: &DatabaseTransaction,
    rules: &WatchRules,
    snapshots: &[Snapshot<'_>],
) -> Result<()> {
    // The latest snapshot of each client's day, by occurred_at: one row per key,
    // as one upsert statement needs.
    let mut newest: BTreeMap<(&str, NaiveDate), Snapshot<'_>> = BTreeMap::new();
    for snapshot in snapshots {
        let key = (snapshot.client_id, snapshot.day);
        match newest.get(&key) {
            Some(kept)
                if (kept.occurred_at, kept.event_id)
                    >= (snapshot.occurred_at, snapshot.event_id) => {}
            _ => {
                newest.insert(key, *snapshot);
            }
        }
    }
    let Some(earliest) = newest.keys().map(|(_, day)| *day).min() else {
        return Ok(());
    };
    let clients: BTreeSet<&str> = newest.keys().map(|(client, _)| *client).collect();
    // One client's snapshots one batch at a time: two batches each computing the
    // average without the other's uncommitted day would leave it wrong. In client
    // order, so two batches can't deadlock.
    crate::client_copy::lock_clients(transaction, "balance", clients.iter().copied()).await?;
    let rows: Vec<daily_balance::ActiveModel> = newest
        .values()
        .map(|snapshot| daily_balance::ActiveModel {
            client_id: Set(snapshot.client_id.to_owned()),
            day: Set(snapshot.day),
            balance_minor: Set(snapshot.balance_minor),
            currency: Set("CNY".to_owned()),
            event_id: Set(snapshot.event_id.to_owned()),
            occurred_at: Set(snapshot.occurred_at),
        })
        .collect();
    for chunk in rows.chunks(CHUNK) {
        let stored = Expr::col((daily_balance::Entity, daily_balance::Column::OccurredAt));
        let news = Expr::col((Alias::new("excluded"), daily_balance::Column::OccurredAt));
        daily_balance::Entity::insert_many(chunk.iter().cloned())
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
    }

    // Each client's window ends at its latest day, never before the batch's days:
    // the rows from two windows before the earliest day cover every window and the
    // business day before it, and the newest closing before them carries forward.
    let from = earliest - Duration::days(WINDOW_DAYS * 2);
    let client_ids: Vec<String> = clients.iter().map(|id| (*id).to_owned()).collect();
    let mut closings: BTreeMap<String, BTreeMap<NaiveDate, i64>> = BTreeMap::new();
    for chunk in client_ids.chunks(CHUNK) {
        let earlier = Alias::new("earlier");
        let newest_before = Query::select()
            .expr(Expr::col((earlier.clone(), daily_balance::Column::Day)).max())
            .from_as(daily_balance::Entity, earlier.clone())
            .and_where(
                Expr::col((earlier.clone(), daily_balance::Column::ClientId))
                    .equals((daily_balance::Entity, daily_balance::Column::ClientId)),
            )
            .and_where(Expr::col((earlier, daily_balance::Column::Day)).lt(from))
            .to_owned();
        let found = daily_balance::Entity::find()
            .filter(daily_balance::Column::ClientId.is_in(chunk.iter().cloned()))
            .filter(
                Condition::any()
                    .add(daily_balance::Column::Day.gte(from))
                    .add(
                        Expr::col((daily_balance::Entity, daily_balance::Column::Day))
                            .in_subquery(newest_before),
                    ),
            )
            .all(transaction)
            .await?;
        for row in found {
            closings
                .entry(row.client_id)
                .or_default()
                .insert(row.day, row.balance_minor);
        }
    }
    let previous: BTreeMap<String, balance_average::Model> = balance_average::Entity::find()
        .filter(balance_average::Column::ClientId.is_in(client_ids.iter().cloned()))
        .all(transaction)
        .await?
        .into_iter()
        .map(|row| (row.client_id.clone(), row))
        .collect();

    let now = Utc::now();
    let mut averages = Vec::new();
    let mut messages = Vec::new();
    let mut before_batch: BTreeMap<&str, i64> = BTreeMap::new();
    for (client_id, days) in &closings {
        let Some(latest) = days.keys().next_back().copied() else {
            continue;
        };
        let Some(average) = trailing_average(days, latest, &rules.calendar) else {
            continue;
        };
        let stored = previous.get(client_id);
        before_batch.insert(
            client_id.as_str(),
            stored.map_or(average, |p| p.average_minor),
        );
        // Also when only the day moved: a client book that did not hold the client
        // at the last change catches up with the next day's snapshot.
        if stored.is_some_and(|p| p.average_minor == average && p.through == latest) {
            continue;
        }
        averages.push(balance_average::ActiveModel {
            client_id: Set(client_id.clone()),
            average_minor: Set(average),
            through: Set(latest),
            updated_at: Set(now),
        });
        messages.push(crm_bus::outbox::event_row(
            SERVICE,
            BALANCE_AVERAGE_CHANGED,
            BALANCE_AVERAGE_CHANGED,
            &BalanceAverageChanged {
                client_id: client_id.clone(),
                daily_avg_minor: average,
                currency: "CNY".to_owned(),
                through: latest,
                updated_at: now,
            },
        )?);
    }

    // Watched: an average (as it stood before this batch) above the threshold.
    let mut alerts = Vec::new();
    for (client_id, day) in newest.keys() {
        let (Some(days), Some(average_before)) =
            (closings.get(*client_id), before_batch.get(client_id))
        else {
            continue;
        };
        if let Some(alert) = drop_alert(rules, client_id, *day, days, *average_before) {
            alerts.push(alert);
        }
    }
    if !alerts.is_empty() {
        messages.push(crm_bus::outbox::event_row(
            SERVICE,
            WORK_ITEMS_REQUESTED,
            WORK_ITEMS_REQUESTED,
            &WorkItemsRequested {
                requested_by: SERVICE.to_owned(),
                items: alerts,
            },
        )?);
    }
    for chunk in averages.chunks(CHUNK) {
        balance_average::Entity::insert_many(chunk.iter().cloned())
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
    }
    for chunk in messages.chunks(CHUNK) {
        crm_store::bus::outbox::Entity::insert_many(chunk.iter().cloned())
            .exec_without_returning(transaction)
            .await?;
    }
    Ok(())
}

/// The drop rule on one client's day: an alert when a watched client's closing
/// fell by more than the rule's share from the business day before.
fn drop_alert(
    rules: &WatchRules,
    client_id: &str,
    day: NaiveDate,
    closings: &BTreeMap<NaiveDate, i64>,
    average_before: i64,
) -> Option<RequestedWorkItem> {
    if average_before <= rules.watch_threshold_minor {
        return None;
    }
    let (before, today, percent) = drop_percent(closings, day, &rules.calendar)?;
    if percent <= i64::from(rules.drop_percent) {
        return None;
    }
    let detail = format!(
        "Rule: balance drop over {}% in a day for clients averaging over {} (CRM_BALANCE_DROP_PERCENT, CRM_BALANCE_WATCH_THRESHOLD_CNY). \
         Closing balance {} on {day}, {} the business day before: down {percent}%. 30-day daily average {}.",
        rules.drop_percent,
        Money::cny(rules.watch_threshold_minor),
        Money::cny(today),
        Money::cny(before),
        Money::cny(average_before),
    );
    Some(RequestedWorkItem {
        source_key: format!("balance-drop:{client_id}:{day}"),
        kind: WorkItemKind::Alert,
        client_id: client_id.to_owned(),
        title: format!("Balance down {percent}% in a day"),
        detail,
        priority: Priority::High,
        due_at: None,
        rm_id: None,
        home_branch_id: None,
    })
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
