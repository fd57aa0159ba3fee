use sea_orm::entity::prelude::*;

/// A client reaching a tier from below (`wealth` or `hnw`, HNW counting private
/// too): the league tables' new wealth and HNW clients.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "league_tier_crossings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub crossed: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub changed_at: DateTimeUtc,
    pub branch_id: String,
    pub rm_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
