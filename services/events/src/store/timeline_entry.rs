use sea_orm::entity::prelude::*;

/// One line of a client's timeline from another service's message (a referral,
/// an interaction, work asked of the RM queue).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "timeline_entries")]
pub struct Model {
    /// Unique per line: made from what the message is about, so a redelivered or
    /// replayed message writes nothing new.
    #[sea_orm(primary_key, auto_increment = false)]
    pub timeline_id: String,
    pub client_id: String,
    /// `alert`, `referral`, `interaction`, `campaign_task` (events are read from
    /// `bank_events`).
    pub entry_kind: String,
    /// The id of what the line is about (the referral, the interaction, …).
    pub entry_id: String,
    pub title: String,
    #[sea_orm(column_type = "Text")]
    pub detail: String,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
