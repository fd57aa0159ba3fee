//! Migrators: one per service for the distributed mode (each in its own schema), and
//! one with every migration for the embedded default's single database.

use sea_orm_migration::prelude::*;

use crate::{bus, clients, referrals};

/// The clients service's schema: directory, client book, its outbox and inbox.
pub struct ClientsMigrator;

impl MigratorTrait for ClientsMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(bus::migration::Migration),
            Box::new(clients::migration::Migration),
            Box::new(clients::book_migration::Migration),
            Box::new(bus::pending_index_migration::Migration),
        ]
    }
}

/// The referrals service's schema: referrals, work items, routing projections.
pub struct ReferralsMigrator;

impl MigratorTrait for ReferralsMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(bus::migration::Migration),
            Box::new(referrals::migration::Migration),
            Box::new(referrals::lifecycle_migration::Migration),
            Box::new(bus::pending_index_migration::Migration),
            Box::new(referrals::request_key_migration::Migration),
            Box::new(referrals::routing_branch_migration::Migration),
        ]
    }
}

/// Services whose tables come in later issues still get their outbox and inbox.
pub struct MessagingOnlyMigrator;

impl MigratorTrait for MessagingOnlyMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(bus::migration::Migration),
            Box::new(bus::pending_index_migration::Migration),
        ]
    }
}

/// Every table of every service, for one shared database (the embedded default).
pub struct AllMigrator;

impl MigratorTrait for AllMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(bus::migration::Migration),
            Box::new(clients::migration::Migration),
            Box::new(referrals::migration::Migration),
            Box::new(clients::book_migration::Migration),
            Box::new(referrals::lifecycle_migration::Migration),
            Box::new(bus::pending_index_migration::Migration),
            Box::new(referrals::request_key_migration::Migration),
            Box::new(referrals::routing_branch_migration::Migration),
        ]
    }
}

/// Which tables a process owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Every service in one database: the embedded default and `crm serve`.
    All,
    Clients,
    Referrals,
    /// A service with only its outbox and inbox so far.
    MessagingOnly,
}

/// Brings the schema up to date; safe to run on every start and from many
/// replicas at once on PostgreSQL (migrations run in a transaction).
pub async fn migrate(db: &crate::Db, schema: Schema) -> Result<(), DbErr> {
    match schema {
        Schema::All => AllMigrator::up(db, None).await,
        Schema::Clients => ClientsMigrator::up(db, None).await,
        Schema::Referrals => ReferralsMigrator::up(db, None).await,
        Schema::MessagingOnly => MessagingOnlyMigrator::up(db, None).await,
    }
}
