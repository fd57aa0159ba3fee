//! Storage plumbing every service shares, on PostgreSQL (production) and SQLite
//! (the embedded default): opening a connection, dialect differences, write
//! batches, the PII vault, the messaging tables (`bus`: outbox and inbox) and the
//! job tables (`jobs`: runs and leases).
//!
//! It knows no particular service: each service crate keeps its own entities and
//! migrations (`services/<name>/src/store`), and the process runs the migrations of
//! the services it mounts (see `crm_runtime::migrate`).

pub mod bus;
pub mod copies;
pub mod db;
pub mod jobs;
pub mod migration_steps;
pub mod pages;
pub mod vault;
pub mod write_batch;

pub use db::{Db, Dialect, StoreError, connect};
pub use sea_orm;
pub use vault::{Vault, VaultError};
pub use write_batch::WriteBatch;
