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
        crm_store::migration_steps::add_column_if_missing(
            manager,
            AuditEvents::Table,
            ColumnDef::new(AuditEvents::Service)
                .string()
                .not_null()
                .default("clients")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crm_store::migration_steps::drop_column(manager, AuditEvents::Table, AuditEvents::Service)
            .await
    }
}
