use sea_orm::entity::prelude::*;

/// A teller's active paired RM, fed by `directory.pair_changed`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "routing_pairs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub teller_id: String,
    pub rm_id: String,
    pub valid_from: Date,
    pub valid_until: Option<Date>,
    pub source_updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
