//! The messaging tables every service has: its outbox and its inbox. Every
//! process runs these migrations before its services' own.

pub mod inbox;
pub mod outbox;

mod migrations {
    pub mod m20261126_000001_create_outbox_inbox;
    pub mod m20261127_000006_outbox_pending_index;
    pub mod m20261128_000011_outbox_parked;
}

use sea_orm_migration::MigrationTrait;

/// The outbox and inbox migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(migrations::m20261126_000001_create_outbox_inbox::Migration),
        Box::new(migrations::m20261127_000006_outbox_pending_index::Migration),
        Box::new(migrations::m20261128_000011_outbox_parked::Migration),
    ]
}
