use sea_orm::entity::prelude::*;

/// A teller's paired RM over a period; a teller has at most one active pair.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "teller_pairs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub pair_id: String,
    pub teller_id: String,
    pub rm_id: String,
    pub valid_from: Date,
    pub valid_until: Option<Date>,
    pub active: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
