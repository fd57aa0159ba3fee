//! A message written in the same transaction as the state change it announces;
//! the relay publishes it and marks it sent only after the broker confirmed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: String,
    /// The service that wrote it; its relay publishes only its own rows.
    pub source: String,
    pub message_type: String,
    pub routing_key: String,
    pub schema_version: i32,
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub traceparent: Option<String>,
    pub occurred_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    pub attempts: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    /// Set aside: it failed alone while the rows around it were published
    /// (`last_error` says why); the relay skips it until `crm outbox retry`.
    pub parked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
