//! Tables of the clients service: the directory (branches, staff, teller pairs), the
//! client book (clients, segments, interactions) and the audit trail. Only this
//! service reads or writes them.

pub mod audit_event;
pub mod branch;
pub mod client;
pub mod client_segment;
pub mod interaction;
pub mod staff;
pub mod teller_pair;

mod migrations {
    pub mod m20261126_000002_create_directory_and_clients;
    pub mod m20261126_000004_client_book;
    pub mod m20261128_000009_audit_event_service;
    pub mod m20261128_000010_audit_events_no_truncate;
    pub mod m20261128_000015_client_aum_from_feed;
    pub mod m20261128_000018_client_payroll_employer;
    pub mod m20261128_000023_client_marketing_consent;
}

use sea_orm_migration::MigrationTrait;

/// This service's migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(migrations::m20261126_000002_create_directory_and_clients::Migration),
        Box::new(migrations::m20261126_000004_client_book::Migration),
        Box::new(migrations::m20261128_000009_audit_event_service::Migration),
        Box::new(migrations::m20261128_000010_audit_events_no_truncate::Migration),
        Box::new(migrations::m20261128_000015_client_aum_from_feed::Migration),
        Box::new(migrations::m20261128_000018_client_payroll_employer::Migration),
        Box::new(migrations::m20261128_000023_client_marketing_consent::Migration),
    ]
}
