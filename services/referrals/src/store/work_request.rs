use sea_orm::entity::prelude::*;

/// A work item another service asked for, under its key: asked again, the same
/// item; completed, the asking service is told.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "work_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub requested_by: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub source_key: String,
    pub work_item_id: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
