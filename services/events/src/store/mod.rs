//! Tables of the events service: the core-banking events it was given, append-only
//! per client, and the ledger of every event id it has taken (what makes a resend
//! a duplicate, whichever month's partition the event went to); its copy of the
//! client book's coverage and tiers; events held for clients not yet known; the
//! timeline's lines from other services; products about to mature.

pub mod balance_average;
pub mod bank_event;
pub mod bank_event_id;
pub mod daily_balance;
pub mod event_client;
pub mod event_client_tier;
pub mod held_event;
pub mod outflow_alert;
pub mod payroll_client;
pub mod product_maturity;
pub mod timeline_entry;

mod migrations {
    pub mod m20261128_000013_bank_events;
    pub mod m20261128_000014_balance_watch;
    pub mod m20261128_000016_outflow_alerts;
    pub mod m20261128_000017_payroll_clients;
    pub mod m20261128_000019_client_copy_and_timeline;
    pub mod m20261128_000021_outflow_alert_outcomes;
    pub mod m20261128_000026_product_maturities;
}

use sea_orm_migration::MigrationTrait;

/// This service's migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(migrations::m20261128_000013_bank_events::Migration),
        Box::new(migrations::m20261128_000014_balance_watch::Migration),
        Box::new(migrations::m20261128_000016_outflow_alerts::Migration),
        Box::new(migrations::m20261128_000017_payroll_clients::Migration),
        Box::new(migrations::m20261128_000019_client_copy_and_timeline::Migration),
        Box::new(migrations::m20261128_000021_outflow_alert_outcomes::Migration),
        Box::new(migrations::m20261128_000026_product_maturities::Migration),
    ]
}
