use sea_orm::entity::prelude::*;

/// A large transfer to another bank, held at a counter (or seen PENDING on the
/// feed), and the RM's answer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outflow_alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub alert_id: String,
    /// `<caller staff id>/<idempotency key>` (or `feed/<event id>`): a retry finds it.
    pub request_key: String,
    pub transfer_reference: Option<String>,
    pub client_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub counterparty_bank: String,
    /// Where the client stands: the counter's branch, not necessarily the client's.
    pub branch_id: String,
    /// Who was asked to answer; empty until the RM queue has placed the alert.
    pub rm_id: String,
    pub acknowledged: bool,
    #[sea_orm(column_type = "Text")]
    pub rm_note: String,
    pub created_at: DateTimeUtc,
    pub acknowledged_at: Option<DateTimeUtc>,
    /// What became of the funds, as the RM recorded it.
    pub funds_outcome: Option<crm_domain::referral::FundsOutcome>,
    /// How much stayed, in the alert's currency.
    pub funds_kept_minor: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
