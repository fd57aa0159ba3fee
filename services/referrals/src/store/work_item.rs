use crm_domain::referral::{FundsOutcome, Outcome, Priority, WorkItemKind, WorkItemState};
use sea_orm::entity::prelude::*;

/// One piece of work in one RM's queue.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "work_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub work_item_id: String,
    pub rm_id: String,
    pub kind: WorkItemKind,
    pub client_id: Option<String>,
    pub title: String,
    #[sea_orm(column_type = "Text")]
    pub detail: String,
    pub priority: Priority,
    pub due_at: Option<DateTimeUtc>,
    pub state: WorkItemState,
    pub source_id: String,
    pub acked_at: Option<DateTimeUtc>,
    pub snoozed_until: Option<DateTimeUtc>,
    pub outcome: Option<String>,
    /// An alert about the client's money: `kept`, `partly_kept` or `gone`.
    pub funds_outcome: Option<FundsOutcome>,
    /// How much stayed, as the RM recorded it.
    pub funds_kept_minor: Option<i64>,
    pub funds_kept_currency: Option<String>,
    /// A campaign task: what came of it.
    pub task_outcome: Option<Outcome>,
    /// A converted campaign task: the product sold and its amount.
    pub converted_product: Option<String>,
    pub converted_minor: Option<i64>,
    pub converted_currency: Option<String>,
    /// Bumped on every change; streams keep the highest seen per item.
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
