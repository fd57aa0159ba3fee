use crm_domain::referral::{Need, Outcome, Priority, ReferralStatus};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "referrals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub referral_id: String,
    /// The caller's key: the same referrer with the same key again gets this referral.
    pub idempotency_key: String,
    /// `<referrer_id>/<idempotency_key>`, unique: the one column the retry check reads.
    pub request_key: String,
    pub client_id: Option<String>,
    pub prospect_name: Option<String>,
    /// Sealed by [`crm_store::Vault`].
    pub prospect_phone: Option<String>,
    /// Keyed lookup hash of the walk-in's phone (duplicates, linking to a client).
    pub prospect_phone_hash: String,
    /// `client:<id>:<need>` or `phone:<hash>:<need>`; unique among open referrals.
    pub dedupe_key: Option<String>,
    /// 0: within SLA; 1: escalated to the branch manager; 2: reassigned on.
    pub escalation_level: i32,
    /// When an interaction or an outcome stopped the acceptance clock.
    pub sla_stopped_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text")]
    pub outcome_note: String,
    pub referrer_id: String,
    pub branch_id: String,
    pub need: Need,
    #[sea_orm(column_type = "Text")]
    pub note: String,
    pub amount_minor_units: Option<i64>,
    pub amount_currency: Option<String>,
    pub priority: Priority,
    pub status: ReferralStatus,
    pub assigned_rm_id: String,
    pub routing_reason: String,
    /// The stored routing decision, as JSON.
    #[sea_orm(column_type = "Text")]
    pub routing_decision: String,
    pub sla_due_at: DateTimeUtc,
    pub escalated: bool,
    pub outcome: Option<Outcome>,
    pub outcome_product: Option<String>,
    pub outcome_amount_minor_units: Option<i64>,
    pub accepted_at: Option<DateTimeUtc>,
    pub assigned_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
