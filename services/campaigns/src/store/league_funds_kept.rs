use crm_domain::referral::FundsOutcome;
use sea_orm::entity::prelude::*;

/// An alert about a client's money whose RM kept the funds (whole or in part).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "league_funds_kept")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub work_item_id: String,
    pub rm_id: String,
    pub branch_id: String,
    pub outcome: FundsOutcome,
    pub completed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
