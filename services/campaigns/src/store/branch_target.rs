use sea_orm::entity::prelude::*;

/// What a branch is measured against for a period (达成率).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "branch_targets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub branch_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub period_year: i32,
    /// 0 for the whole year.
    #[sea_orm(primary_key, auto_increment = false)]
    pub period_quarter: i32,
    pub new_wealth_clients: i64,
    pub new_hnw_clients: i64,
    pub campaign_completion_percent: i32,
    pub funds_kept_alerts: i64,
    pub set_by: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
