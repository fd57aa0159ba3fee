//! Products about to mature, one row per (client, product, maturity date), from
//! the `ProductMaturity` events: what `crm jobs maturity-sweep` reads by date.

use crm_store::migration_steps::columns::{instant, number, text};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000026_product_maturities"
    }
}

#[derive(DeriveIden)]
enum ProductMaturities {
    Table,
    ClientId,
    ProductId,
    MaturityDate,
    ProductName,
    AmountMinor,
    Currency,
    EventId,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProductMaturities::Table)
                    .if_not_exists()
                    .col(text(ProductMaturities::ClientId))
                    .col(text(ProductMaturities::ProductId))
                    .col(
                        ColumnDef::new(ProductMaturities::MaturityDate)
                            .date()
                            .not_null(),
                    )
                    .col(text(ProductMaturities::ProductName))
                    .col(number(ProductMaturities::AmountMinor))
                    .col(text(ProductMaturities::Currency))
                    .col(text(ProductMaturities::EventId))
                    .col(instant(ProductMaturities::ReceivedAt))
                    .primary_key(
                        Index::create()
                            .col(ProductMaturities::ClientId)
                            .col(ProductMaturities::ProductId)
                            .col(ProductMaturities::MaturityDate),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("product_maturities_by_date")
                    .table(ProductMaturities::Table)
                    .col(ProductMaturities::MaturityDate)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProductMaturities::Table).to_owned())
            .await
    }
}
