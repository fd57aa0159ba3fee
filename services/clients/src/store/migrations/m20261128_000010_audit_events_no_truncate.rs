//! The audit trail refuses TRUNCATE too (PostgreSQL; SQLite has no TRUNCATE, and
//! its DELETE triggers already stop the unqualified DELETE it would use).
//!
//! Triggers stop the service's own role, not the table's owner: in production the
//! service connects as a role that does not own `audit_events` and holds only
//! `GRANT SELECT, INSERT ON audit_events TO <service role>` — see the README.

use sea_orm::DatabaseBackend;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000010_audit_events_no_truncate"
    }
}

const REFUSE_TRUNCATE: &str = "
DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events;
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(REFUSE_TRUNCATE)
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
                )
                .await?;
        }
        Ok(())
    }
}
