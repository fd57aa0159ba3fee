//! Hold-and-notify alerts: one per counter request (by key) and per core-banking
//! transfer reference.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000016_outflow_alerts"
    }
}

#[derive(DeriveIden)]
enum OutflowAlerts {
    Table,
    AlertId,
    RequestKey,
    TransferReference,
    ClientId,
    AmountMinor,
    Currency,
    CounterpartyBank,
    BranchId,
    RmId,
    Acknowledged,
    RmNote,
    CreatedAt,
    AcknowledgedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use OutflowAlerts::*;
        manager
            .create_table(
                sea_orm_migration::prelude::Table::create()
                    .table(OutflowAlerts::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(AlertId).string().not_null().primary_key())
                    .col(ColumnDef::new(RequestKey).string().not_null().unique_key())
                    .col(ColumnDef::new(TransferReference).string().null())
                    .col(ColumnDef::new(ClientId).string().not_null())
                    .col(ColumnDef::new(AmountMinor).big_integer().not_null())
                    .col(ColumnDef::new(Currency).string().not_null())
                    .col(ColumnDef::new(CounterpartyBank).string().not_null())
                    .col(ColumnDef::new(BranchId).string().not_null())
                    .col(ColumnDef::new(RmId).string().not_null())
                    .col(ColumnDef::new(Acknowledged).boolean().not_null())
                    .col(ColumnDef::new(RmNote).text().not_null())
                    .col(
                        ColumnDef::new(CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AcknowledgedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // One alert per transfer reference, where there is one (same syntax on
        // PostgreSQL and SQLite).
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS idx_outflow_alerts_reference \
                 ON outflow_alerts (transfer_reference) WHERE transfer_reference IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OutflowAlerts::Table).to_owned())
            .await
    }
}
