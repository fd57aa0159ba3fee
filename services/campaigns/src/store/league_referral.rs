use sea_orm::entity::prelude::*;

/// A referral as the league tables count it (from the referrals service's news).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "league_referrals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub referral_id: String,
    /// The branch whose counter made it.
    pub branch_id: String,
    /// The RM it was (last) assigned to.
    pub rm_id: String,
    pub made_at: DateTimeUtc,
    pub accepted_at: Option<DateTimeUtc>,
    pub minutes_to_accept: Option<i64>,
    pub converted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
