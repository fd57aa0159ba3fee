use sea_orm::entity::prelude::*;

/// A product of a client maturing on a date, as the latest `ProductMaturity`
/// event about it said.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "product_maturities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub product_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub maturity_date: Date,
    pub product_name: String,
    pub amount_minor: i64,
    pub currency: String,
    pub event_id: String,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
