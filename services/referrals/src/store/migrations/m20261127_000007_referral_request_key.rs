//! One column that names a create request: `<referrer>/<idempotency key>`, unique.
//!
//! The retry check used to ask for `referrer_id = ? AND idempotency_key = ?`, which
//! two indexes start with: the unique one and the referrer's listing index. On a
//! young table without statistics the planner may take the listing index and
//! filter the key, reading every referral of the teller — and keeps that plan
//! while the table grows. A single column with its own unique index leaves the
//! planner one way to answer.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000007_referral_request_key"
    }
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    RequestKey,
}

const BACKFILL: &str = "UPDATE referrals SET request_key = referrer_id || '/' || idempotency_key WHERE request_key = ''";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite runs migrations outside a transaction: a rerun after a failure
        // further down finds the column already there.
        if !manager.has_column("referrals", "request_key").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Referrals::Table)
                        .add_column(
                            ColumnDef::new(Referrals::RequestKey)
                                .string()
                                .not_null()
                                .default(""),
                        )
                        .to_owned(),
                )
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared(BACKFILL)
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_referrals_request_key")
                    .table(Referrals::Table)
                    .col(Referrals::RequestKey)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_referrals_idempotency")
                    .table(Referrals::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
