use crm_domain::client::InteractionChannel;
use sea_orm::entity::prelude::*;

/// One contact with a client: a call, a visit, a meeting at the branch.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "interactions")]
pub struct Model {
    /// UUIDv7: ordering by id is ordering by time of recording.
    #[sea_orm(primary_key, auto_increment = false)]
    pub interaction_id: String,
    pub client_id: String,
    pub staff_id: String,
    /// `phone`, `visit`, `branch`, `message`, `email`.
    pub channel: InteractionChannel,
    #[sea_orm(column_type = "Text")]
    pub summary: String,
    #[sea_orm(column_type = "Text")]
    pub outcome: String,
    pub occurred_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
