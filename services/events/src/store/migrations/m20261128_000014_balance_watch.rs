//! Each client's closing balance per day and their trailing daily average.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000014_balance_watch"
    }
}

#[derive(DeriveIden)]
enum DailyBalances {
    Table,
    ClientId,
    Day,
    BalanceMinor,
    Currency,
    EventId,
    OccurredAt,
}

#[derive(DeriveIden)]
enum BalanceAverages {
    Table,
    ClientId,
    AverageMinor,
    Through,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DailyBalances::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(DailyBalances::ClientId).string().not_null())
                    .col(ColumnDef::new(DailyBalances::Day).date().not_null())
                    .col(
                        ColumnDef::new(DailyBalances::BalanceMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(DailyBalances::Currency).string().not_null())
                    .col(ColumnDef::new(DailyBalances::EventId).string().not_null())
                    .col(
                        ColumnDef::new(DailyBalances::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(DailyBalances::ClientId)
                            .col(DailyBalances::Day),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BalanceAverages::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(BalanceAverages::ClientId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(BalanceAverages::AverageMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(BalanceAverages::Through).date().not_null())
                    .col(
                        ColumnDef::new(BalanceAverages::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BalanceAverages::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(DailyBalances::Table).to_owned())
            .await
    }
}
