//! Job runs and job leases (see `crm_store::jobs`).

use crate::migration_steps::columns::{instant, long_text, optional_instant, text};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000024_job_runs_and_leases"
    }
}

#[derive(DeriveIden)]
enum JobRuns {
    Table,
    RunId,
    Job,
    Outcome,
    Holder,
    StartedAt,
    FinishedAt,
    Summary,
    Error,
}

#[derive(DeriveIden)]
enum JobLeases {
    Table,
    Job,
    RunId,
    Holder,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JobRuns::Table)
                    .if_not_exists()
                    .col(text(JobRuns::RunId).primary_key())
                    .col(text(JobRuns::Job))
                    .col(text(JobRuns::Outcome))
                    .col(text(JobRuns::Holder))
                    .col(instant(JobRuns::StartedAt))
                    .col(optional_instant(JobRuns::FinishedAt))
                    .col(long_text(JobRuns::Summary))
                    .col(long_text(JobRuns::Error))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("job_runs_by_job")
                    .table(JobRuns::Table)
                    .col(JobRuns::Job)
                    .col(JobRuns::StartedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobLeases::Table)
                    .if_not_exists()
                    .col(text(JobLeases::Job).primary_key())
                    .col(text(JobLeases::RunId))
                    .col(text(JobLeases::Holder))
                    .col(instant(JobLeases::ExpiresAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobLeases::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(JobRuns::Table).to_owned())
            .await
    }
}
