use sea_orm::entity::prelude::*;

/// The events service's copy of a client's coverage, from the client book's
/// `client.coverage_changed`: whom the timeline is shown to (the suite's one
/// access rule), and whether the client is known at all (events of a client not
/// yet here are held).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_clients")]
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
