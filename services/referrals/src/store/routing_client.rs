use sea_orm::entity::prelude::*;

/// A client's coverage as routing sees it, fed by `client.coverage_changed`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "routing_clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    pub home_branch_id: String,
    pub primary_rm_id: Option<String>,
    pub wealth_manager_id: Option<String>,
    pub private_banker_id: Option<String>,
    pub do_not_contact: bool,
    pub source_updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
