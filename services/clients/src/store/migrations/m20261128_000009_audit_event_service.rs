//! The service a line of the audit trail comes from: the trail is one for the
//! suite, and other services' reads of client data arrive as `audit.recorded`
//! messages. Lines written before are the client book's own.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000009_audit_event_service"
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Service,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite runs migrations outside a transaction: a rerun finds the column.
        if !manager.has_column("audit_events", "service").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditEvents::Table)
                        .add_column(
                            ColumnDef::new(AuditEvents::Service)
                                .string()
                                .not_null()
                                .default("clients"),
                        )
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .drop_column(AuditEvents::Service)
                    .to_owned(),
            )
            .await
    }
}
