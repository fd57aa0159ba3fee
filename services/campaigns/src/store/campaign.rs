use crm_domain::campaign::{CampaignKind, CampaignStatus};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "campaigns")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub campaign_id: String,
    pub name: String,
    pub kind: CampaignKind,
    pub period_year: i32,
    /// 1..4; 0 for a campaign that is not quarterly.
    pub period_quarter: i32,
    /// The audience as asked for (JSON of `crate::audience::Audience`).
    #[sea_orm(column_type = "Text")]
    pub audience: String,
    pub window_start: DateTimeUtc,
    pub window_end: DateTimeUtc,
    pub task_title: String,
    pub status: CampaignStatus,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub launched_at: Option<DateTimeUtc>,
    /// A launch too big for one admin waits for a second (maker-checker).
    pub launch_requested_by: Option<String>,
    pub approved_by: Option<String>,
    pub audience_size: i64,
    pub cancel_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
