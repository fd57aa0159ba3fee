//! What came of a campaign task (contacted, converted, declined, unreachable), and
//! for a conversion the product and its amount.

use crm_store::migration_steps::{add_column_if_missing, drop_column};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000022_work_item_task_outcome"
    }
}

#[derive(DeriveIden)]
enum WorkItems {
    Table,
    TaskOutcome,
    ConvertedProduct,
    ConvertedMinor,
    ConvertedCurrency,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_column_if_missing(
            manager,
            WorkItems::Table,
            ColumnDef::new(WorkItems::TaskOutcome)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add_column_if_missing(
            manager,
            WorkItems::Table,
            ColumnDef::new(WorkItems::ConvertedProduct)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add_column_if_missing(
            manager,
            WorkItems::Table,
            ColumnDef::new(WorkItems::ConvertedMinor)
                .big_integer()
                .null()
                .to_owned(),
        )
        .await?;
        add_column_if_missing(
            manager,
            WorkItems::Table,
            ColumnDef::new(WorkItems::ConvertedCurrency)
                .string()
                .null()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            WorkItems::TaskOutcome,
            WorkItems::ConvertedProduct,
            WorkItems::ConvertedMinor,
            WorkItems::ConvertedCurrency,
        ] {
            drop_column(manager, WorkItems::Table, column).await?;
        }
        Ok(())
    }
}
