//! What an RM answered to an alert about a client's money: the funds kept, kept in
//! part, or gone, and how much stayed.

use crm_store::migration_steps::{add_column_if_missing, drop_column};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000020_work_item_funds_outcome"
    }
}

#[derive(DeriveIden)]
enum WorkItems {
    Table,
    FundsOutcome,
    FundsKeptMinor,
    FundsKeptCurrency,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_column_if_missing(
            manager,
            WorkItems::Table,
            ColumnDef::new(WorkItems::FundsOutcome)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add_column_if_missing(
            manager,
            WorkItems::Table,
            ColumnDef::new(WorkItems::FundsKeptMinor)
                .big_integer()
                .null()
                .to_owned(),
        )
        .await?;
        add_column_if_missing(
            manager,
            WorkItems::Table,
            ColumnDef::new(WorkItems::FundsKeptCurrency)
                .string()
                .null()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            WorkItems::FundsOutcome,
            WorkItems::FundsKeptMinor,
            WorkItems::FundsKeptCurrency,
        ] {
            drop_column(manager, WorkItems::Table, column).await?;
        }
        Ok(())
    }
}
