use sea_orm::entity::prelude::*;

/// One core-banking event about one client, as given; never changed.
/// On PostgreSQL the table is partitioned by month of `occurred_at`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bank_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    pub client_id: String,
    /// `balance_snapshot`, `transfer`, `product_maturity` or `payroll_credit`.
    pub kind: String,
    pub occurred_at: DateTimeUtc,
    /// The event's own fields, as JSON (crate::ingest::EventDetail).
    #[sea_orm(column_type = "Text")]
    pub detail: String,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
