use sea_orm::entity::prelude::*;

/// One read or write of client data, allowed or denied. Append-only: the database
/// refuses UPDATE and DELETE on this table (see the migration's triggers).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// UUIDv7: ordering by id is ordering by time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub audit_event_id: String,
    pub actor_id: String,
    pub actor_role: String,
    pub actor_branch_id: String,
    /// `client.read`, `client.search`, `client.update`, …
    pub action: String,
    /// Empty when the request named no client (a search that found none).
    pub client_id: String,
    /// The client's home branch when known, so a branch manager can be shown the
    /// trail of their branch's clients.
    pub client_branch_id: String,
    /// `allowed` or `denied`.
    pub decision: String,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    /// For a read of many (a search page): the clients it showed, comma-separated.
    #[sea_orm(column_type = "Text")]
    pub client_ids: String,
    pub request_id: String,
    pub occurred_at: DateTimeUtc,
    /// The service the read or write happened in (`clients` for the book's own).
    pub service: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
