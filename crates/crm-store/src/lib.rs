//! Persistence of every service: sea-orm entities and migrations, on PostgreSQL
//! (production) and SQLite (the embedded default).
//!
//! Each service owns its tables (`clients`, `referrals`) and shares only the shape of
//! the messaging tables (`bus`: outbox and inbox). In the distributed mode each
//! service migrates its own schema with its own migrator; the embedded default runs
//! [`migrator::AllMigrator`] over one SQLite file.

pub mod bus;
pub mod clients;
pub mod db;
pub mod migrator;
pub mod referrals;
pub mod vault;
pub mod write_batch;

pub use db::{Backend, Db, StoreError, connect};
pub use sea_orm;
pub use vault::{Vault, VaultError};
pub use write_batch::WriteBatch;
