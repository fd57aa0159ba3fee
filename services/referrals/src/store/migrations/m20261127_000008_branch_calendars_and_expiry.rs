//! The referrals service's copy of each branch's time zone, for SLA deadlines in
//! the branch's own business hours; and an index for the expiry pass, which looks
//! for open referrals by how long they have gone unchanged.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000008_branch_calendars_and_expiry"
    }
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    Status,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RoutingBranches {
    Table,
    BranchId,
    TimeZone,
    SourceUpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RoutingBranches::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RoutingBranches::BranchId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RoutingBranches::TimeZone)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RoutingBranches::SourceUpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_referrals_status_updated")
                    .table(Referrals::Table)
                    .col(Referrals::Status)
                    .col(Referrals::UpdatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
