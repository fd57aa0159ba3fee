use crm_domain::referral::ReferralStatus;
use sea_orm::entity::prelude::*;

/// One change of a referral: who did what, from which status to which, and why.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "referral_history")]
pub struct Model {
    /// UUIDv7: ordering by id is ordering by time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub history_id: String,
    pub referral_id: String,
    /// `created`, `accepted`, `outcome`, `reassigned`, `escalated`, `linked`, …
    pub action: String,
    pub from_status: ReferralStatus,
    pub to_status: ReferralStatus,
    /// Staff id, or `system:<job>` for scheduled jobs.
    pub actor_id: String,
    /// The RM holding the referral after the change.
    pub rm_id: String,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
