//! The relay's index holds only unsent rows. The first index covered every row by
//! `(source, sent_at, message_id)`: marking a row sent added an entry, and the
//! relay's scan for unsent rows walked past the entries of every row sent since
//! the last vacuum. A partial index on unsent rows is what the scan reads, and
//! marking a row sent adds nothing to it.
//!
//! On PostgreSQL the outbox is also vacuumed sooner than the default 20% of dead
//! rows: every sent row leaves one, and the relay's reads slow down with them.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000006_outbox_pending_index"
    }
}

const UNSENT_INDEX: &str = "CREATE INDEX IF NOT EXISTS idx_outbox_unsent \
     ON outbox (source, message_id) WHERE sent_at IS NULL";

const VACUUM_SOONER: &str = "ALTER TABLE outbox SET (\
     autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000, \
     autovacuum_vacuum_insert_scale_factor = 0.02)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        connection.execute_unprepared(UNSENT_INDEX).await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_outbox_pending")
                    .table(Alias::new("outbox"))
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            connection.execute_unprepared(VACUUM_SOONER).await?;
        }
        Ok(())
    }
}
