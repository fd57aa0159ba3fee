//! An outbox row the relay could not publish on its own, while the rows around it
//! went out, is set aside (`parked_at`, with `last_error`) instead of stalling the
//! outbox behind it; `crm outbox parked` shows it and `crm outbox retry` returns it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000011_outbox_parked"
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    ParkedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::migration_steps::add_column_if_missing(
            manager,
            Outbox::Table,
            ColumnDef::new(Outbox::ParkedAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::migration_steps::drop_column(manager, Outbox::Table, Outbox::ParkedAt).await
    }
}
