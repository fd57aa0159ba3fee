//! Migrators: one per service for the distributed mode (each in its own schema), and
//! one with every migration for the embedded default's single database.

use sea_orm_migration::prelude::*;

use crate::{bus, clients, referrals};

/// The clients service's schema: directory, client book, its outbox and inbox.
pub struct ClientsMigrator;

impl MigratorTrait for ClientsMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(bus::migration::Migration), Box::new(clients::migration::Migration)]
    }
}

/// The referrals service's schema: referrals, work items, routing projections.
pub struct ReferralsMigrator;

impl MigratorTrait for ReferralsMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(bus::migration::Migration), Box::new(referrals::migration::Migration)]
    }
}

/// Services whose tables come in later issues still get their outbox and inbox.
pub struct MessagingOnlyMigrator;

impl MigratorTrait for MessagingOnlyMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(bus::migration::Migration)]
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
        ]
    }
}
