//! A phone that reconnects resumes from the newest change it saw: the RM's items
//! changed since then, read by (rm_id, updated_at) rather than by scanning the
//! RM's whole queue.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000030_work_item_resume_index"
    }
}

#[derive(DeriveIden)]
enum WorkItems {
    Table,
    RmId,
    UpdatedAt,
}

const INDEX: &str = "idx_work_items_rm_updated";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(WorkItems::Table)
                    .col(WorkItems::RmId)
                    .col(WorkItems::UpdatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(WorkItems::Table).to_owned())
            .await
    }
}
