//! Whether a client agreed to marketing contact: campaign audiences leave out
//! those who did not, as they leave out `do_not_contact`. Existing clients count
//! as consenting, as the account-opening form records it; core banking sends
//! `false` for those who refused or withdrew.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000023_client_marketing_consent"
    }
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    MarketingConsent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crm_store::migration_steps::add_column_if_missing(
            manager,
            Clients::Table,
            ColumnDef::new(Clients::MarketingConsent)
                .boolean()
                .not_null()
                .default(true)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crm_store::migration_steps::drop_column(manager, Clients::Table, Clients::MarketingConsent)
            .await
    }
}
