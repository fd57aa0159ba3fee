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
        crm_store::migration_steps::add_column_if_missing(
            manager,
            Clients::Table,
            ColumnDef::new(Clients::PayrollEmployerId)
                .string()
                .null()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crm_store::migration_steps::drop_column(manager, Clients::Table, Clients::PayrollEmployerId)
            .await
    }
}
