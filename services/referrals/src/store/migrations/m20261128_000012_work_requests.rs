//! Work items other services ask for, keyed by the asking service and its source
//! key (idempotency), and found again by item (to report completion back).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000012_work_requests"
    }
}

#[derive(DeriveIden)]
enum WorkRequests {
    Table,
    RequestedBy,
    SourceKey,
    WorkItemId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WorkRequests::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(WorkRequests::RequestedBy)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WorkRequests::SourceKey).string().not_null())
                    .col(ColumnDef::new(WorkRequests::WorkItemId).string().not_null())
                    .col(
                        ColumnDef::new(WorkRequests::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(WorkRequests::RequestedBy)
                            .col(WorkRequests::SourceKey),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_work_requests_item")
                    .table(WorkRequests::Table)
                    .col(WorkRequests::WorkItemId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WorkRequests::Table).to_owned())
            .await
    }
}
