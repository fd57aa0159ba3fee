//! Clients paid a salary through the bank, with their employer.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000017_payroll_clients"
    }
}

#[derive(DeriveIden)]
enum PayrollClients {
    Table,
    ClientId,
    EmployerId,
    LastCreditAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PayrollClients::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PayrollClients::ClientId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(PayrollClients::EmployerId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PayrollClients::LastCreditAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PayrollClients::Table).to_owned())
            .await
    }
}
