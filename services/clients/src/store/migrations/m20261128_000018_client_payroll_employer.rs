//! The employer paying a client's salary through the bank, once the balance feed
//! has seen it: such a client keeps the `payroll` segment.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000018_client_payroll_employer"
    }
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    PayrollEmployerId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite runs migrations outside a transaction: a rerun finds the column.
        if !manager.has_column("clients", "payroll_employer_id").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Clients::Table)
                        .add_column(ColumnDef::new(Clients::PayrollEmployerId).string().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .drop_column(Clients::PayrollEmployerId)
                    .to_owned(),
            )
            .await
    }
}
