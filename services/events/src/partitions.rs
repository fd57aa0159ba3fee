//! PostgreSQL keeps core-banking events in one partition per month of
//! `occurred_at`. A month's partition is made when its first event arrives (in a
//! short transaction of its own, before the events' transaction), and months past
//! the retention are dropped whole by `crm jobs prune-events` — no row-by-row
//! delete over a large table. SQLite has one table: the job deletes its old rows.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{Datelike, NaiveDate};
use crm_store::Db;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

use crate::error::Result;

/// A calendar month, as the partitions count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn of(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// `bank_events_p202611`: only digits from the month, so safe in DDL.
    fn table(self) -> String {
        format!("bank_events_p{:04}{:02}", self.year, self.month)
    }

    fn of_table(name: &str) -> Option<Self> {
        let digits = name.strip_prefix("bank_events_p")?;
        if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            year: digits[..4].parse().ok()?,
            month: digits[4..].parse().ok()?,
        })
    }
}

/// The months this process knows have a partition (so it asks the database once).
#[derive(Default)]
pub struct Partitions {
    made: Mutex<HashSet<Month>>,
}

impl Partitions {
    /// Makes sure every month in `months` has its partition.
    pub async fn ensure(&self, db: &Db, months: impl IntoIterator<Item = Month>) -> Result<()> {
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let missing: Vec<Month> = {
            let made = self
                .made
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut missing: Vec<Month> =
                months.into_iter().filter(|m| !made.contains(m)).collect();
            missing.sort();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        let transaction = db.begin().await?;
        // Two replicas making the same month at once: one waits for the other.
        transaction
            .execute_unprepared("SELECT pg_advisory_xact_lock(hashtext('bank_events:partitions'))")
            .await?;
        // Attaching a partition locks the whole table: wait a little for the
        // ingests in flight, never long enough to stall every other one behind us.
        transaction
            .execute_unprepared("SET LOCAL lock_timeout = '5s'")
            .await?;
        for month in &missing {
            transaction
                .execute_unprepared(&format!(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF bank_events \
                     FOR VALUES FROM ('{} 00:00:00+00') TO ('{} 00:00:00+00')",
                    month.table(),
                    month.first_day(),
                    month.next().first_day()
                ))
                .await?;
        }
        transaction.commit().await?;
        self.made
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(missing);
        Ok(())
    }
}

/// Drops the events (and their ids) of months before `kept_from`'s; how many
/// partitions (PostgreSQL) or rows (SQLite) went.
pub async fn prune(db: &Db, kept_from: NaiveDate) -> Result<u64> {
    let kept = Month::of(kept_from);
    let backend = db.get_database_backend();
    let transaction = db.begin().await?;
    let mut dropped = 0;
    if backend == DbBackend::Postgres {
        let partitions = transaction
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT c.relname FROM pg_inherits i \
                 JOIN pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_class p ON p.oid = i.inhparent \
                 WHERE p.relname = 'bank_events' AND p.relnamespace = current_schema()::regnamespace",
            ))
            .await?;
        for row in partitions {
            let name: String = row.try_get_by_index(0)?;
            if Month::of_table(&name).is_some_and(|month| month < kept) {
                // Each month in a short transaction of its own: dropping locks the
                // whole table, briefly.
                let drop = db.begin().await?;
                drop.execute_unprepared("SET LOCAL lock_timeout = '5s'")
                    .await?;
                drop.execute_unprepared(&format!("DROP TABLE {name}"))
                    .await?;
                drop.commit().await?;
                dropped += 1;
            }
        }
    } else {
        dropped = transaction
            .execute_raw(Statement::from_sql_and_values(
                backend,
                "DELETE FROM bank_events WHERE occurred_at < ?",
                [kept
                    .first_day()
                    .and_hms_opt(0, 0, 0)
                    .map(|t| t.and_utc())
                    .into()],
            ))
            .await?
            .rows_affected();
    }
    let cutoff = kept.first_day().and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    let placeholder = if backend == DbBackend::Postgres {
        "$1"
    } else {
        "?"
    };
    transaction
        .execute_raw(Statement::from_sql_and_values(
            backend,
            format!("DELETE FROM bank_event_ids WHERE occurred_at < {placeholder}"),
            [cutoff.into()],
        ))
        .await?;
    transaction.commit().await?;
    Ok(dropped)
}
