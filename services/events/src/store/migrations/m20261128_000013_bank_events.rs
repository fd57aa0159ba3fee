//! Core-banking events and the ledger of their ids. On PostgreSQL the events are
//! partitioned by month (each month's partition is made when its first event
//! arrives, and dropped past the retention); a partitioned table's unique keys must
//! hold the partition key, so the ledger, not the events table, keeps `event_id`
//! unique across months. On SQLite one plain table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000013_bank_events"
    }
}

const POSTGRES: &str = "
CREATE TABLE IF NOT EXISTS bank_events (
    event_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    detail TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX IF NOT EXISTS idx_bank_events_client ON bank_events (client_id, occurred_at);
CREATE TABLE IF NOT EXISTS bank_event_ids (
    event_id TEXT PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_bank_event_ids_occurred ON bank_event_ids (occurred_at);
";

const SQLITE: &str = "
CREATE TABLE IF NOT EXISTS bank_events (
    event_id TEXT NOT NULL PRIMARY KEY,
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    detail TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_bank_events_client ON bank_events (client_id, occurred_at);
CREATE TABLE IF NOT EXISTS bank_event_ids (
    event_id TEXT NOT NULL PRIMARY KEY,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_bank_event_ids_occurred ON bank_event_ids (occurred_at);
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        let script = match connection.get_database_backend() {
            DbBackend::Postgres => POSTGRES,
            _ => SQLITE,
        };
        // One statement at a time: SQLite's driver runs only the first of several.
        for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            connection.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        connection
            .execute_unprepared("DROP TABLE IF EXISTS bank_events")
            .await?;
        connection
            .execute_unprepared("DROP TABLE IF EXISTS bank_event_ids")
            .await?;
        Ok(())
    }
}
