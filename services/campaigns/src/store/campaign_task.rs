use crm_domain::campaign::TaskState;
use crm_domain::referral::{Outcome, Priority};
use sea_orm::entity::prelude::*;

/// One task of a campaign for one client: the audience frozen at launch, and
/// what became of each task (from the RM work queue's messages).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "campaign_tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub campaign_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    /// Empty for one task per client; a contact-cadence follow-up's due day.
    #[sea_orm(primary_key, auto_increment = false)]
    pub round: String,
    pub branch_id: String,
    pub tier: String,
    /// The client's primary RM at launch, then whoever the queue gave it to.
    pub rm_id: Option<String>,
    pub work_item_id: Option<String>,
    pub state: TaskState,
    pub outcome: Option<Outcome>,
    pub converted_product: Option<String>,
    pub converted_minor: Option<i64>,
    pub converted_currency: Option<String>,
    pub due_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    /// The task's own title and detail; none: the campaign's.
    pub title: Option<String>,
    pub detail: Option<String>,
    pub priority: Priority,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
