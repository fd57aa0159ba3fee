//! The outcome of a large-outflow alert as its RM recorded it: the funds kept, kept
//! in part, or gone, and how much stayed (counted per RM: campaigns rank it).

use crm_store::migration_steps::{add_column_if_missing, drop_column};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000021_outflow_alert_outcomes"
    }
}

#[derive(DeriveIden)]
enum OutflowAlerts {
    Table,
    FundsOutcome,
    FundsKeptMinor,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_column_if_missing(
            manager,
            OutflowAlerts::Table,
            ColumnDef::new(OutflowAlerts::FundsOutcome)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add_column_if_missing(
            manager,
            OutflowAlerts::Table,
            ColumnDef::new(OutflowAlerts::FundsKeptMinor)
                .big_integer()
                .null()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [OutflowAlerts::FundsOutcome, OutflowAlerts::FundsKeptMinor] {
            drop_column(manager, OutflowAlerts::Table, column).await?;
        }
        Ok(())
    }
}
