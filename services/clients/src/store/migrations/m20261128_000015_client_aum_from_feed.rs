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
        // SQLite runs migrations outside a transaction: a rerun finds the column.
        if !manager.has_column("clients", "aum_feed_updated_at").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Clients::Table)
                        .add_column(
                            ColumnDef::new(Clients::AumFeedUpdatedAt)
                                .timestamp_with_time_zone()
                                .null(),
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
                    .table(Clients::Table)
                    .drop_column(Clients::AumFeedUpdatedAt)
                    .to_owned(),
            )
            .await
    }
}
