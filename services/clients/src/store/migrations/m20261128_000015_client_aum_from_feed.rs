//! When the balance feed last set a client's daily average: once it has, the feed
//! is the average's one writer and UpsertClient no longer moves it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000015_client_aum_from_feed"
    }
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    AumFeedUpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crm_store::migration_steps::add_column_if_missing(
            manager,
            Clients::Table,
            ColumnDef::new(Clients::AumFeedUpdatedAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crm_store::migration_steps::drop_column(manager, Clients::Table, Clients::AumFeedUpdatedAt)
            .await
    }
}
